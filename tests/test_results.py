import csv
import dataclasses

import pytest

from harness.errors import HarnessError
from harness.results import COLUMNS, ResultRow, merge_and_write, read_rows
from harness.results.row import CELL_FIELDS
from harness.targets import TargetProfile


def _row(model: str, p50: float) -> ResultRow:
    values = dict.fromkeys(CELL_FIELDS)
    values.update(target="watch", model=model, variant="fp32", serving="1 per call", status="ok", verdict="fits", flags="", recipe="", nodes_in_float_names="",
                  p50_ms=p50, threads=1, images_at_once=1, cpu_mem_arena=False, cpu_model="cpu", cpu_count=2,
                  cpu_isa="avx2", ort_version="1", harness_version="0", measured_at="now")
    return ResultRow(**values)


def test_merge_keeps_other_models_and_sorts_stably(tmp_path):
    path = tmp_path / "watch.csv"
    merge_and_write(path, [_row("b", 2.0), _row("a", 1.0)])
    merge_and_write(path, [_row("b", 3.0)])
    rows = read_rows(path)
    assert [(r.model, r.p50_ms) for r in rows] == [("a", 1.0), ("b", 3.0)]
    assert tuple(next(csv.reader(open(path)))) == COLUMNS


def test_missing_column_is_refused_with_a_clear_message(tmp_path):
    path = tmp_path / "old.csv"
    path.write_text("target,model\nwatch,a\n")
    with pytest.raises(HarnessError, match="lacks column 'variant'"):
        read_rows(path)


def test_a_schema_3_record_reads_without_measured_on_and_a_schema_4_one_needs_it(tmp_path):
    """Records made before the runners lack `measured_on`: read as not measured; a current one may not lack it."""
    path = tmp_path / "watch.csv"
    merge_and_write(path, [_row("a", 1.0)])
    header, *lines = path.read_text().splitlines()
    drop = header.split(",").index("measured_on")
    cut = lambda line: ",".join(c for i, c in enumerate(line.split(",")) if i != drop)  # noqa: E731
    old = tmp_path / "old.csv"
    old.write_text("\n".join([cut(header), *(cut(line)[: cut(line).rindex(",")] + ",3" for line in lines)]) + "\n")
    assert [(r.model, r.measured_on) for r in read_rows(old)] == [("a", "")]
    current = tmp_path / "current.csv"
    current.write_text("\n".join([cut(header), *(cut(line) for line in lines)]) + "\n")
    with pytest.raises(HarnessError, match="lacks column 'measured_on'"):
        read_rows(current)


def test_a_round_trip_through_the_csv_keeps_every_figure_and_every_gate_decision(tmp_path):
    from harness.gate import check_row
    from harness.targets import load_target

    tiny = dataclasses.replace(_row("tiny", 0.0123456789), variant="int8-static", file_mb=0.001833, p95_ms=0.0234567891, quality_pct=41.23456789,
                               model_mb=0.000731, p50_per_process_ms="0.012301;0.0123456789")
    path = tmp_path / "watch.csv"
    merge_and_write(path, [tiny])
    back = read_rows(path)[0]
    floats = [f.name for f in CELL_FIELDS.values() if "float" in str(f.type)]
    assert [getattr(back, n) for n in floats] == [getattr(tiny, n) for n in floats]  # every figure exactly as measured
    assert back.p50_per_process_ms == tiny.p50_per_process_ms
    watch = load_target("watch")
    assert check_row(tiny, back, watch).reasons == ()
    # the rounding that used to be written (4 decimals) turned this unchanged file into a failure
    rounded = dataclasses.replace(back, file_mb=round(back.file_mb, 4))
    assert any(r.startswith("file 0.0018 → 0.001833 MB") for r in check_row(tiny, rounded, watch).reasons)


def test_rows_kept_by_a_merge_are_written_back_as_they_were_read(tmp_path):
    """A record written by an older harness holds '5.200' where today's writer would write '5.2': kept rows are
    not re-formatted, so an update touches only the lines of the rows it measured."""
    path = tmp_path / "watch.csv"
    merge_and_write(path, [_row("a", 5.2), _row("b", 2.0)])
    header, line_a, line_b = path.read_text().splitlines()
    old_style = line_a.replace(",5.2,", ",5.200,")
    path.write_text("\n".join([header, old_style, line_b]) + "\n")
    merge_and_write(path, [dataclasses.replace(_row("b", 3.0), variant="fp32")], only_rows=True)
    lines = path.read_text().splitlines()
    assert lines[1] == old_style and ",3.0," in lines[2]
    merge_and_write(path, [dataclasses.replace(_row("a", 4.0), variant="int8-static")], only_rows=True)
    assert [(r.model, r.variant) for r in read_rows(path)] == [("a", "fp32"), ("a", "int8-static"), ("b", "fp32")]
    merge_and_write(path, [dataclasses.replace(_row("a", 4.5), variant="int8-static")])  # whole model replaced
    assert [(r.model, r.variant) for r in read_rows(path)] == [("a", "int8-static"), ("b", "fp32")]


@pytest.mark.parametrize("images_at_once", [1, 10])
def test_every_serving_label_reads_back_to_its_mode_so_a_record_from_before_schema_8_keeps_its_rows(images_at_once):
    from harness.results import serving_mode_of

    target = TargetProfile.from_flat("t", threads=1, images_at_once=images_at_once, serving=("batched", "concurrent", "http"))
    modes = target.scenario.row_modes
    assert len(modes) == 5 and [serving_mode_of(target.scenario.serving_label(m)) for m in modes] == list(modes)


def test_a_row_is_keyed_by_its_serving_mode_not_by_the_label_shown(tmp_path):
    old = dataclasses.replace(_row("m", 1.0), serving="batch of 10", serving_mode="")  # before schema 8: the label alone
    assert old.serving_mode == "" and old.key.serving == "batched"
    reworded = dataclasses.replace(old, serving="10 images per call", serving_mode="batched")  # a label reworded later
    assert reworded.key == old.key
    path = tmp_path / "t.csv"
    merge_and_write(path, [old])
    merge_and_write(path, [dataclasses.replace(reworded, p50_ms=2.0)], only_rows=True)
    rows = read_rows(path)
    assert len(rows) == 1 and rows[0].p50_ms == 2.0 and rows[0].serving == "10 images per call"
