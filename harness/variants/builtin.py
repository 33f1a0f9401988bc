"""The built-in variants: the export itself (fp32; bf16 under OpenVINO), ONNX Runtime's static and dynamic int8 and fp16,
and NNCF's int8 for OpenVINO."""

from __future__ import annotations

from harness.variants.quantize import (calibrate, calibration_fallbacks, describe_fallbacks, preprocess, quantize_dynamic,
                              quantize_static_with, to_fp16)
from harness.variants.registry import VariantJob, register_variant

register_variant("fp32", "the export, unchanged", backends=None)(None)


@register_variant("int8-static", "QDQ int8, calibrated on real images (U8S8, per-channel)", needs_calibration=True,
                  supports_fallback=True, backends=None)
def make_int8_static(job: VariantJob) -> str:
    pre, pre_note = preprocess(job.exported.path, job.workdir)
    ranges = job.committed.write_for_quantizer(job.workdir) if job.committed else \
        calibrate(pre, job.calibration_images, job.options, job.exported.sha256, job.on_progress)
    quantize_static_with(pre, job.out, ranges, job.options)
    fallbacks = describe_fallbacks(calibration_fallbacks(ranges), job.options.calibration_method)
    book = f"; ranges from the calibration book ({job.committed.path.name})" if job.committed else ""
    return f"{job.options.describe()}{book}; {pre_note}" + (f"; {fallbacks}" if fallbacks else "")


@register_variant("int8-dynamic", "int8 weights (uint8), activations quantized per call")
def make_int8_dynamic(job: VariantJob) -> str:
    pre, pre_note = preprocess(job.exported.path, job.workdir)
    quantize_dynamic(pre, job.out)
    return (f"dynamic: weights uint8 (int8 weights make ORT's CPU ConvInteger refuse to load), "
            f"activations quantized per call; {pre_note}")


@register_variant("fp16", "fp16 weights and activations, float32 input/output")
def make_fp16(job: VariantJob) -> str:
    pre, _ = preprocess(job.exported.path, job.workdir)
    to_fp16(pre, job.out)
    return "fp16 weights and activations, float32 input/output (onnxruntime.transformers.float16)"


register_variant("bf16", "the export, run in bf16 by OpenVINO (only where the CPU has bf16)", backends=("openvino",),
                 precision="bf16")(None)


@register_variant("int8-nncf", "NNCF post-training int8 (QDQ ONNX), calibrated on the same images, for OpenVINO",
                  needs_calibration=True, backends=("openvino",))
def make_int8_nncf(job: VariantJob) -> str:
    from harness.variants.nncf_int8 import quantize_with_nncf

    return quantize_with_nncf(job)


@register_variant("litert-fp32", "a LiteRT (.tflite) file converted from the PyTorch model, checked against ORT",
                  needs_calibration=True, backends=("litert",), suffix=".tflite")
def make_litert_fp32(job: VariantJob) -> str:
    from harness.variants.litert import convert_fp32

    return convert_fp32(job, job.out)


@register_variant("litert-int8", "full-integer int8 LiteRT file, calibrated on the same images", needs_calibration=True,
                  backends=("litert",), suffix=".tflite")
def make_litert_int8(job: VariantJob) -> str:
    from harness.variants.litert import convert_fp32, quantize_int8

    fp32 = job.workdir / "fp32.tflite"
    checked = convert_fp32(job, fp32)
    return f"{quantize_int8(job, fp32, job.out)}; {checked}"
