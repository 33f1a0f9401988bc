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
from harness.variants.quantize import QuantizeOptions, calibrate, preprocess
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


def _graph_with_a_denormal_branch(path, hw=HW):
    """A real conv net where one tensor's values are ~1e-40: numpy cannot make 2048 finite-sized histogram bins of it
    (what ORT's Percentile calibrator hit on torchvision's MobileNetV3 heads)."""
    from onnx import TensorProto, helper, numpy_helper

    from harness.onnx_graph import save_graph

    rng = np.random.default_rng(0)
    weights = [numpy_helper.from_array(rng.normal(0, 0.3, (8, 3, 3, 3)).astype(np.float32), "w1"),
               numpy_helper.from_array(rng.normal(0, 0.3, (11, 8, 1, 1)).astype(np.float32), "w2"),
               numpy_helper.from_array(np.array(1e-40, np.float32), "tiny")]
    nodes = [helper.make_node("Conv", ["image", "w1"], ["c1"], pads=[1, 1, 1, 1], name="conv1"),
             helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
             helper.make_node("Mul", ["r1", "tiny"], ["denormal"], name="scale_down"),
             helper.make_node("Add", ["r1", "denormal"], ["r2"], name="add_back"),
             helper.make_node("Conv", ["r2", "w2"], ["logits"], name="head")]
    return save_graph(path, "denormal", nodes,
                      [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["n", 3, *hw])],
                      [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["n", 11, *hw])], weights)


def test_a_tensor_the_histogram_cannot_bin_falls_back_to_minmax_and_the_variant_is_made(tmp_path, calibration_images):
    from onnxruntime.quantization import CalibrationMethod
    from onnxruntime.quantization.calibrate import create_calibrator

    from harness.export import ExportedModel
    from harness.cache import file_sha256

    path = _graph_with_a_denormal_branch(tmp_path / "denormal.onnx")
    # ORT's own calibrator falls over on it: the failure this fallback is for
    calibrator = create_calibrator(str(path), None, augmented_model_path=str(tmp_path / "aug.onnx"),
                                   calibrate_method=CalibrationMethod.Percentile, extra_options={"num_bins": 2048})
    feed = iter([{"image": normalize(calibration_images[:1])}])
    with pytest.raises(ValueError, match="Too many bins"):
        calibrator.collect_data(type("R", (), {"get_next": lambda self: next(feed, None)})())
    exported = ExportedModel("denormal", path, file_sha256(path), path.stat().st_size / 1e6, 0, None, True)
    made = variant_of(exported, "int8-static", QuantizeOptions(calibration_images=8), calibration_images)
    assert "calibrated by MinMax instead of percentile (Too many bins" in made.recipe, made.recipe
    assert {"QuantizeLinear", "DequantizeLinear"} <= {n.op_type for n in onnx.load(str(made.path)).graph.node}
    fp32, int8 = _run(path, calibration_images[:2]), _run(made.path, calibration_images[:2])
    assert np.isfinite(int8).all() and np.corrcoef(int8.ravel(), fp32.ravel())[0, 1] > 0.95


def test_healthy_tensors_get_exactly_the_ranges_ort_computes(exported, calibration_images, tmp_path):
    """The per-tensor guard changes nothing where ORT's method works: same ranges, no fallback in the recipe."""
    from onnxruntime.quantization import CalibrationMethod
    from onnxruntime.quantization.calibrate import create_calibrator, load_tensors_data

    from harness.variants.quantize import calibration_fallbacks

    options = QuantizeOptions(calibration_images=8)
    pre, _ = preprocess(exported.path, tmp_path)
    ranges = calibrate(pre, calibration_images, options, exported.sha256, None)
    ours = load_tensors_data(ranges).data
    assert calibration_fallbacks(ranges) == []
    calibrator = create_calibrator(str(pre), None, augmented_model_path=str(tmp_path / "aug.onnx"),
                                   calibrate_method=CalibrationMethod.Percentile,
                                   extra_options={"num_bins": options.entropy_bins, "percentile": options.percentile})
    name = onnx.load(str(pre)).graph.input[0].name
    feed = iter([{name: normalize(calibration_images[i:i + 1])} for i in range(8)])
    calibrator.collect_data(type("R", (), {"get_next": lambda self: next(feed, None)})())
    theirs = calibrator.compute_data().data
    assert set(ours) == set(theirs) and len(ours) > 10
    for tensor, data in theirs.items():
        assert (ours[tensor].lowest, ours[tensor].highest) == (data.lowest, data.highest), tensor


def test_a_tensor_holding_nan_gets_the_range_of_its_finite_values():
    from types import SimpleNamespace

    from harness.variants.quantize import _per_tensor_collector

    settings = SimpleNamespace(method="percentile", symmetric=False, num_bins=2048, num_quantized_bins=128,
                               percentile=99.999, scenario="same")
    collector = _per_tensor_collector(settings)
    rng = np.random.default_rng(0)
    broken = rng.normal(0, 1, (1, 4, 8, 8)).astype(np.float32)
    broken[0, 0, 0, :2] = [np.nan, np.inf]
    healthy = rng.normal(0, 1, (1, 4, 8, 8)).astype(np.float32)
    from onnxruntime.quantization.calibrate import HistogramCollector

    with pytest.raises(ValueError):  # ORT's own collector cannot histogram it
        HistogramCollector("percentile", False, 2048, 128, 99.999, "same").collect({"broken": [broken]})
    collector.collect({"broken": [broken], "healthy": [healthy]})
    result = collector.compute_collection_result()
    finite = broken[np.isfinite(broken)]
    assert collector.fell_back == {"broken": "non-finite values"}
    assert (float(result["broken"].lowest), float(result["broken"].highest)) == (float(finite.min()), float(finite.max()))
    low, high = result["healthy"][:2]
    assert np.isfinite([low, high]).all() and healthy.min() <= low < high <= healthy.max()
