"""harness tune on real models: the space, the budgets as rejections with reasons, the winner written and rebuilt
byte for byte, and a search cut short still reporting what it measured."""

from __future__ import annotations

import csv
import os
import re
import signal
import subprocess
import sys

import pytest
from conftest import SAMPLE_DIR, TINY_SUITE, run_cli

from harness.spec import ASSETS_DIR, load_suite
from harness.targets import load_target
from harness.tune.space import TUNED_INT8, build_space, candidate

SUITE = f"""
[data]
dir = "{SAMPLE_DIR}"
ignore_index = 11
[calibration]
dir = "{ASSETS_DIR / 'camvid_train32'}"
images = 8
[[model]]
name = "pspnet_resnet18"
arch = "pspnet_resnet18"
num_classes = 11
input_size = [192, 240]
checkpoint = "{ASSETS_DIR / 'checkpoints' / 'pspnet_resnet18_camvid.pt'}"
"""
# a watch's 15 MB for the model; short children: the figures compared are paired ratios within one group
TARGET = """
description = "tune test"
threads = 1
min_runs = 5
min_duration_s = 0.2
warmup_runs = 2
processes = 2
memory_quantity = "model"
memory_budget_mb = 15
max_miou_drop = {drop}
variants = ["fp32", "int8-static"]
ship = ["int8-static"]
gate_ab_max_processes = 6  # the finalists: 3 paired rounds, more while a margin is undecided (3 alone once read x0.885 at the low end)
"""


@pytest.fixture
def tune_files(tmp_path):
    suite, target = tmp_path / "suite.toml", tmp_path / "tunetarget.toml"
    suite.write_text(SUITE)
    target.write_text(TARGET.format(drop=1.0))
    return suite, target


def _rows(path):
    return list(csv.DictReader(path.open()))


def test_the_space_holds_each_runtime_its_variants_int8_settings_and_session_options():
    space = build_space(load_target("watch"), ("onnxruntime",))
    assert set(space.variants["onnxruntime"]) >= {"fp32", "int8-static", "int8-dynamic", "fp16"}
    points = list(space.every_point())
    assert len(points) == space.size() == len(set(map(repr, points)))
    int8 = [p for p in points if p[1] == TUNED_INT8]
    assert int8 and all(p[2] for p in int8) and not any(p[2] for p in points if p[1] != TUNED_INT8)
    assert len(int8) == 4 * 2 * 2 * 8  # calibrations x per-channel x activation type x the three session switches
    one = candidate("t01", *int8[0])
    assert one.key == candidate("t99", *int8[0]).key and one.name == "t01"  # the settings, not the name, are the key


def test_a_quality_breach_is_rejected_with_its_reason_and_one_within_the_budget_is_not(tmp_path, tune_files):
    """The same two int8 files on the same images give the same drops; a budget between them rejects one only."""
    from harness.bench import BenchInputs
    from harness.tune.measure import Stage, measure_stage
    from harness.variants.quantize import default_options

    suite = load_suite(str(tune_files[0]))
    inputs = BenchInputs(suite.data_dir, suite.calibration_dir, default_options(calibration_images=8))
    plain = candidate("t01", "onnxruntime", TUNED_INT8, {"calibration": "percentile:99.999", "per_channel": True,
                                                         "activation_type": "uint8"}, {})
    coarse = candidate("t02", "onnxruntime", TUNED_INT8, {"calibration": "entropy", "per_channel": False,
                                                          "activation_type": "int8"}, {})
    stage = Stage("screen", 2, 0.1, 4)
    loose = load_target(str(tune_files[1]))
    first = measure_stage(suite, loose, inputs, [plain, coarse], stage, "batched", None)
    drops = {name: m.row.quality_drop_pts for name, m in first.measured.items()}
    assert all(d is not None for d in drops.values()) and max(drops.values()) > min(drops.values()), drops
    worse, better = sorted(drops, key=drops.get, reverse=True)
    budget = round((drops[worse] + drops[better]) / 2, 4)
    tune_files[1].write_text(TARGET.format(drop=budget).replace("memory_budget_mb = 15", "memory_budget_mb = 0"))
    second = measure_stage(suite, load_target(str(tune_files[1])), inputs, [plain, coarse], stage, "batched", None)
    assert second.measured[worse].row.quality_drop_pts == pytest.approx(drops[worse], abs=1e-6)
    assert f"over accuracy (mIoU drop {drops[worse]:.2f} > {budget:g} pts) on 4 screening images" in \
        second.measured[worse].rejected
    assert "accuracy" not in second.measured[better].rejected


def test_tune_rejects_over_budget_candidates_writes_the_winner_and_bench_rebuilds_its_very_file(tmp_path, tune_files):
    suite, target = tune_files
    results = tmp_path / "results"
    result = run_cli("tune", "pspnet_resnet18", "--suite", str(suite), "--target", str(target), "--trials", "3",
                     "--batch", "3", "--survivors", "2", "--finalists", "2", "--screen-images", "4", "--against", "fp32",
                     "--results-dir", str(results), timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    rows = _rows(results / "latest" / "tune-tunetarget-pspnet_resnet18.csv")
    assert len(rows) == 3 and {r["stage"] for r in rows} >= {"screen"}
    for row in rows:  # over the 15 MB budget: rejected, with the figure, never the winner
        if row["model_mb"] and float(row["model_mb"]) > 15:
            assert row["outcome"] == "rejected" and f"over memory (model {float(row['model_mb']):.1f} > 15 MB)" in row["reason"]
    assert any("openvino" in r["configuration"] and r["outcome"] == "rejected" for r in rows)  # 30+ MB: always over
    winner = next(r for r in rows if r["outcome"] == "winner")
    assert float(winner["model_mb"]) <= 15 and float(winner["speedup_vs_shipped_low"]) > 1  # faster than fp32, interval and all
    out = " ".join(result.stdout.split())
    assert "beats fp32" in out and "rebuilt from what was written: the same file" in out
    rounds = re.search(r"finalists: \d+ candidates? in \d+ s after (\d+) paired rounds \((.*?)\)", out)
    assert rounds and 3 <= int(rounds[1]) <= 6, out[-3000:]  # 3 rounds first, more only while undecided, 6 at most
    assert (rounds[2] == "every margin decided") == (int(rounds[1]) < 6), rounds[0]
    assert (results / "latest" / "tune-tunetarget-pspnet_resnet18.html").is_file()
    written = load_target(str(target))
    assert "tuned-pspnet_resnet18" in written.scenario.variants and "tuned-pspnet_resnet18" in written.budgets.ship
    named = written.scenario.variant("tuned-pspnet_resnet18").named
    assert named.models == ("pspnet_resnet18",) and "harness tune" in named.note
    bench = run_cli("bench", "--suite", str(suite), "--target", str(target), "--variant", "tuned-pspnet_resnet18",
                    "--results-dir", str(results), "--update", timeout=900)
    assert bench.returncode == 0, bench.stderr[-2000:]
    benched = {r["variant"]: r for r in _rows(results / "tunetarget.csv")}
    assert benched["tuned-pspnet_resnet18"]["onnx_sha256"] == winner["onnx_sha256"]

    again = run_cli("tune", "pspnet_resnet18", "--suite", str(suite), "--target", str(target), "--trials", "3",
                    "--batch", "3", "--survivors", "2", "--finalists", "2", "--screen-images", "4", "--against", "fp32",
                    "--results-dir", str(results), "--no-write", timeout=900)
    assert again.returncode == 0, again.stderr[-2000:]
    said = " ".join(again.stdout.split())  # the same winner, or the two measured side by side: a tie or a difference
    assert "the last search's winner won again" in said or "the last search's winner (" in said, said[-3000:]
    configurations = {r["configuration"] for r in _rows(results / "latest" / "tune-tunetarget-pspnet_resnet18.csv")}
    assert winner["configuration"] in configurations  # searched again


@pytest.fixture
def tiny_tune(tmp_path, small_split):
    suite, target = tmp_path / "suite.toml", tmp_path / "small.toml"
    suite.write_text(TINY_SUITE.format(data=small_split))
    target.write_text("threads = 1\nmin_runs = 5\nmin_duration_s = 0.1\nwarmup_runs = 1\nprocesses = 2\n"
                      "variants = ['fp32']\n")
    return suite, target


def test_a_search_cut_short_by_its_time_limit_reports_what_it_measured(tmp_path, tiny_tune):
    suite, target = tiny_tune
    before = target.read_text()
    result = run_cli("tune", "--suite", str(suite), "--target", str(target), "--backend", "onnxruntime", "--trials", "6",
                     "--batch", "2", "--time-limit", "0.01", "--results-dir", str(tmp_path / "results"))
    assert result.returncode == 0, result.stderr[-2000:]
    out = " ".join(result.stdout.split())
    assert "search cut short: time limit reached before the next screening batch" in out
    rows = _rows(tmp_path / "results" / "latest" / "tune-small-tiny_unet.csv")
    assert len(rows) == 2 and all(r["stage"] == "screen" for r in rows)  # the first batch, measured
    assert "not written: no winner" in out and target.read_text() == before


@pytest.mark.parametrize("signum, said, code", [(signal.SIGINT, "interrupted (Ctrl-C)", 130),
                                                (signal.SIGTERM, "terminated (SIGTERM)", 143)])
def test_ctrl_c_or_sigterm_during_a_search_reports_what_it_measured_and_exits_by_the_signal(tmp_path, tiny_tune, signum,
                                                                                           said, code):
    suite, target = tiny_tune
    proc = subprocess.Popen([sys.executable, "-m", "harness", "tune", "--suite", str(suite), "--target", str(target),
                             "--backend", "onnxruntime", "--trials", "8", "--batch", "1", "--results-dir",
                             str(tmp_path / "results")], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "200"})
    seen = []
    for line in proc.stdout:  # interrupt once the first batch is in: the second is being measured
        seen.append(line)
        if line.startswith("screen 1:"):
            proc.send_signal(signum)
            break
    out, err = proc.communicate(timeout=300)
    out = " ".join(("".join(seen) + out).split())
    assert proc.returncode == code, err[-2000:]
    assert f"search cut short: {said}" in out and "tiny_unet under small" in out
    rows = _rows(tmp_path / "results" / "latest" / "tune-small-tiny_unet.csv")
    assert rows and all(r["stage"] == "screen" for r in rows)


def test_the_winner_is_written_into_the_text_keeping_comments_and_replacing_an_earlier_table(tmp_path):
    from harness.tune.write import with_named_variant

    named = candidate("tuned-m", "onnxruntime", TUNED_INT8, {"calibration": "entropy", "per_channel": False,
                                                             "activation_type": "uint8"},
                      {"allow_spinning": False}).renamed("tuned-m", models=("m",), note='made "here"').named
    text = ('# a watch\nthreads = 1  # one core\nvariants = ["fp32", "int8-static"]\nship = ["int8-static"]  # gated\n'
            '[onnxruntime]\nenable_mem_pattern = false\n[variant.tuned-m]\nbase = "fp32"\n[variant.tuned-m.onnxruntime]\n'
            'allow_spinning = true\n[variant.other]\nbase = "fp16"\n')
    written = with_named_variant(text, named, ship=True)
    assert written.startswith("# a watch\nthreads = 1  # one core\n") and "[onnxruntime]\nenable_mem_pattern = false" in written
    assert 'variants = ["fp32", "int8-static", "tuned-m"]' in written and 'ship = ["int8-static", "tuned-m"]' in written
    assert written.count("[variant.tuned-m]") == 1 and 'base = "fp32"' not in written and "[variant.other]" in written
    path = tmp_path / "w.toml"
    path.write_text(written)
    read = load_target(str(path))
    assert read.scenario.variant("tuned-m").named == named and read.scenario.variant("other").base == "fp16"
    assert read.runtime.enable_mem_pattern is False
    no_ship = with_named_variant('threads = 1\nvariants = ["fp32"]\n', named, ship=True)
    assert "ship" not in no_ship.split("[variant")[0]  # without a ship list every measured variant ships already


def test_a_winner_calibrated_on_images_the_bench_does_not_read_is_not_written(tmp_path, tune_files):
    """Its ranges follow from the images: written, `harness bench` would calibrate on the suite's and make another file."""
    import dataclasses

    from harness.bench import BenchInputs
    from harness.tune import calibration_unread
    from harness.variants.quantize import default_options

    suite = load_suite(str(tune_files[0]))
    inputs = BenchInputs(suite.data_dir, suite.calibration_dir, default_options(calibration_images=8))
    assert calibration_unread(suite, inputs) == ""  # the suite's own folder, however it is spelled
    assert calibration_unread(suite, dataclasses.replace(inputs, calibration_dir=suite.calibration_dir / ".")) == ""
    other = dataclasses.replace(inputs, calibration_dir=tmp_path)
    said = calibration_unread(suite, other)
    assert f"calibrated on --calibration-data {tmp_path}" in said and "harness bench does not read" in said
    assert calibration_unread(dataclasses.replace(suite, calibration_dir=None), inputs).endswith("makes the same file")


def test_a_candidate_with_the_shipped_variants_very_settings_is_it_and_one_setting_apart_is_not():
    """Measured once, as the shipped variant: one configuration is one row, never a row paired with itself."""
    from harness.bench import BenchInputs
    from harness.tune.measure import is_shipped
    from harness.variants.quantize import default_options

    watch = load_target("watch")  # int8-static shipped; arena on, memory pattern off; spinning left at its default
    inputs = BenchInputs(None, None, default_options(calibration_method="minmax", calibration_images=8))  # the suite's
    int8 = {"calibration": "minmax", "per_channel": True, "activation_type": "uint8"}
    session = {"allow_spinning": True, "enable_cpu_mem_arena": True, "enable_mem_pattern": False}
    assert is_shipped(watch, inputs, candidate("t01", "onnxruntime", TUNED_INT8, int8, session), "int8-static")
    apart = [candidate("t02", "onnxruntime", TUNED_INT8, int8, {**session, "allow_spinning": False}),
             candidate("t03", "onnxruntime", TUNED_INT8, {**int8, "per_channel": False}, session),
             candidate("t04", "onnxruntime", TUNED_INT8, {**int8, "calibration": "percentile:99.99"}, session),
             candidate("t05", "onnxruntime", "fp32", {}, session),
             candidate("t06", "openvino", TUNED_INT8, int8, {"performance_hint": "LATENCY", "num_streams": 1})]
    assert not any(is_shipped(watch, inputs, c, "int8-static") for c in apart)
    assert is_shipped(watch, inputs, apart[3], "fp32")  # --against fp32: the fp32 candidate with the target's options


def test_a_stage_left_with_only_the_shipped_variants_own_settings_measures_the_shipped_row():
    """Every candidate was the shipped variant itself: the stage still measures fp32 and the shipped variant."""
    from harness.tune.measure import Stage, stage_target

    from harness.targets import with_changes

    two = with_changes(load_target("watch"), backends=("onnxruntime", "openvino"))
    derived = stage_target(two, [], Stage("finalists", 5, 2.0, None), "batched", "int8-static")
    assert derived.scenario.variants == ("fp32", "int8-static") and derived.budgets.ship == ("int8-static",)
    assert derived.scenario.backends == ("onnxruntime",)  # the stage's own runtimes, not the target's list
