"""The Python API: a torch.nn.Module in memory benched under a target gives the rows the CLI writes for the same model."""

import textwrap

import pytest
import torch
from torch import nn

import harness
from harness.errors import HarnessError
from harness.results import read_rows

from conftest import SAMPLE_DIR, run_cli

TARGET = 'threads = 1\nmin_runs = 5\nmin_duration_s = 0.0\nprocesses = 1\nvariants = ["fp32", "int8-dynamic"]\n'
SAME_EVERY_RUN = ("model", "variant", "serving", "status", "onnx_sha256", "file_mb", "params_in_graph", "quality_pct",
                  "per_class_pct", "eval_images", "threads", "backend")


SMALL_MODEL = textwrap.dedent('''
    from torch import nn


    class Small(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 11, 1))

        def forward(self, x):
            return self.body(x)


    def build():
        return Small()
''')


def _small(folder) -> nn.Module:
    """The model as a notebook would hold it: built in memory (from the same source the CLI's factory file holds)."""
    import importlib.util

    (folder / "small_model.py").write_text(SMALL_MODEL)
    loader = importlib.util.spec_from_file_location("small_model_in_memory", folder / "small_model.py")
    module = importlib.util.module_from_spec(loader)
    loader.loader.exec_module(module)
    torch.manual_seed(0)
    return module.build()


@pytest.mark.slow
def test_a_module_in_memory_gets_the_rows_the_cli_writes_for_the_same_model(tmp_path):
    target = tmp_path / "quick.toml"
    target.write_text(TARGET)
    net = _small(tmp_path)
    torch.save(net.state_dict(), tmp_path / "small.pt")
    result = harness.bench(net, str(target), data=SAMPLE_DIR, name="small", num_classes=11, input_size=(64, 96),
                           ignore_index=11)
    assert net.training  # the caller's module is left as it was (the harness measures a copy in eval mode)
    assert result.passed and [(r.variant, r.status) for r in result.rows] == [("fp32", "ok"), ("int8-dynamic", "ok")]
    assert result.gate.failed == [] and all(r.p50_ms > 0 for r in result.rows)

    suite = tmp_path / "suite.toml"
    suite.write_text(f'[data]\ndir = "{SAMPLE_DIR}"\nignore_index = 11\n\n[[model]]\nname = "small"\n'
                     f'factory = "small_model:build"\ncheckpoint = "small.pt"\nnum_classes = 11\ninput_size = [64, 96]\n')
    proc = run_cli("bench", "--target", str(target), "--suite", str(suite), "--results-dir", str(tmp_path / "r"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    written = read_rows(tmp_path / "r" / "quick.csv")
    for ours, theirs in zip(result.rows, written, strict=True):
        assert {k: getattr(ours, k) for k in SAME_EVERY_RUN} == {k: getattr(theirs, k) for k in SAME_EVERY_RUN}


def test_the_api_refuses_what_it_cannot_bench_in_one_line(tmp_path):
    with pytest.raises(HarnessError, match="needs data="):
        harness.bench(_small(tmp_path), "watch", num_classes=11)
    with pytest.raises(HarnessError, match="not list"):
        harness.bench([1, 2], "watch")
    with pytest.raises(HarnessError, match="model name '../x' is refused"):
        harness.bench(_small(tmp_path), "watch", data=SAMPLE_DIR, name="../x", num_classes=11, input_size=(64, 96))
