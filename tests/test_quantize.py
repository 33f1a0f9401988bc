"""Real ONNX Runtime quantization of a small real model, calibrated on real CamVid frames."""

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from harness.data import find_split, load_split, normalize
from harness.errors import HarnessError
from harness.export import export_spec
from harness.quantize import QuantizeOptions, calibrate, preprocess
from harness.variants import variant_of
from harness.models import create_model
from harness.spec import ASSETS_DIR, ModelSpec

HW = (96, 128)
CALIBRATION_DIR = ASSETS_DIR / "camvid_train32"


@pytest.fixture(scope="module")
def calibration_images():
    images, _ = load_split(find_split(CALIBRATION_DIR, "train", 11), HW, 11, limit=8)
    return images


@pytest.fixture(scope="module")
def exported(tmp_path_factory, calibration_images):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    torch.save(create_model("unet_small", num_classes=11, width=0.25).state_dict(), path)
    spec = ModelSpec(name="tiny", arch="unet_small", num_classes=11, input_hw=HW, checkpoint=path,
                     model_kwargs={"width": 0.25})
    return export_spec(spec, calibration_images[:2])


def _run(path, images):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: normalize(images)})[0]


def test_static_int8_is_smaller_and_close_to_fp32(exported, calibration_images):
    seen = []
    made = variant_of(exported, "int8-static", QuantizeOptions(calibration_method="minmax", calibration_images=8), calibration_images,
                      on_progress=lambda done, total: seen.append((done, total)))
    assert made.file_mb < 0.4 * exported.file_mb
    assert seen[-1] == (8, 8)  # the progress callback saw every calibration image
    assert "per-channel" in made.recipe and "MinMax" in made.recipe and "uint8" in made.recipe
    ops = {n.op_type for n in onnx.load(str(made.path)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    fp32, int8 = _run(exported.path, calibration_images[:2]), _run(made.path, calibration_images[:2])
    assert int8.shape == fp32.shape
    # an untrained model's logits nearly tie, so compare the logits themselves, not the argmax
    assert np.corrcoef(int8.ravel(), fp32.ravel())[0, 1] > 0.95
    again = variant_of(exported, "int8-static", QuantizeOptions(calibration_method="minmax", calibration_images=8), calibration_images)
    assert again.cached and again.path == made.path


def test_each_calibration_method_really_changes_the_ranges(exported, calibration_images, tmp_path):
    pre, _ = preprocess(exported.path, tmp_path)
    ranges = {}
    for method in ("minmax", "entropy", "percentile"):
        options = QuantizeOptions(calibration_method=method, calibration_images=4, entropy_bins=512)
        ranges[method] = json.loads(calibrate(pre, calibration_images[:4], options, exported.sha256, None).read_text())
    assert ranges["minmax"] != ranges["entropy"]
    assert ranges["minmax"] != ranges["percentile"]


def test_dynamic_and_fp16_variants_run_with_float32_io(exported, calibration_images):
    for variant in ("int8-dynamic", "fp16"):
        made = variant_of(exported, variant, QuantizeOptions(), None)
        out = _run(made.path, calibration_images[:1])
        assert out.dtype == np.float32 and out.shape == (1, 11, *HW)
        assert made.file_mb < exported.file_mb
    fp16_inits = onnx.load(str(variant_of(exported, "fp16", QuantizeOptions(), None).path)).graph.initializer
    assert any(t.data_type == onnx.TensorProto.FLOAT16 for t in fp16_inits)


def test_bad_options_are_refused(exported):
    with pytest.raises(HarnessError, match="calibration method 'kl'"):
        QuantizeOptions(calibration_method="kl")
    with pytest.raises(HarnessError, match="needs calibration images"):
        variant_of(exported, "int8-static", QuantizeOptions(), None)
    with pytest.raises(HarnessError, match="variant 'int4'"):
        variant_of(exported, "int4", QuantizeOptions(), None)
