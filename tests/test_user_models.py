"""The user's own models: an importable factory in their own file, and the pix2pix registry entry."""

import textwrap
from pathlib import Path

import pytest
import torch

from harness.data import find_split, load_split
from harness.errors import HarnessError
from harness.export import export_spec
from harness.models import create_model
from harness.results import read_rows
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
    suite.write_text(f'[data]\ndir = "{small_split}"\nignore_index = 11\n\n'
                     f'[calibration]\ndir = "{SAMPLE_DIR.parent / "camvid_train32"}"\nimages = 8\n\n[[model]]\nname = "lraspp"\n'
                     f'factory = "tv_models:build"\nnum_classes = 11\ninput_size = [192, 240]\n')
    fast_target.write_text(fast_target.read_text() + 'variants = ["fp32", "int8-static"]\n')
    proc = run_cli("bench", "--target", str(fast_target), "--suite", str(suite), "--results-dir", str(tmp_path / "r"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = {r.variant: r for r in read_rows(tmp_path / "r" / "fast.csv")}
    assert rows["fp32"].status == "ok" and rows["fp32"].verdict == "fits"
    # ORT's Percentile calibrator alone raises "Too many bins" on MobileNetV3's tiny-range tensors
    assert rows["int8-static"].status == "ok" and rows["int8-static"].quality_pct is not None
    assert "calibrated by MinMax instead of percentile (Too many bins" in rows["int8-static"].recipe


OUTSIDE = (Path(__file__).parent / "fixtures" / "outside_models.py").read_text()


def _outside_suite(tmp_path, small_split, *names):
    (tmp_path / "outside.py").write_text(OUTSIDE)
    suite = tmp_path / "outside.toml"
    suite.write_text(f'[data]\ndir = "{small_split}"\nignore_index = 11\n\n' + "".join(
        f'[[model]]\nname = "{n.lower()}"\nfactory = "outside:{n}"\nnum_classes = 11\ninput_size = [96, 128]\n\n'
        for n in names))
    return suite


def test_one_model_that_cannot_be_exported_is_one_failed_row_and_the_others_are_measured(tmp_path, small_split, fast_target):
    suite = _outside_suite(tmp_path, small_split, "Unexportable", "Healthy")
    proc = run_cli("bench", "--target", str(fast_target), "--suite", str(suite), "--results-dir", str(tmp_path / "r"))
    assert proc.returncode == 1, proc.stdout + proc.stderr  # something failed, and the exit code says so
    rows = {r.model: r for r in read_rows(tmp_path / "r" / "fast.csv")}
    assert rows["healthy"].status == "ok" and rows["healthy"].p50_ms > 0
    assert rows["unexportable"].status.startswith("export failed: model 'unexportable': no exporter could export it; "
                                                  "torch.export (dynamo), dynamic batch: NotImplementedError: aten_histc")
    assert "export-unexportable.log" in rows["unexportable"].status
    # torch's guard errors and tracebacks went to that log, not to the user's terminal
    assert "Traceback" not in proc.stderr + proc.stdout and len(proc.stderr.splitlines()) < 5, proc.stderr
    proc = run_cli("bench", "--target", str(fast_target), "--suite", str(_outside_suite(tmp_path, small_split, "Healthy")),
                   "--results-dir", str(tmp_path / "r2"))
    assert proc.returncode == 0, proc.stdout + proc.stderr  # the same healthy model alone: nothing failed


def test_an_export_with_a_batch_fixed_at_one_fails_only_the_batched_rows(tmp_path, small_split):
    suite = _outside_suite(tmp_path, small_split, "BatchOfOne")
    target = tmp_path / "served.toml"
    target.write_text('description = "two at once"\nthreads = 1\nimages_at_once = 2\nserving = ["batched", "concurrent"]\n'
                      'min_runs = 3\nmin_duration_s = 0.0\nwarmup_runs = 1\n')
    proc = run_cli("bench", "--target", str(target), "--suite", str(suite), "--results-dir", str(tmp_path / "r"), "--no-gate")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = {r.serving: r for r in read_rows(tmp_path / "r" / "served.csv")}
    assert rows["batch of 2"].status.startswith("the export has a static batch of 1 (torch.export (dynamo), dynamic "
                                                "batch, but torch fixed the batch at 1)")
    assert rows["2 in flight"].status == "ok" and rows["2 in flight"].p50_ms > 0


def test_a_users_onnx_file_named_relative_to_its_suite_benches_every_variant_from_anywhere(tmp_path, small_split, fast_target):
    from harness.onnx_graph import save_graph
    from onnx import TensorProto, helper, numpy_helper
    import numpy as np

    folder = tmp_path / "project"
    folder.mkdir()
    weights = numpy_helper.from_array(np.random.default_rng(0).normal(0, 0.3, (11, 3, 3, 3)).astype(np.float32), "w")
    save_graph(folder / "model.onnx", "mine", [helper.make_node("Conv", ["image", "w"], ["logits"], pads=[1, 1, 1, 1])],
               [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["n", 3, 96, 128])],
               [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["n", 11, 96, 128])], [weights])
    (folder / "suite.toml").write_text(
        f'[data]\ndir = "{small_split}"\nignore_index = 11\n\n[calibration]\ndir = "{SAMPLE_DIR.parent / "camvid_train32"}"\n'
        f'images = 8\n\n[[model]]\nname = "mine"\nonnx = "model.onnx"\nnum_classes = 11\ninput_size = [96, 128]\n')
    fast_target.write_text(fast_target.read_text() + 'variants = ["fp32", "int8-static", "int8-dynamic", "fp16"]\n')
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    proc = run_cli("bench", "--target", str(fast_target), "--suite", "../project/suite.toml", "--results-dir", "r",
                   "--no-gate", cwd=elsewhere)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = read_rows(elsewhere / "r" / "fast.csv")
    assert {r.variant: r.status for r in rows} == {v: "ok" for v in ("fp32", "int8-static", "int8-dynamic", "fp16")}


def test_a_users_onnx_file_with_nan_weights_is_refused_before_anything_is_measured(tmp_path, small_split, fast_target):
    from harness.onnx_graph import save_graph
    from onnx import TensorProto, helper, numpy_helper
    import numpy as np

    def suite_with(value: float):
        weights = numpy_helper.from_array(np.full((11, 3, 1, 1), value, np.float32), "w")
        save_graph(tmp_path / "nan.onnx", "nan", [helper.make_node("Conv", ["image", "w"], ["logits"])],
                   [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["n", 3, 96, 128])],
                   [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["n", 11, 96, 128])], [weights])
        suite = tmp_path / "nan.toml"
        suite.write_text(f'[data]\ndir = "{small_split}"\nignore_index = 11\n\n[[model]]\nname = "nan"\nonnx = "nan.onnx"\n'
                         f'num_classes = 11\ninput_size = [96, 128]\n')
        return run_cli("bench", "--target", str(fast_target), "--suite", str(suite), "--results-dir", str(tmp_path / "r"))

    proc = suite_with(float("nan"))
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "gives NaN or inf logits on evaluation image 1" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "r" / "fast.csv").exists()
    assert suite_with(0.1).returncode == 0  # the same file with finite weights is measured


def test_a_variant_whose_outputs_are_not_finite_is_a_failed_row(tmp_path, small_split):
    """A real measuring child on a file whose logits overflow to inf on real images: failed, never 'fits'."""
    from harness.results.measurement import build_request
    from harness.onnx_graph import save_graph
    from harness.runners import make_runner
    from harness.targets import load_target
    from harness.data import find_split, load_split, normalize
    from onnx import TensorProto, helper, numpy_helper
    import numpy as np

    weights = numpy_helper.from_array(np.full((11, 3, 1, 1), 3e38, np.float32), "w")
    path = save_graph(tmp_path / "inf.onnx", "inf", [helper.make_node("Conv", ["image", "w"], ["logits"])],
                      [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["n", 3, 96, 128])],
                      [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["n", 11, 96, 128])], [weights])
    images, masks = load_split(find_split(small_split, "val", 11), (96, 128), 11, limit=2)
    np.savez(tmp_path / "eval.npz", images=normalize(images), masks=masks.astype(np.int16))
    np.save(tmp_path / "sample.npy", normalize(images)[0])
    target = load_target("watch")
    request = build_request(path, target, tmp_path / "sample.npy", tmp_path / "eval.npz", 11, 11, None, "batched",
                            output_shape=(11, 96, 128))
    runner = make_runner(target, None)
    try:
        reply = runner.run(request, None)
    finally:
        runner.close()
    assert not reply.ok and "NaN or inf on evaluation image 1 of 2" in reply.error



LOUD_MODEL = '''
import os

import my_models  # a sibling module beside the suite

print("loud: importing")
os.write(1, b"loud: from C\\n")  # below Python's sys.stdout, as a C++ library would write


def build():
    for i in range(500):
        print(f"loud: building {i}")
    return my_models.build(classes=11, width=4)
'''


@pytest.mark.slow
def test_a_factory_that_prints_leaves_stdout_to_the_json(user_suite, tmp_path):
    import json

    (user_suite.parent / "loud.py").write_text(LOUD_MODEL)
    user_suite.write_text(user_suite.read_text().replace('factory = "my_models:build"', 'factory = "loud:build"')
                          .replace("kwargs = { classes = 11, width = 8 }\n", ""))
    target = tmp_path / "quick.toml"
    target.write_text('threads = 1\nmin_runs = 5\nmin_duration_s = 0.0\nprocesses = 1\nvariants = ["fp32"]\n')
    proc = run_cli("bench", "--target", str(target), "--suite", str(user_suite), "--results-dir", str(tmp_path / "r"),
                   "--json")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    answer = json.loads(proc.stdout)  # one JSON document: nothing the factory printed
    assert [(r["model"], r["variant"], r["status"]) for r in answer["rows"]] == [("mine", "fp32", "ok")]
    assert "loud: building 499" in proc.stderr and "loud: from C" in proc.stderr and "loud: importing" in proc.stderr
