"""Classification end to end: folder-per-class data, top-1 from the ONNX model, the same bench and gate."""

from pathlib import Path

import onnx
import pytest
from onnx import TensorProto, helper

from harness.data import find_class_split, load_class_split
from harness.errors import HarnessError
from harness.export import export_spec
from harness.spec import ASSETS_DIR, ModelSpec

from conftest import run_cli

CROPS = ASSETS_DIR / "camvid_crops"
CLASSIFIER_SUITE = ASSETS_DIR / "classifier_suite.toml"


def test_class_folders_load_in_sorted_order_with_every_class_in_a_short_sample():
    split = find_class_split(CROPS, "val")
    assert split.classes == ("building", "pavement", "road", "sky", "tree") and len(split) == 80
    images, labels = load_class_split(split, (64, 64), 5, limit=10)
    assert images.shape == (10, 64, 64, 3) and sorted(set(labels.tolist())) == [0, 1, 2, 3, 4]


def test_class_count_must_match_the_model():
    with pytest.raises(HarnessError, match="has 5 class folders but the model has 3 classes"):
        load_class_split(find_class_split(CROPS, "val"), (64, 64), 3)


@pytest.mark.parametrize("arch, hw", [("mobilenet_v2", (64, 64)), ("alexnet", (64, 64))])
def test_classifier_exports_with_parity_on_real_crops(arch, hw):
    images, _ = load_class_split(find_class_split(CROPS, "val"), hw, 5, limit=4)
    spec = ModelSpec(name=arch, arch=arch, num_classes=5, input_hw=hw, task="classification")
    parity = export_spec(spec, images).parity
    assert parity.passed and parity.images == 4


def test_segmentation_model_on_classification_data_is_refused():
    images, _ = load_class_split(find_class_split(CROPS, "val"), (64, 64), 5, limit=2)
    spec = ModelSpec(name="seg", arch="unet_small", num_classes=5, input_hw=(64, 64), task="classification")
    with pytest.raises(HarnessError, match="unet_small is a segmentation model"):
        export_spec(spec, images)


@pytest.mark.slow
def test_phone_bench_runs_the_classifier_suite_with_top1(tmp_path):
    target = tmp_path / "quick_phone.toml"
    target.write_text('threads = 2\nmin_runs = 20\nmin_duration_s = 0.3\nprocesses = 1\nmax_miou_drop = 5\n'
                      'variants = ["fp32", "int8-static"]\n')
    proc = run_cli("bench", "--target", str(target), "--suite", str(CLASSIFIER_SUITE), "--results-dir", str(tmp_path))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "top-1 %" in proc.stdout
    import csv

    rows = {r["variant"]: r for r in csv.DictReader(open(tmp_path / "quick_phone.csv"))}
    assert rows["fp32"]["quality_metric"] == "top-1" and float(rows["fp32"]["quality_pct"]) > 60  # chance: 20 %
    assert rows["fp32"]["eval_images"] == "80" and "/" in rows["fp32"]["per_class_pct"]


def _fixed_batch_onnx(path: Path, batch: int) -> Path:
    graph = helper.make_graph(
        [helper.make_node("GlobalAveragePool", ["image"], ["pooled"]),
         helper.make_node("Flatten", ["pooled"], ["logits"])], "g",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [batch, 3, 64, 64])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [batch, 3])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def _bench_onnx(tmp_path, onnx_name: str, target_toml: str):
    """Bench a user's ONNX file on the shipped crops through a suite file alone."""
    suite = tmp_path / "suite.toml"
    suite.write_text(f'[data]\ntask = "classification"\ndir = "{CROPS / "val"}"\n\n'
                     f'[[model]]\nname = "mine"\nonnx = "{onnx_name}"\nnum_classes = 5\ninput_size = [64, 64]\n')
    target = tmp_path / "t.toml"
    target.write_text(target_toml)
    return run_cli("bench", "--target", str(target), "--suite", str(suite), "--results-dir", str(tmp_path / "r"))


def test_fixed_batch_onnx_with_batched_serving_is_refused(tmp_path):
    _fixed_batch_onnx(tmp_path / "fixed.onnx", 1)
    proc = _bench_onnx(tmp_path, "fixed.onnx", 'threads = 1\nimages_at_once = 4\nserving = ["batched"]\nvariants = ["fp32"]\n')
    assert proc.returncode == 2 and "has a fixed batch of 1 but target t sends batches of 4" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_wrong_channel_count_onnx_is_refused(tmp_path):
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 1, 64, 64])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 1, 64, 64])])
    onnx.save(helper.make_model(graph), str(tmp_path / "gray.onnx"))
    proc = _bench_onnx(tmp_path, "gray.onnx", 'threads = 1\nvariants = ["fp32"]\n')
    assert proc.returncode == 2 and "feeds (N,3,H,W) images" in proc.stderr
