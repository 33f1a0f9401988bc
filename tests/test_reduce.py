"""Reduction recipes on a tiny real model: they shrink it for real and the result still exports."""

import os

import pytest
import torch
from torch import nn

from harness.checkpoint import build_model
from harness.data import find_split, load_split
from harness.errors import HarnessError
from harness.export import export_spec
from harness.reduce import apply_recipe, count_params
from harness.registry import create_model
from harness.spec import ModelSpec

from conftest import SAMPLE_DIR, run_cli

HW = (96, 128)


@pytest.fixture
def parent(tmp_path):
    torch.manual_seed(0)
    path = tmp_path / "parent.pt"
    torch.save({"state_dict": create_model("unet_small", 11, width=0.25).state_dict()}, path)
    return path


def _spec(checkpoint):
    return ModelSpec(name="tiny", arch="unet_small", num_classes=11, input_hw=HW, checkpoint=checkpoint,
                     model_kwargs={"width": 0.25})


def _reduce(parent, recipe, out, *extra):
    suite = out.parent / "suite.toml"
    suite.write_text(f'[data]\ndir = "{SAMPLE_DIR}"\nignore_index = 11\n\n[[model]]\nname = "tiny"\narch = "unet_small"\n'
                     f'num_classes = 11\ninput_size = [96, 128]\nkwargs = {{ width = 0.25 }}\ncheckpoint = "{parent}"\n')
    return run_cli("reduce", recipe, "tiny", "--suite", str(suite), "--out", str(out), *extra)


@pytest.fixture(scope="module")
def images():
    return load_split(find_split(SAMPLE_DIR, "val", 11), HW, 11, limit=2)[0]


def test_prune_removes_channels_and_shrinks_the_file(parent, tmp_path, images):
    out = tmp_path / "pruned.pt"
    proc = _reduce(parent, "prune", out, "--ratio", "0.5")
    assert proc.returncode == 0, proc.stderr
    assert "prune: 50% of channels removed" in proc.stdout
    before, after = build_model(_spec(parent)), build_model(_spec(out))  # weights_only load + rebuild
    assert after.down1[0].out_channels < before.down1[0].out_channels
    assert after.head.out_channels == 11  # the classes stay
    assert count_params(after) < 0.5 * count_params(before)
    big, small = export_spec(_spec(parent), images), export_spec(_spec(out), images)
    assert small.parity.passed and os.path.getsize(small.path) < 0.55 * os.path.getsize(big.path)
    with torch.inference_mode():
        assert after(torch.zeros(1, 3, *HW)).shape == (1, 11, *HW)


def test_factorize_makes_convolutions_separable(parent, tmp_path, images):
    out = tmp_path / "factorized.pt"
    proc = _reduce(parent, "factorize", out)
    assert proc.returncode == 0, proc.stderr
    model = build_model(_spec(out))
    depthwise = [m for m in model.modules() if isinstance(m, nn.Conv2d) and m.groups > 1]
    assert depthwise and all(m.groups == m.in_channels for m in depthwise)
    assert count_params(model) < 0.5 * count_params(build_model(_spec(parent)))
    assert export_spec(_spec(out), images).parity.passed


def test_recipes_chain_and_are_recorded(parent, tmp_path):
    factorized, both = tmp_path / "f.pt", tmp_path / "fp.pt"
    assert _reduce(parent, "factorize", factorized).returncode == 0
    assert _reduce(factorized, "prune", both, "--ratio", "0.25").returncode == 0
    saved = torch.load(both, weights_only=True)
    assert saved["reductions"] == ["factorize", "prune"] and saved["parent"] == str(factorized)
    assert count_params(build_model(_spec(both))) < count_params(build_model(_spec(factorized)))


def test_recipe_that_cannot_apply_says_so():
    only_pointwise = nn.Sequential(nn.Conv2d(3, 4, 1), nn.ReLU(), nn.Conv2d(4, 2, 1))
    with pytest.raises(HarnessError, match="no eligible 3x3 convolution"):
        apply_recipe(only_pointwise, "factorize", torch.zeros(1, 3, 8, 8), 0.3)
    with pytest.raises(HarnessError, match="between 0 and 1"):
        apply_recipe(only_pointwise, "prune", torch.zeros(1, 3, 8, 8), 1.5)


def test_reduce_on_an_onnx_file_is_bad_input(tmp_path):
    proc = run_cli("reduce", "prune", str(tmp_path / "model.onnx"), "--out", str(tmp_path / "x.pt"))
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_pruned_checkpoint_fine_tunes_and_keeps_its_reductions(parent, tmp_path, tiny_root):
    root = tiny_root
    pruned, tuned = tmp_path / "pruned.pt", tmp_path / "tuned.pt"
    assert _reduce(parent, "prune", pruned, "--ratio", "0.5").returncode == 0
    proc = run_cli("train", "unet_small", "--data", str(root), "--num-classes", "11", "--ignore-index", "11",
                   "--width", "0.25", "--input-size", "96x128", "--epochs", "1", "--init", str(pruned), "--out", str(tuned))
    assert proc.returncode == 0, proc.stderr
    saved = torch.load(tuned, weights_only=True)
    assert saved["reductions"] == ["prune"] and saved["parent"] == str(pruned)
    assert count_params(build_model(_spec(tuned))) == count_params(build_model(_spec(pruned)))
