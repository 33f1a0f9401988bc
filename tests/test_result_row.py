"""The row's parts: every column in exactly one, rows built and replaced from flat cells, each part's comparison."""

import dataclasses

import pytest

from harness.results import COLUMNS, ResultRow, read_rows, rows_to_csv_text
from harness.results.row import CELL_FIELDS, PARTS, Artifact, Memory, Quality
from harness.targets import TargetProfile
from harness.gate import check_row

from test_results import _row


def test_every_column_belongs_to_exactly_one_part_and_the_csv_writes_them_all():
    owned = [f.name for part in PARTS.values() for f in dataclasses.fields(part)]
    assert len(owned) == len(set(owned))
    assert set(owned) == set(COLUMNS) - {"schema_version"} == set(CELL_FIELDS)


def test_a_row_reads_flat_and_by_part_and_replaces_a_cell_in_its_part():
    row = _row("m", 4.5)
    assert row.p50_ms == row.latency.p50_ms == 4.5 and row.model == row.identity.model == "m"
    faster = dataclasses.replace(row, p50_ms=2.0, file_mb=1.5)
    assert (faster.latency.p50_ms, faster.artifact.file_mb, faster.identity) == (2.0, 1.5, row.identity)
    assert row.p50_ms == 4.5  # the original is untouched
    assert faster.cells()["p50_ms"] == 2.0 and tuple(faster.cells()) == COLUMNS  # the CSV's order, --json's too
    with pytest.raises(TypeError, match="no column or part 'p50'"):
        ResultRow(**{**row.cells(), "p50": 1.0})
    with pytest.raises(AttributeError, match="no column 'p50'"):
        row.p50


def test_a_row_written_and_read_back_is_the_same_row(tmp_path):
    row = _row("m", 4.5)
    unset_texts = {name: "" for name, f in CELL_FIELDS.items() if f.type == "str" and getattr(row, name) is None}
    row = dataclasses.replace(row, file_mb=0.001833, quality_pct=41.2, allow_spinning=True,
                              **{**unset_texts, "load": "bursts of 3"})
    path = tmp_path / "watch.csv"
    path.write_text(rows_to_csv_text([row]))
    assert read_rows(path) == [row]


def test_each_part_compares_its_own_figures_with_the_record():
    artifact = Artifact("", None, "", 10.0, 1000, "sha")
    assert artifact.regressions(artifact, 1.0) == []
    assert artifact.regressions(dataclasses.replace(artifact, file_mb=9.8), 1.0) == ["file 9.8 → 10 MB (+0.2)"]
    assert dataclasses.replace(artifact, params_in_graph=1001).regressions(artifact, 1.0) == \
        ["parameters 1000 → 1001  (+1)"]
    memory = Memory(50.0, 20.0, 30.0, 15.0)
    assert dataclasses.replace(memory, model_mb=31.9).regressions(memory, 2.0) == []
    assert dataclasses.replace(memory, model_mb=32.5).regressions(memory, 2.0) == ["model memory 30 → 32.5 MB (+2.5)"]
    quality = Quality("mIoU", 60.0, None, None, None, "", 24, 99.9, 1e-4)
    assert dataclasses.replace(quality, quality_pct=59.6).regressions(quality, 0.5) == []
    assert dataclasses.replace(quality, quality_pct=59.0, parity_agreement_pct=99.8).regressions(quality, 0.5) == \
        ["mIoU 60.00 → 59.00 % (-1.00 pts)", "parity agreement 99.90 → 99.80 % (-0.10 pts)"]


def test_the_gate_fails_a_row_on_what_its_parts_find_and_passes_it_unchanged():
    target = TargetProfile.from_flat("t", threads=1, variants=["fp32"])
    old = dataclasses.replace(_row("m", 4.5), file_mb=10.0, quality_pct=60.0, model_mb=30.0, p95_ms=5.0)
    assert check_row(old, old, target).outcome == "pass"
    worse = dataclasses.replace(old, file_mb=12.0, quality_pct=55.0)
    check = check_row(worse, old, target)
    assert check.outcome == "fail" and [r.split()[0] for r in check.reasons] == ["file", "quality"]
