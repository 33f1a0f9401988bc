"""The user's own models: an importable factory in their own file, and the pix2pix registry entry."""

import textwrap

import pytest
import torch

from harness.data import find_split, load_split
from harness.errors import HarnessError
from harness.export import export_spec
from harness.models import create_model
from harness.spec import ModelSpec, load_suite

from conftest import SAMPLE_DIR, run_cli

USER_MODEL = textwrap.dedent('''
    import torch
    from torch import nn


    class Tiny(nn.Module):
        def __init__(self, classes, width):
            super().__init__()
            self.body = nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.ReLU(), nn.Conv2d(width, classes, 1))

        def forward(self, x):
            return self.body(x)


    def build(classes=11, width=8):
        return Tiny(classes, width)
''')


@pytest.fixture
def user_suite(tmp_path):
    (tmp_path / "my_models.py").write_text(USER_MODEL)
    suite = tmp_path / "suite.toml"
    suite.write_text(textwrap.dedent(f'''
        [data]
        dir = "{SAMPLE_DIR}"
        ignore_index = 11

        [calibration]
        dir = "{SAMPLE_DIR.parent / 'camvid_train32'}"
        images = 8

        [[model]]
        name = "mine"
        factory = "my_models:build"
        kwargs = {{ classes = 11, width = 8 }}
        num_classes = 11
        input_size = [96, 128]
    '''))
    return suite


def test_factory_model_exports_with_parity(user_suite):
    spec = load_suite(user_suite).models[0]
    images, _ = load_split(find_split(SAMPLE_DIR, "val", 11), (96, 128), 11, limit=2)
    exported = export_spec(spec, images)
    assert exported.parity.passed and exported.params_in_graph == 3 * 8 * 9 + 8 + 8 * 11 + 11


@pytest.mark.slow
def test_factory_model_is_quantized_and_benchmarked_through_a_suite_alone(user_suite, tmp_path):
    target = tmp_path / "quick.toml"
    target.write_text('threads = 1\nmin_runs = 10\nmin_duration_s = 0.2\nprocesses = 1\nvariants = ["fp32", "int8-static"]\n')
    proc = run_cli("bench", "--target", str(target), "--suite", str(user_suite), "--results-dir", str(tmp_path / "r"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = (tmp_path / "r" / "quick.csv").read_text().splitlines()[1:]
    assert [r.split(",")[:3] for r in rows] == [["quick", "mine", "fp32"], ["quick", "mine", "int8-static"]]


def test_factory_errors_are_one_line(tmp_path):
    with pytest.raises(HarnessError, match="is not \"package.module:function\""):
        ModelSpec(name="x", factory="no_colon", num_classes=2, input_hw=(8, 8))
    spec = ModelSpec(name="x", factory="nowhere_module:build", num_classes=2, input_hw=(8, 8), search_path=tmp_path)
    with pytest.raises(HarnessError, match="cannot import nowhere_module"):
        export_spec(spec, torch.zeros(1, 8, 8, 3, dtype=torch.uint8).numpy())


def test_mobilenet_v2_pix2pix_decoder_is_the_reports():
    model = create_model("mobilenet_v2_pix2pix", num_classes=5).eval()
    block = model.up[0]
    assert [type(m).__name__ for m in block] == ["ConvTranspose2d", "BatchNorm2d", "Dropout", "ReLU"]
    with torch.inference_mode():
        assert model(torch.zeros(1, 3, 96, 128)).shape == (1, 5, 96, 128)


def test_mobilenet_v2_pix2pix_exports_with_parity():
    spec = ModelSpec(name="p2p", arch="mobilenet_v2_pix2pix", num_classes=11, input_hw=(96, 128))
    images, _ = load_split(find_split(SAMPLE_DIR, "val", 11), (96, 128), 11, limit=2)
    assert export_spec(spec, images).parity.passed


def test_unfaithful_export_fails_with_exit_1(user_suite):
    # A model that stays random at inference: PyTorch and ONNX Runtime cannot agree, so parity must fail.
    module = user_suite.parent / "my_models.py"
    module.write_text(USER_MODEL.replace("return self.body(x)",
                                         "return torch.nn.functional.dropout(self.body(x), 0.5, training=True)"))
    proc = run_cli("export", "mine", "--suite", str(user_suite))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "not faithful" in proc.stderr and "Traceback" not in proc.stderr


TORCHVISION_FACTORY = """
from torchvision.models.segmentation import lraspp_mobilenet_v3_large

def build(classes=11):
    # torchvision's segmentation models return {'out': logits}; the harness takes 'out' (the suite's `output` key)
    return lraspp_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=classes)
"""


@pytest.mark.slow
def test_a_torchvision_segmentation_model_benches_through_a_suite(tmp_path, small_split, fast_target):
    from conftest import run_cli

    (tmp_path / "tv_models.py").write_text(TORCHVISION_FACTORY)
    suite = tmp_path / "tv_suite.toml"
    suite.write_text(f'[data]\ndir = "{small_split}"\nignore_index = 11\n\n[[model]]\nname = "lraspp"\n'
                     f'factory = "tv_models:build"\nnum_classes = 11\ninput_size = [192, 240]\n')
    proc = run_cli("bench", "--target", str(fast_target), "--suite", str(suite), "--results-dir", str(tmp_path / "r"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    row = (tmp_path / "r" / "fast.csv").read_text().splitlines()[1]
    assert row.startswith("fast,lraspp,fp32,1 per call,ok,fits,")
