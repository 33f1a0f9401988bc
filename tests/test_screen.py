"""The one screen `harness bench` prints: the committed watch record through the real gate, drawn at 80, 120 and
200 columns; a failing row shows its reason, evidence and next command."""

import dataclasses
from pathlib import Path

import pytest
from rich.console import Console

from harness.gate import FAIL, Evidence, GateReport, RowCheck, run_gate
from harness.gate.budget import verdict
from harness.gate.decide import decide_paired
from harness.gate.latency import AB, LatencyVerdict
from harness.report.screen import bench_screen
from harness.results import read_rows
from harness.spec import DEFAULT_SUITE, load_suite
from harness.targets import load_target

REPO = Path(__file__).resolve().parent.parent
RECORD = REPO / "results" / "watch.csv"
LATEST = Path("results/latest/watch.csv")


def _draw(width: int, rows, report, target) -> list[str]:
    console = Console(width=width, record=True, force_terminal=False, file=open("/dev/null", "w"))
    console.print(bench_screen(target, rows, report, RECORD, LATEST))
    return console.export_text().splitlines()


@pytest.fixture
def watch():
    target = load_target("watch")
    models = {m.name for m in load_suite(DEFAULT_SUITE).models}
    rows = [r for r in read_rows(RECORD) if r.model in models and r.on_reference_backend]  # the default run's rows
    return target, rows, run_gate(rows, rows, target, Evidence(host_noise="host noise: the reference workload wandered 1.2 %"))


@pytest.mark.parametrize("width", [80, 120, 200])
def test_a_pass_fits_the_width_and_names_every_model_whole(watch, width):
    target, rows, report = watch
    lines = _draw(width, rows, report, target)
    text = "\n".join(lines)
    assert report.passed and "gate watch: passed — 0 of 20 rows failed" in text and "FAIL" not in text
    assert "…" not in text  # nothing cut
    assert max(len(line.rstrip()) for line in lines) <= width
    for model in {r.model for r in rows}:
        assert any(model in line for line in lines), model  # whole, on one line (in the table or the legend)
    assert "host noise: the reference workload wandered 1.2 %" in text and str(LATEST.with_suffix(".gate.json")) in text


def test_the_default_pass_is_one_screen_at_120_columns(watch):
    target, rows, report = watch
    lines = _draw(120, rows, report, target)
    assert len(rows) == 20 and len(lines) <= 40
    assert sum("pass" in line.split() for line in lines) == sum(target.budgets.ships(r.variant) for r in rows)
    assert not any("comparison only (not shipped)" in line or "unchanged file" in line for line in lines)  # notes go to the files


def test_a_row_over_its_budget_shows_why_the_figure_and_the_command_that_explains_it(watch):
    target, rows, _ = watch
    shipped = next(r for r in rows if r.model == "pspnet_mobilenet_v2" and r.variant == "int8-static")
    heavy = dataclasses.replace(shipped, model_mb=21.5)
    heavy = dataclasses.replace(heavy, verdict=verdict(heavy, target))
    run = [heavy if r.key == shipped.key else r for r in rows]
    report = run_gate(run, rows, target)
    text = "\n".join(_draw(120, run, report, target))
    assert not report.passed and "gate watch: FAILED — 1 of 20 rows failed" in text
    assert "FAIL pspnet_mobilenet_v2 int8-static" in text
    assert "over memory (model 21.5 > 15 MB)" in text  # the budget and the measured figure
    assert "next: harness profile pspnet_mobilenet_v2 --target" in text and "--variant int8-static" in text


def test_a_slower_ab_shows_its_ratio_interval_and_rounds(watch):
    target, rows, _ = watch
    row = next(r for r in rows if r.variant == "int8-static")
    decision = decide_paired([1.31, 1.28, 1.35, 1.30, 1.29], 10.0)
    latency = LatencyVerdict(AB, (decision.describe("p50"),), (), {"p50": decision.as_dict()})
    report = GateReport((RowCheck(row.key, FAIL, latency.reasons, (), latency, row.serving),), ())
    text = " ".join(" ".join(_draw(120, [row], report, target)).split())  # wrapping aside
    assert f"why: {decision.describe('p50')}" in text and "95 % interval x1.2" in text and "5 paired rounds" in text
    assert f"next: harness profile {row.model} --target watch --variant {row.variant}" in text


def test_an_undecided_row_is_shown_with_its_reason(watch):
    target, rows, _ = watch
    row = next(r for r in rows if r.variant == "int8-static")
    decision = decide_paired([1.02, 1.30, 0.91, 1.22], 10.0)
    assert decision.outcome == "undecided"
    latency = LatencyVerdict(AB, (), (decision.describe("p50"),), {"p50": decision.as_dict()}, undecided=True)
    report = GateReport((RowCheck(row.key, "pass", (), (), latency, row.serving),), ())
    text = " ".join(" ".join(_draw(120, [row], report, target)).split())
    assert f"undecided {row.model} {row.variant}" in text and decision.describe("p50") in text
    assert f"next: harness bench --target watch --model {row.model}" in text
