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


def test_train_stores_float16_weights_with_recorded_keywords_that_reduce_reuses(tmp_path, tiny_root):
    """--weights-dtype float16 halves the file and still loads; reduce takes the recorded width from it."""
    out = tmp_path / "half.pt"
    proc = run_cli("train", "unet_small", "--data", str(tiny_root), "--epochs", "1", "--model-arg", "width=0.125",
                   "--ignore-index", str(CAMVID_IGNORE), "--weights-dtype", "float16", "--input-size", "64x64",
                   "--out", str(out), "--batch-size", "4")
    assert proc.returncode == 0, proc.stderr
    saved = torch.load(out, weights_only=True)
    assert saved["weights_dtype"] == "float16" and saved["model_kwargs"] == {"width": 0.125}
    assert all(t.dtype == torch.float16 for t in saved["state_dict"].values() if t.is_floating_point())
    from harness.models.checkpoint import build_model

    spec = ModelSpec(name="t", arch="unet_small", num_classes=11, input_hw=(64, 64), checkpoint=out,
                     model_kwargs={"width": 0.125})
    model = build_model(spec)
    assert all(p.dtype == torch.float32 for p in model.parameters())
    loaded = {k.removeprefix("model."): v for k, v in model.state_dict().items()}
    assert torch.equal(loaded["down1.0.weight"], saved["state_dict"]["down1.0.weight"].float())

    pruned = tmp_path / "pruned.pt"  # without the recorded width this would not fit the registry model
    proc = run_cli("reduce", "prune", "unet_small", "--checkpoint", str(out), "--ratio", "0.5", "--out", str(pruned))
    assert proc.returncode == 0, proc.stderr
    assert torch.load(pruned, weights_only=True)["model_kwargs"] == {"width": 0.125}


@pytest.mark.parametrize("args, message", [
    (["--model-arg", "hidden_units"], "is not KEY=VALUE"),
    (["--model-arg", "no_such_keyword=3"], "does not take these options ['no_such_keyword']"),
    (["--device", "cuda"], "PyTorch sees no CUDA device here"),
])
def test_train_refuses_bad_keywords_and_a_missing_device_in_one_line(tmp_path, tiny_root, args, message):
    if "cuda" in args and torch.cuda.is_available():
        pytest.skip("this machine has a CUDA device")
    proc = run_cli("train", "unet_small", "--data", str(tiny_root), "--epochs", "1", "--out", str(tmp_path / "x.pt"),
                   *args)
    assert proc.returncode == 2 and message in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "x.pt").exists()
