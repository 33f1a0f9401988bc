"""Narrowing a run (--model, --variant, --serving), the gate on a narrowed run, --update with a filter, --json, --summary."""

import json
from pathlib import Path

import pytest

from harness.bench.narrow import Narrowing
from harness.errors import HarnessError
from harness.spec import ModelSpec, Suite
from harness.targets import TargetProfile

from conftest import SAMPLE_DIR, run_cli

SUITE = Suite(Path("suite.toml"), tuple(ModelSpec(name=n, arch="unet_small", num_classes=11, input_hw=(96, 128))
                                        for n in ("pspnet_resnet18", "pspnet_resnet18_pruned30", "unet_small")), None, 11)
WATCH = TargetProfile.from_flat("watch", threads=1, variants=("fp32", "int8-static", "int8-dynamic", "fp16"),
                                ship=("int8-static",), serving=("batched", "concurrent"))


def test_model_patterns_variants_and_serving_narrow_the_suite_and_the_target():
    suite, target = Narrowing(("pspnet_resnet18*",), ("int8-static",), ("batched",)).apply(SUITE, WATCH)
    assert [m.name for m in suite.models] == ["pspnet_resnet18", "pspnet_resnet18_pruned30"]
    assert target.scenario.variants == ("int8-static",) and target.scenario.serving == ("batched",)
    assert target.budgets.ship == ("int8-static",)
    _, comparison_only = Narrowing(variants=("fp16",)).apply(SUITE, WATCH)
    assert comparison_only.budgets.ship == () and not comparison_only.budgets.ships("fp16")  # as in the full run
    same_suite, same_target = Narrowing().apply(SUITE, WATCH)
    assert same_suite == SUITE and same_target == WATCH


@pytest.mark.parametrize("narrowing, message", [
    (Narrowing(models=("resnet*",)), "no model of suite.toml matches --model resnet*; its models: pspnet_resnet18, "),
    (Narrowing(variants=("int4",)), "--variant int4: target 'watch' measures fp32, int8-static, int8-dynamic, fp16"),
    (Narrowing(serving=("http",)), "--serving http: target 'watch' serves batched, concurrent; choose among them"),
])
def test_a_filter_that_keeps_nothing_is_bad_input(narrowing, message):
    with pytest.raises(HarnessError) as caught:
        narrowing.apply(SUITE, WATCH)
    assert str(caught.value).startswith(message)


def test_the_gate_looks_only_at_recorded_rows_the_narrowed_run_meant_to_measure():
    narrowing = Narrowing(("pspnet_resnet18",), ("int8-static",), ("batched",))
    assert narrowing.selects(("pspnet_resnet18", "int8-static", "batched", "onnxruntime"), WATCH)
    assert narrowing.selects(("pspnet_resnet18", "fp32", "batched", "onnxruntime"), WATCH)  # the reference is measured too
    assert not narrowing.selects(("pspnet_resnet18", "fp16", "batched", "onnxruntime"), WATCH)
    assert not narrowing.selects(("pspnet_resnet18", "int8-static", "concurrent", "onnxruntime"), WATCH)
    assert not narrowing.selects(("unet_small", "int8-static", "batched", "onnxruntime"), WATCH)
    assert narrowing.describe() == "--model pspnet_resnet18, --variant int8-static, --serving batched"


TWO_MODEL_SUITE = """
[data]
dir = "{data}"
ignore_index = 11

[[model]]
name = "tiny_a"
arch = "unet_small"
num_classes = 11
input_size = [96, 128]
kwargs = {{ width = 0.125 }}

[[model]]
name = "tiny_b"
arch = "unet_small"
num_classes = 11
input_size = [96, 128]
kwargs = {{ width = 0.25 }}
"""


@pytest.mark.slow
def test_a_narrowed_run_measures_its_rows_gates_them_and_updates_only_them(tmp_path):
    suite = tmp_path / "suite.toml"
    suite.write_text(TWO_MODEL_SUITE.format(data=SAMPLE_DIR))
    target = tmp_path / "fast.toml"
    target.write_text('threads = 1\nmin_runs = 5\nmin_duration_s = 0.0\nwarmup_runs = 1\nprocesses = 1\n'
                      'variants = ["fp32", "int8-dynamic", "fp16"]\n')
    results = tmp_path / "results"
    base = ("bench", "--target", str(target), "--suite", str(suite), "--results-dir", str(results))
    first = run_cli(*base)
    assert first.returncode == 0, first.stdout + first.stderr
    record = results / "fast.csv"
    before = record.read_text().splitlines()
    summary = tmp_path / "summary.md"
    summary.write_text("# earlier step\n")
    narrowed = run_cli(*base, "--model", "tiny_b", "--variant", "int8-dynamic", "--json", "--summary", str(summary))
    assert narrowed.returncode == 0, narrowed.stdout + narrowed.stderr
    answer = json.loads(narrowed.stdout)  # stdout is the JSON alone: the tables went to stderr
    assert sorted((r["model"], r["variant"]) for r in answer["rows"]) == [("tiny_b", "fp32"), ("tiny_b", "int8-dynamic")]
    assert answer["gate"]["passed"] and answer["gate"]["narrowed"] == "--model tiny_b, --variant int8-dynamic"
    assert sorted(map(tuple, answer["gate"]["not_looked_at"])) == [
        ("tiny_a", "fp16", "1 per call", "onnxruntime"), ("tiny_a", "fp32", "1 per call", "onnxruntime"), ("tiny_a", "int8-dynamic", "1 per call", "onnxruntime"),
        ("tiny_b", "fp16", "1 per call", "onnxruntime")]
    assert "4 recorded rows not looked at (--model tiny_b, --variant int8-dynamic)" in narrowed.stderr
    text = summary.read_text()
    assert text.startswith("# earlier step\n## harness bench --target fast\n")
    assert "| tiny_b | int8-dynamic | 1 per call |" in text and "### gate against" in text and "**gate fast: passed" in text
    updated = run_cli(*base, "--model", "tiny_b", "--variant", "int8-dynamic", "--update")
    assert updated.returncode == 0, updated.stdout + updated.stderr
    after = record.read_text().splitlines()
    untouched = [line for line in before if not line.startswith(("fast,tiny_b,fp32,", "fast,tiny_b,int8-dynamic,"))]
    assert [line for line in after if line in untouched] == untouched  # the other rows byte for byte
    changed = [line for line in after if line not in before]
    assert len(changed) == 2 and all(line.startswith(("fast,tiny_b,fp32,", "fast,tiny_b,int8-dynamic,")) for line in changed)


@pytest.mark.parametrize("narrowing", [
    Narrowing(backends=("openvino",)), Narrowing(models=("pspnet_resnet18",)), Narrowing(variants=("int8-nncf",)),
    Narrowing(serving=("concurrent",)), Narrowing(("pspnet_mobilenet_v2",), ("bf16",), ("batched",), ("openvino",)),
], ids=lambda n: n.describe())
def test_update_of_a_narrowed_run_keeps_every_other_row_of_the_committed_record_byte_for_byte(tmp_path, narrowing):
    """`bench --target cloud --backend openvino --update` once dropped all 25 ORT int8-static rows of the record."""
    import dataclasses
    import shutil

    from harness.results import read_rows, record_key
    from harness.targets import load_target

    import csv

    record = tmp_path / "cloud.csv"
    shutil.copy(Path(__file__).parents[1] / "results" / "cloud.csv", record)
    cloud = load_target("cloud")
    before = record.read_text().splitlines()
    measured = [dataclasses.replace(r, p50_ms=(r.p50_ms or 1.0) * 1.5) for r in read_rows(record)
                if narrowing.selects(r.key, cloud)]
    assert measured  # each narrowing measures something of the record
    narrowing.update_record(record, measured)
    after = record.read_text().splitlines()
    keys = [record_key(r) for r in csv.DictReader(before)]
    untouched = [line for line, key in zip(before[1:], keys) if not narrowing.selects(key, cloud)]
    assert len(after) == len(before) and [line for line in after if line in untouched] == untouched
    assert sorted(record_key(r) for r in csv.DictReader(after)) == sorted(keys)
