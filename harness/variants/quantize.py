"""ONNX Runtime quantization steps the built-in variants use: pre-processing, calibration, quantizers.

Static quantization is QDQ with uint8 activations and int8 per-channel weights (U8S8), after
`quant_pre_process`. Measured here (ORT 1.32, x86 with VNNI): with int8 activations (S8S8) ORT fused
only 7 of PSPNet's 16 convolutions into QLinearConv and int8 ran no faster than fp32; U8S8 fused all
16 and ran 2.1x faster. Without VNNI, U8S8 can saturate, so weights then use reduce_range. Calibration runs once per model, method and
calibration set, with a progress bar, in strides so intermediate tensors never pile up; its ranges are
cached so re-quantizing with other nodes left in float (the accuracy fallback) costs no recalibration.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from harness.cache import cached_entry, cached_entry_if_present
from harness.errors import HarnessError, VariantError

CALIBRATION_METHODS = ("minmax", "entropy", "percentile")
DEFAULT_CALIBRATION_METHOD = "percentile"  # measured best: benchmarks/calibration_methods.py, README
DEFAULT_CALIBRATION_IMAGES = 32
CALIBRATION_STRIDE = 8  # images per collect_data call: bounds the intermediate tensors held at once


@dataclass(frozen=True)
class QuantizeOptions:
    """How `int8-static` is made. The defaults are the measured best on the shipped model (README)."""

    calibration_method: str = DEFAULT_CALIBRATION_METHOD
    calibration_images: int = DEFAULT_CALIBRATION_IMAGES
    activation_type: str = "uint8"
    per_channel: bool = True
    reduce_range: bool = False  # 7-bit weights: avoids U8S8 saturation on CPUs without VNNI
    keep_output_float: bool = True  # leave the node that writes the logits unquantized (see output_nodes)
    entropy_bins: int = 2048  # ORT's default of 128 gives MinMax's scales, silently
    percentile: float = 99.999
    nodes_to_exclude: tuple[str, ...] = ()

    def __post_init__(self):
        if self.calibration_method not in CALIBRATION_METHODS:
            raise HarnessError(f"calibration method '{self.calibration_method}' is unknown; use one of {', '.join(CALIBRATION_METHODS)}")
        if self.calibration_images < 1:
            raise HarnessError(f"calibration images = {self.calibration_images}; use at least 1 (about 32-100 is typical)")
        if self.activation_type not in ("uint8", "int8"):
            raise HarnessError(f"activation type '{self.activation_type}' is unknown; use uint8 (default) or int8")
        if self.entropy_bins < 128 or not 50 < self.percentile <= 100:
            raise HarnessError("entropy bins must be >= 128 and the percentile in (50, 100]")

    def describe(self) -> str:
        method = {"minmax": "MinMax", "entropy": f"Entropy ({self.entropy_bins} bins)",
                  "percentile": f"Percentile {self.percentile}"}[self.calibration_method]
        weights = f"int8 {'per-channel' if self.per_channel else 'per-tensor'}{', reduce_range' if self.reduce_range else ''}"
        output = "; output node kept float" if self.keep_output_float else ""
        return (f"QDQ, activations {self.activation_type}, weights {weights}; {method} calibration on "
                f"{self.calibration_images} images{output}")


def default_options(**overrides) -> QuantizeOptions:
    """The defaults, with reduce_range switched on where this CPU lacks VNNI (U8S8 saturation)."""
    from harness.measure.machine import machine_fingerprint

    has_vnni = machine_fingerprint("").has_vnni
    return QuantizeOptions(**{"reduce_range": not has_vnni, **{k: v for k, v in overrides.items() if v is not None}})


def preprocess(source: Path, workdir: Path) -> tuple[Path, str]:
    """ORT's quant_pre_process (shape inference, Conv+BN folding), dropping the steps that fail.

    Returns the pre-processed file and a note saying which steps ran.
    """
    from onnxruntime.quantization import quant_pre_process

    out = workdir / "pre.onnx"
    attempts = (
        ({}, "pre-processed (symbolic shape inference + graph optimisation)"),
        ({"skip_symbolic_shape": True}, "pre-processed with ONNX shape inference + graph optimisation (symbolic shape inference failed)"),
        ({"skip_symbolic_shape": True, "skip_optimization": True},
         "pre-processed with ONNX shape inference only (symbolic shape inference and the optimizer failed)"),
    )
    errors = []
    for kwargs, note in attempts:
        try:
            # ORT's symbolic shape inference leaves temp files (sym_shape_infer_temp.onnx, UUID.data) in
            # the working directory when it fails: run it from the scratch folder.
            with contextlib.chdir(workdir):
                quant_pre_process(str(Path(source).resolve()), str(out.resolve()), **kwargs)
            return out, note
        except Exception as e:  # ORT raises bare Exception here; try the next, lighter pre-processing
            errors.append(f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
    raise VariantError(f"quant_pre_process failed on {source}: {errors[-1]}")


def calibration_settings(images_u8: np.ndarray, options: QuantizeOptions, model_sha: str) -> dict:
    """What a calibration's ranges follow from: the method, the images, the fp32 export (its cache key)."""
    return {"method": options.calibration_method, "bins": options.entropy_bins, "pct": options.percentile,
            "images": hashlib.sha256(np.ascontiguousarray(images_u8).tobytes()).hexdigest()[:16], "model": model_sha}


def book_settings(settings: dict) -> dict:
    """A calibration's settings as a committed book entry names them: with ONNX Runtime's release, whose
    pre-processing names the tensors the ranges are for."""
    from onnxruntime import __version__ as ort_version

    return {**settings, "ort": ort_version}


def calibrate(pre: Path, images_u8: np.ndarray, options: QuantizeOptions, model_sha: str,
              on_progress: Callable[[int, int], None] | None) -> Path:
    """Tensor ranges for `pre` from the calibration images, cached as ORT's JSON calibration file."""
    settings = calibration_settings(images_u8, options, model_sha)

    def build(staging: Path) -> dict:
        _collect_ranges(pre, images_u8, options, on_progress, staging / "ranges.json")
        return settings

    return cached_entry("calibration", settings, build).folder / "ranges.json"


def measured_ranges(settings: dict) -> Path | None:
    """The ranges this machine measured for a book entry's `settings`, if its cache holds them (nothing is computed)."""
    found = cached_entry_if_present("calibration", {k: v for k, v in settings.items() if k != "ort"})
    return found.folder / "ranges.json" if found else None


def calibration_fallbacks(ranges: Path) -> list[tuple[str, str]]:
    """(tensor, why) for each tensor whose range came from MinMax because the chosen method failed on it."""
    path = ranges.with_name("fallback.json")
    return [tuple(item) for item in json.loads(path.read_text())] if path.is_file() else []


def describe_fallbacks(fallbacks: list[tuple[str, str]], method: str) -> str:
    if not fallbacks:
        return ""
    reasons = sorted({why for _, why in fallbacks})
    return (f"{len(fallbacks)} tensor(s) calibrated by MinMax instead of {method} ({'; '.join(reasons[:2])}"
            f"{'; ...' if len(reasons) > 2 else ''}): {', '.join(name for name, _ in fallbacks[:3])}"
            f"{', ...' if len(fallbacks) > 3 else ''}")


def _collect_ranges(pre: Path, images_u8: np.ndarray, options: QuantizeOptions,
                    on_progress: Callable[[int, int], None] | None, out: Path) -> None:
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod
    from onnxruntime.quantization.calibrate import create_calibrator, save_tensors_data

    from harness.data import normalize

    method, extra = {
        "minmax": (CalibrationMethod.MinMax, {}),
        "entropy": (CalibrationMethod.Entropy, {"num_bins": options.entropy_bins, "num_quantized_bins": 128}),
        "percentile": (CalibrationMethod.Percentile, {"num_bins": options.entropy_bins, "percentile": options.percentile}),
    }[options.calibration_method]
    input_name = onnx.load(str(pre), load_external_data=False).graph.input[0].name

    class Reader(CalibrationDataReader):
        def __init__(self, chunk: np.ndarray, done_before: int):
            self.chunk, self.index, self.done_before = chunk, 0, done_before

        def get_next(self):
            if self.index >= len(self.chunk):
                return None
            image = normalize(self.chunk[self.index:self.index + 1])
            self.index += 1
            if on_progress:
                on_progress(self.done_before + self.index, len(images_u8))
            return {input_name: image}

    # ORT's histogram calibrators print progress lines of their own; the harness shows its own bar.
    with tempfile.TemporaryDirectory(prefix="harness-calib-") as tmp, contextlib.redirect_stdout(io.StringIO()):
        calibrator = create_calibrator(str(pre), None, augmented_model_path=str(Path(tmp) / "augmented.onnx"),
                                       calibrate_method=method, extra_options=extra)
        if options.calibration_method != "minmax":  # ORT creates its collector on first use only: give it ours
            calibrator.collector = _per_tensor_collector(calibrator)
        for start in range(0, len(images_u8), CALIBRATION_STRIDE):
            calibrator.collect_data(Reader(images_u8[start:start + CALIBRATION_STRIDE], start))
        ranges = calibrator.compute_data()
        fell_back = sorted(getattr(getattr(calibrator, "collector", None), "fell_back", {}).items())
    save_tensors_data(ranges, out)
    out.with_name("fallback.json").write_text(json.dumps(fell_back))


def _per_tensor_collector(calibrator):
    """ORT's histogram collector, made to survive a tensor it cannot histogram.

    Real activations break it: a tensor with a tiny range makes numpy refuse 2048 finite-sized bins
    (torchvision's MobileNetV3 heads), NaN/inf make empty or infinite histograms. Such a tensor gets the
    MinMax range of its finite values instead; every other tensor keeps the chosen method, unchanged.
    """
    from onnxruntime.quantization.calibrate import HistogramCollector, TensorData

    class PerTensorCollector(HistogramCollector):
        def __init__(self):
            super().__init__(method=calibrator.method, symmetric=calibrator.symmetric, num_bins=calibrator.num_bins,
                             num_quantized_bins=calibrator.num_quantized_bins, percentile=calibrator.percentile,
                             scenario=calibrator.scenario)
            self.fell_back: dict[str, str] = {}  # tensor -> why its histogram could not be used
            self.finite_range: dict[str, tuple[float, float]] = {}

        def collect(self, name_to_arr):
            for name, arrays in name_to_arr.items():
                arrays = [np.asarray(x) for x in arrays]
                finite = all(np.isfinite(a).all() for a in arrays)
                # No copy of the activations on the usual path: only a tensor holding NaN/inf is filtered.
                parts = [p for p in (arrays if finite else [a[np.isfinite(a)] for a in arrays]) if p.size]
                if parts:
                    lo, hi = self.finite_range.get(name, (np.inf, -np.inf))
                    self.finite_range[name] = (min(lo, *(float(p.min()) for p in parts)),
                                               max(hi, *(float(p.max()) for p in parts)))
                if name in self.fell_back:
                    continue
                if not finite:
                    self._fall_back(name, "non-finite values")
                    continue
                try:
                    super().collect({name: arrays})
                except (ValueError, FloatingPointError, AssertionError) as e:
                    self._fall_back(name, str(e).splitlines()[0][:120] if str(e) else type(e).__name__)

        def _fall_back(self, name: str, why: str) -> None:
            self.fell_back[name] = why
            self.histogram_dict.pop(name, None)

        def compute_collection_result(self):
            result = super().compute_collection_result() if self.histogram_dict else {}
            for name, value in list(result.items()):
                if not all(np.isfinite(np.asarray(v, dtype=np.float64)).all() for v in value[:2]):
                    self.fell_back[name] = "the method's range was not finite"
                    del result[name]
            for name in self.fell_back:
                lo, hi = self.finite_range.get(name, (0.0, 0.0))
                result[name] = TensorData(lowest=np.array(min(lo, 0.0), np.float32), highest=np.array(max(hi, 0.0), np.float32))
            return result

    return PerTensorCollector()


def output_nodes(model_path: Path) -> list[str]:
    """Nodes that write a graph output.

    Quantizing the logits rounds nearly tied classes together and costs a Quantize/Dequantize pass
    over the full-resolution output; kept float, PSPNet-R18's final Resize also ran faster here
    (int8-static 2.34x fp32 instead of 2.26x, 1 thread).
    """
    import onnx

    graph = onnx.load(str(model_path), load_external_data=False).graph
    outputs = {o.name for o in graph.output}
    return [n.name for n in graph.node if outputs & set(n.output)]


def quantize_static_with(pre: Path, out: Path, ranges: Path, options: QuantizeOptions) -> None:
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    excluded = list(options.nodes_to_exclude)
    if options.keep_output_float:
        excluded += [n for n in output_nodes(pre) if n not in excluded]
    method = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
              "percentile": CalibrationMethod.Percentile}[options.calibration_method]
    import logging

    # ORT logs one root-logger warning per 1-D weight it cannot quantize per channel (norm scales, biases of
    # outside models: hundreds of lines); it quantizes them per tensor, which the recipe's words already cover.
    logging.disable(logging.WARNING)
    try:
        quantize_static(
            str(pre), str(out), None, quant_format=QuantFormat.QDQ, per_channel=options.per_channel,
            reduce_range=options.reduce_range, weight_type=QuantType.QInt8,
            activation_type=QuantType.QUInt8 if options.activation_type == "uint8" else QuantType.QInt8,
            nodes_to_exclude=excluded, calibrate_method=method, calibration_cache_path=str(ranges),
        )
    finally:
        logging.disable(logging.NOTSET)


def quantize_dynamic(pre: Path, out: Path) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(pre), str(out), weight_type=QuantType.QUInt8)


def to_fp16(pre: Path, out: Path) -> None:
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    # onnxconverter_common's converter fails on PSPNet with keep_io_types (see NOTES); ORT's own works.
    onnx.save(convert_float_to_float16(onnx.load(str(pre)), keep_io_types=True), str(out))
