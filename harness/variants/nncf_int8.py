"""int8 by NNCF's post-training quantization (its ONNX backend: a QDQ ONNX file), for OpenVINO to run.

OpenVINO's own quantizer, on the same calibration images as int8-static, so the two int8 files differ only
in how they were made. The file stays ONNX: it is cached, hashed, staged to a device and gated like the others.
"""

from __future__ import annotations

import logging

from harness.data import normalize
from harness.variants.registry import VariantJob


def quantize_with_nncf(job: VariantJob) -> str:
    import nncf
    import onnx

    from harness.export.exporters import output_to

    nncf.set_log_level(logging.ERROR)
    model = onnx.load(str(job.exported.path))
    input_name = model.graph.input[0].name
    images = normalize(job.calibration_images)
    dataset = nncf.Dataset(list(images), lambda image: {input_name: image[None]})
    with open(job.workdir / "nncf.log", "w") as log, output_to(log):  # its own progress bars would break the bench's
        quantized = nncf.quantize(model, dataset, subset_size=len(images))
    onnx.save(quantized, str(job.out))
    return (f"NNCF {nncf.__version__} post-training int8 (ONNX backend, QDQ, its default preset), "
            f"{len(images)} calibration images")
