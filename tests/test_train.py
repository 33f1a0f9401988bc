"""`harness train` on a tiny real split: it learns, saves a safe checkpoint, and that checkpoint exports."""

import pytest
import torch

from harness.data import find_split, load_split
from harness.export import export_spec
from harness.spec import ModelSpec

from conftest import CAMVID_IGNORE, run_cli


@pytest.mark.slow
def test_train_saves_a_weights_only_checkpoint_that_exports(tmp_path, tiny_root):
    out = tmp_path / "tiny.pt"
    proc = run_cli("train", "unet_small", "--data", str(tiny_root), "--epochs", "2", "--width", "0.125",
                   "--ignore-index", str(CAMVID_IGNORE), "--out", str(out), "--batch-size", "4")
    assert proc.returncode == 0, proc.stderr
    assert "best val mIoU" in proc.stdout
    saved = torch.load(out, weights_only=True)
    assert saved["arch"] == "unet_small" and saved["num_classes"] == 11 and saved["epoch"] in (1, 2)
    assert saved["command"].startswith("harness train unet_small")
    assert 0 < saved["val_quality_pct"] <= 100
    spec = ModelSpec(name="t", arch="unet_small", num_classes=11, input_hw=(184, 240), checkpoint=out,
                     model_kwargs={"width": 0.125})
    images, _ = load_split(find_split(tiny_root, "val", CAMVID_IGNORE), (184, 240), 11, limit=2)
    assert export_spec(spec, images).parity.passed


def test_train_needs_train_and_val_splits(tmp_path, small_split):
    proc = run_cli("train", "unet_small", "--data", str(small_split), "--epochs", "1", "--num-classes", "11",
                   "--ignore-index", "11", "--out", str(tmp_path / "x.pt"))
    assert proc.returncode == 2 and "must hold train/ and val/" in proc.stderr
