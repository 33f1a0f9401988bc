"""Reduction recipes on a tiny real model: they shrink it for real and the result still exports."""

import os

import pytest
import torch
from torch import nn

from harness.models.checkpoint import build_model
from harness.data import find_split, load_split
from harness.errors import HarnessError
from harness.export import export_spec
from harness.reduce import apply_recipe, count_params
from harness.models import create_model
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


def _suite_for(tmp_path, arch, checkpoint, kwargs="{}"):
    suite = tmp_path / f"{arch}_suite.toml"
    suite.write_text(f'[data]\ndir = "{SAMPLE_DIR}"\nignore_index = 11\n\n[[model]]\nname = "m"\narch = "{arch}"\n'
                     f'num_classes = 11\ninput_size = [96, 128]\nkwargs = {kwargs}\ncheckpoint = "{checkpoint}"\n')
    return suite


@pytest.fixture
def small_pspnet(tmp_path):
    """PSPNet-R18 with a 64-channel decoder: the real smp architecture, small enough for a test."""
    torch.manual_seed(0)
    path = tmp_path / "psp.pt"
    torch.save({"state_dict": create_model("pspnet_resnet18", 11, psp_out_channels=64).state_dict()}, path)
    return path


def _psp_spec(checkpoint, arch="pspnet_resnet18", kwargs=None):
    return ModelSpec(name="m", arch=arch, num_classes=11, input_hw=HW, checkpoint=checkpoint,
                     model_kwargs={"psp_out_channels": 64} if kwargs is None else kwargs)


def test_decoder_width_narrows_only_the_decoder(small_pspnet, tmp_path, images):
    out = tmp_path / "narrow.pt"
    suite = _suite_for(tmp_path, "pspnet_resnet18", small_pspnet, "{ psp_out_channels = 64 }")
    proc = run_cli("reduce", "decoder-width", "m", "--suite", str(suite), "--channels", "32", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "narrowed from 64 to 32 channels" in proc.stdout
    before, after = build_model(_psp_spec(small_pspnet)), build_model(_psp_spec(out))
    assert after.decoder.conv[0].out_channels == 32 and after.segmentation_head[0].in_channels == 32
    assert after.segmentation_head[0].out_channels == 11
    assert [m.out_channels for m in after.encoder.modules() if isinstance(m, nn.Conv2d)] == \
        [m.out_channels for m in before.encoder.modules() if isinstance(m, nn.Conv2d)]  # the encoder is untouched
    big, small = export_spec(_psp_spec(small_pspnet), images), export_spec(_psp_spec(out), images)
    assert small.parity.passed and os.path.getsize(small.path) < os.path.getsize(big.path)
    with torch.inference_mode():
        assert after(torch.zeros(1, 3, *HW)).shape == (1, 11, *HW)


def test_decoder_width_on_a_model_without_a_decoder_is_one_line(parent, tmp_path):
    proc = _reduce(parent, "decoder-width", tmp_path / "x.pt", "--channels", "8")
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1
    assert "no `decoder` module" in proc.stderr


@pytest.mark.slow
def test_encoder_swap_trains_a_lighter_model(small_pspnet, tmp_path, tiny_root, images):
    out = tmp_path / "mnv2.pt"
    suite = _suite_for(tmp_path, "pspnet_resnet18", small_pspnet, "{ psp_out_channels = 64 }")
    proc = run_cli("reduce", "encoder", "m", "--suite", str(suite), "--to", "pspnet_mobilenet_v2",
                   "--data", str(tiny_root), "--epochs", "1", "--batch-size", "4", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    saved = torch.load(out, weights_only=True)
    assert saved["arch"] == "pspnet_mobilenet_v2" and saved["reductions"] == []
    assert "encoder: pspnet_resnet18 -> pspnet_mobilenet_v2" in saved["note"] and "1 epochs of training" in saved["note"]
    student = build_model(_psp_spec(out, "pspnet_mobilenet_v2", {}))
    assert count_params(student) < 0.5 * count_params(build_model(_psp_spec(small_pspnet)))
    assert export_spec(_psp_spec(out, "pspnet_mobilenet_v2", {}), images).parity.passed


def test_encoder_and_distill_refuse_to_run_untrained(small_pspnet, tmp_path):
    suite = _suite_for(tmp_path, "pspnet_resnet18", small_pspnet, "{ psp_out_channels = 64 }")
    for recipe in ("encoder", "distill"):
        proc = run_cli("reduce", recipe, "m", "--suite", str(suite), "--to", "pspnet_mobilenet_v2",
                       "--out", str(tmp_path / "x.pt"))
        assert proc.returncode == 2 and "pass --data DIR" in proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1
    proc = run_cli("reduce", "distill", "m", "--suite", str(suite), "--teacher", "m", "--soft-weight", "1.5",
                   "--out", str(tmp_path / "x.pt"))
    assert proc.returncode == 2 and "--soft-weight must be between 0 and 1" in proc.stderr


def test_encoder_swap_to_another_task_is_refused(small_pspnet, tmp_path, tiny_root):
    suite = _suite_for(tmp_path, "pspnet_resnet18", small_pspnet, "{ psp_out_channels = 64 }")
    proc = run_cli("reduce", "encoder", "m", "--suite", str(suite), "--to", "mobilenet_v2", "--data", str(tiny_root),
                   "--epochs", "1", "--out", str(tmp_path / "x.pt"))
    assert proc.returncode == 2 and "cannot replace pspnet_resnet18" in proc.stderr


def test_distillation_loss_is_zero_when_the_student_matches():
    from harness.reduce.train import distillation_loss

    torch.manual_seed(0)
    teacher = torch.randn(2, 5, 4, 4)
    labels = torch.randint(0, 5, (2, 4, 4))
    assert distillation_loss(teacher.clone(), teacher, labels, 4.0, 255).item() == pytest.approx(0, abs=1e-6)
    assert distillation_loss(torch.randn(2, 5, 4, 4), teacher, labels, 4.0, 255).item() > 0
    ignored = torch.full_like(labels, 255)
    assert distillation_loss(torch.randn(2, 5, 4, 4), teacher, ignored, 4.0, 255).item() == 0


@pytest.mark.slow
def test_distill_brings_a_factorized_student_towards_its_teacher(parent, tmp_path, tiny_root, images):
    from harness.data import normalize
    from harness.reduce.train import distillation_loss

    student = tmp_path / "student.pt"
    assert _reduce(parent, "factorize", student).returncode == 0
    out = tmp_path / "distilled.pt"
    teacher_suite = _suite_for(tmp_path, "unet_small", parent, "{ width = 0.25 }")
    proc = _reduce(student, "distill", out, "--teacher", str(parent), "--data", str(tiny_root), "--epochs", "2",
                   "--batch-size", "2", "--soft-weight", "1.0")
    assert proc.returncode == 2 and "does not record its architecture" in proc.stderr  # a bare state_dict
    proc = run_cli("reduce", "distill", "m", "--suite", str(teacher_suite), "--checkpoint", str(student),
                   "--teacher", "m", "--data", str(tiny_root), "--epochs", "2", "--batch-size", "2",
                   "--soft-weight", "1.0", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    saved = torch.load(out, weights_only=True)
    assert saved["reductions"] == ["factorize"] and len(saved["history"]) == 2
    x = torch.from_numpy(normalize(images))
    labels = torch.zeros(x.shape[0], *HW, dtype=torch.long)
    with torch.inference_mode():
        teacher = build_model(_spec(parent))(x)
        gap_before = distillation_loss(build_model(_spec(student))(x), teacher, labels, 4.0, 255)
        gap_after = distillation_loss(build_model(_spec(out))(x), teacher, labels, 4.0, 255)
    assert gap_after < gap_before


def test_factorize_starts_from_the_parents_weights():
    """A 3x3 conv that is already depthwise x pointwise is reproduced exactly by its factorized pair."""
    from harness.reduce import factorize

    torch.manual_seed(0)
    conv = nn.Conv2d(8, 16, 3, padding=1)
    depthwise, pointwise = torch.randn(8, 3, 3), torch.randn(16, 8)
    with torch.no_grad():
        conv.weight.copy_(pointwise[:, :, None, None] * depthwise[None])
    model, x = nn.Sequential(conv), torch.randn(1, 8, 10, 10)
    with torch.no_grad():
        expected = model(x)
        assert factorize(model) == 1
        assert torch.allclose(model(x), expected, atol=1e-4)


def test_the_command_line_names_every_recipe_and_parses_without_importing_torch():
    """A refused command line answers in a fraction of a second: parsing must not pay torch's import (about 1 s)."""
    import subprocess
    import sys

    from harness.cli.reduce import RECIPE_CHOICES
    from harness.reduce import RECIPES

    assert RECIPE_CHOICES == RECIPES
    probe = "import sys; from harness.cli import build_parser; build_parser(); print(sorted(m for m in sys.modules if m == 'torch'))"
    assert subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout.strip() == "[]"
