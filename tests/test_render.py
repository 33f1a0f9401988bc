"""Terminal tables: the ladder compares every model with the suite's baseline, row by row."""

import dataclasses

from rich.console import Console

from harness.report.render import ladder_table
from harness.results import ResultRow
from harness.results.row import CELL_FIELDS


def _row(model: str, variant: str, **values) -> ResultRow:
    fields = dict.fromkeys(CELL_FIELDS)
    fields.update(target="phone", model=model, variant=variant, serving="1 per call", status="ok", verdict="fits",
                  flags="", recipe="", nodes_in_float_names="", quality_metric="mIoU", per_class_pct="", threads=2)
    fields.update(values)
    return ResultRow(**fields)


def _cells(table) -> dict[tuple[str, str], list[str]]:
    """The table's body rows, keyed by (model, variant), as stripped cell texts."""
    console = Console(width=250, record=True)
    console.print(table)
    rows = {}
    for line in console.export_text().splitlines():
        cells = [c.strip() for c in line.split("│")[1:-1]]
        if len(cells) > 2 and cells[0] not in ("", "model"):
            rows[(cells[0], cells[1])] = cells
    return rows


def test_ladder_shows_each_change_against_the_baseline_of_the_same_variant():
    rows = [
        _row("base", "fp32", params_in_graph=880_000, file_mb=4.0, p50_ms=10.0, p95_ms=12.0, model_mb=16.0, quality_pct=50.0),
        _row("base", "int8-static", params_in_graph=880_000, file_mb=1.0, p50_ms=5.0, p95_ms=6.0, model_mb=10.0,
             quality_pct=49.0),
        _row("small", "fp32", params_in_graph=440_000, file_mb=2.0, p50_ms=4.0, p95_ms=5.0, model_mb=9.0, quality_pct=48.5),
        _row("small", "int8-static", params_in_graph=440_000, file_mb=0.6, p50_ms=2.5, p95_ms=3.0, model_mb=7.5,
             quality_pct=48.0),
    ]
    cells = _cells(ladder_table(rows, "base"))
    assert cells[("base", "fp32")][9] == "baseline"
    assert cells[("small", "fp32")][3] == "440,000"
    assert cells[("small", "fp32")][9:] == ["-50 %", "2.50x", "-7.0", "-1.50"]
    # int8 is set against the baseline's int8, not its fp32
    assert cells[("small", "int8-static")][9:] == ["-40 %", "2.00x", "-2.5", "-1.00"]


def test_ladder_says_when_the_baseline_was_not_measured():
    rows = [_row("base", "fp32", status="exceeded memory cap", verdict="over memory"),
            _row("small", "fp32", file_mb=2.0, p50_ms=4.0, quality_pct=48.5)]
    assert _cells(ladder_table(rows, "base"))[("small", "fp32")][9:] == ["n/a"] * 4


def test_names_and_text_from_a_record_are_shown_as_written_not_as_markup():
    """A record is user input: '[/red]' in a cell would end the run with rich's MarkupError."""
    from harness.report.profile import profile_tables
    from harness.report.render import compare_table, gate_table, recipes_table, results_table, served_table
    from harness.targets import TargetProfile

    hostile = "[/red]oops[bold"
    target = TargetProfile.from_flat("t", description="[bold]x[/", threads=1)
    texts = {f.name: "" for f in CELL_FIELDS.values() if f.type == "str" and f.name not in ("model", "variant")}
    texts.update(target="t", serving="1 per call", status="ok", verdict="fits")
    rows = [_row(hostile, "fp32", **{**texts, "recipe": "[red]r", "flags": "[/yellow]", "status": "[/red]",
                                     "serving": "http-burst", "load": "[x]"}),
            _row("base", "[/dim]", **{**texts, "p50_ms": 1.0})]
    later = [dataclasses.replace(rows[0], p50_ms=2.0, verdict="[/green]")]
    profile = {"fp32": {"ops": [{"node": "/enc/[/red]Conv", "op_type": "Conv", "ran_on": "cpu", "ms_per_call": 1.0}],
                        "runs": 1, "wall_ms_per_call": 1.0}}
    gate = type("Report", (), {"checks": [type("Check", (), {"shown": (hostile, "fp32", "x"), "outcome": "fail",
                                                               "reasons": ("[/red] slower",), "notes": ("[b",)})()],
                               "missing": [(hostile, "int8-static", "x")], "shown": lambda self, key: key})()
    console = Console(width=400, record=True)
    for table in [results_table(target, rows), served_table(rows), recipes_table(rows), compare_table(rows, later, "[a", "b]"),
                  gate_table(gate, "/tmp/[/x]/fast.csv"), ladder_table(rows, hostile),
                  *profile_tables(hostile, "onnxruntime", target, profile, 5)]:
        console.print(table)
    text = console.export_text()
    for shown in (hostile, "[bold]x[/", "[red]r", "[/yellow]", "[/dim]", "[/green]", "/enc/[/red]Conv", "[/red] slower",
                  "/tmp/[/x]/fast.csv", "[x]"):
        assert shown in text, shown
