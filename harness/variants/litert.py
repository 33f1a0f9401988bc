"""LiteRT files (.tflite) for the phone's runtime: fp32 converted from the PyTorch model, and full-integer int8.

litert-torch (Google's PyTorch-to-LiteRT converter) starts from the same module and checkpoint the ONNX export
came from; onnx2tf, the ONNX route, needs Python >= 3.12 from 2.0 on and pins an older ONNX Runtime before it.
The fp32 file is proven like the export: its outputs against ONNX Runtime's on the export, on real images;
a mismatch refuses the variant with one line. int8 is ai-edge-quantizer's static recipe (int8 weights and
activations, int8 input and output) calibrated on the suite's calibration images.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from harness.data import normalize
from harness.errors import VariantError
from harness.export import MAX_ABS_LOGIT_DIFF, MIN_ARGMAX_AGREEMENT_PCT, PARITY_IMAGES
from harness.variants.registry import VariantJob


def _quiet_logs() -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # the converter's C++ INFO lines would break the progress bar


def convert_fp32(job: VariantJob, out: Path) -> str:
    """The spec's PyTorch model as a .tflite at batch 1 (NCHW in, as exported), checked against ORT on real images."""
    if job.spec is None or getattr(job.spec, "onnx", None) is not None:
        raise VariantError("LiteRT conversion starts from the PyTorch model; a user's ONNX file has none "
                           "(onnx2tf, the ONNX route, needs Python >= 3.12)")
    _quiet_logs()
    import torch

    from harness.export.exporters import export_log_path, output_to
    from harness.models.checkpoint import build_model

    model = build_model(job.spec).eval()
    sample = torch.from_numpy(normalize(job.calibration_images[:1]))
    log = export_log_path(job.spec).with_name(f"litert-{export_log_path(job.spec).name}")
    log.parent.mkdir(parents=True, exist_ok=True)
    try:
        with open(log, "w") as log_file, output_to(log_file):
            import litert_torch

            litert_torch.convert(model, (sample,)).export(str(out))
    except Exception as e:  # the converter's many error types: the row says which, the run goes on
        from harness.export.exporters import root_cause

        raise VariantError(f"LiteRT conversion failed: {root_cause(e)} (log: {log})") from e
    agreement, max_diff = _parity(job.exported.path, out, job.calibration_images[:PARITY_IMAGES])
    if agreement < MIN_ARGMAX_AGREEMENT_PCT or max_diff > MAX_ABS_LOGIT_DIFF:
        raise VariantError(f"the LiteRT file does not match ONNX Runtime's fp32 on {PARITY_IMAGES} real images "
                           f"(classes agree on {agreement:.2f} %, max |Δlogit| {max_diff:.2g}): not measured")
    return (f"litert-torch {_version('litert-torch')} conversion of the PyTorch model, NCHW input; against ONNX "
            f"Runtime's fp32 on {PARITY_IMAGES} real images: classes agree on {agreement:.2f} %, max |Δlogit| "
            f"{max_diff:.1g}")


def quantize_int8(job: VariantJob, fp32_file: Path, out: Path) -> str:
    """Full-integer int8 of the fp32 .tflite: ai-edge-quantizer's static int8 recipe on the calibration images."""
    _quiet_logs()
    from ai_edge_litert.interpreter import Interpreter
    from ai_edge_quantizer import quantizer, recipe

    from harness.export.exporters import export_log_path, output_to

    signatures = Interpreter(model_path=str(fp32_file)).get_signature_list()
    key = next(iter(signatures))
    input_name = signatures[key]["inputs"][0]
    images = normalize(job.calibration_images)
    log = export_log_path(job.spec).with_name(f"litert-int8-{export_log_path(job.spec).name}")
    with open(log, "w") as log_file, output_to(log_file):  # the quantizer prints its own report
        engine = quantizer.Quantizer(str(fp32_file))
        engine.load_quantization_recipe(recipe.static_wi8_ai8())
        ranges = engine.calibrate({key: [{input_name: image[None]} for image in images]}, num_threads=1)
        engine.quantize(ranges).export_model(str(out), overwrite=True)
    return (f"full-integer int8 (weights and activations int8, int8 input/output) by ai-edge-quantizer "
            f"{_version('ai-edge-quantizer')}, min/max calibration on {len(images)} images; from the litert-fp32 file")


def _parity(onnx_path: Path, tflite_path: Path, images_u8: np.ndarray) -> tuple[float, float]:
    """(argmax agreement %, max |Δlogit|) of the .tflite against ONNX Runtime on the export, image by image."""
    import onnxruntime as ort
    from ai_edge_litert.interpreter import Interpreter

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    interpreter = Interpreter(model_path=str(tflite_path), num_threads=1)
    interpreter.allocate_tensors()
    inp, outp = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    agree = total = 0
    max_diff = 0.0
    for image in images_u8:
        x = normalize(image[None])
        expected = session.run(None, {session.get_inputs()[0].name: x})[0]
        interpreter.set_tensor(inp["index"], x)
        interpreter.invoke()
        got = interpreter.get_tensor(outp["index"])
        if got.shape != expected.shape:
            raise VariantError(f"the LiteRT file's output has shape {list(got.shape)}, the export's "
                               f"{list(expected.shape)}: not measured")
        max_diff = max(max_diff, float(np.abs(got - expected).max()))
        agree += int((got.argmax(1) == expected.argmax(1)).sum())
        total += expected.argmax(1).size
    return 100.0 * agree / total, max_diff


def _version(dist: str) -> str:
    from importlib.metadata import version

    return version(dist)


def trivial_tflite(input_hw: tuple[int, int]) -> Path:
    """LiteRT's runtime floor: the same input through one trivial op, as a .tflite (cached: converting takes seconds)."""
    from harness.cache import cached_entry

    def build(staging: Path) -> dict:
        _quiet_logs()
        import torch

        from harness.export.exporters import output_to

        class Floor(torch.nn.Module):
            def forward(self, image):
                return image * 2.0  # one real op: a model of no op is no model

        with open(staging / "convert.log", "w") as log_file, output_to(log_file):
            import litert_torch

            litert_torch.convert(Floor().eval(), (torch.zeros(1, 3, *input_hw),)).export(str(staging / "model.tflite"))
        return {"input_hw": list(input_hw)}

    entry = cached_entry("floors", {"backend": "litert", "input_hw": list(input_hw), "converter": _version("litert-torch")},
                         build)
    return entry.folder / "model.tflite"
