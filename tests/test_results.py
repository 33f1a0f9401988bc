import csv
import dataclasses
import os
import signal
import subprocess
import sys

import pytest

from harness.errors import HarnessError
from harness.results import COLUMNS, ResultRow, merge_and_write, read_rows, write_csv_atomic


def _row(model: str, p50: float) -> ResultRow:
    values = {f.name: None for f in dataclasses.fields(ResultRow) if f.name != "schema_version"}
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
    assert next(csv.reader(open(path))) == COLUMNS


def test_missing_column_is_refused_with_a_clear_message(tmp_path):
    path = tmp_path / "old.csv"
    path.write_text("target,model\nwatch,a\n")
    with pytest.raises(HarnessError, match="lacks column 'variant'"):
        read_rows(path)


def test_failed_write_leaves_the_old_file_and_no_temp(tmp_path, monkeypatch):
    path = tmp_path / "watch.csv"
    path.write_text("old contents\n")

    def boom(*args):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        write_csv_atomic(path, "new contents\n")
    assert path.read_text() == "old contents\n"
    assert os.listdir(tmp_path) == ["watch.csv"]


def test_kill_9_in_the_middle_of_a_write_leaves_the_old_file(tmp_path):
    """A writer killed while it streams a large CSV never leaves a truncated results file."""
    path = tmp_path / "watch.csv"
    path.write_text("old contents\n")
    code = (
        "import sys, harness.results as r\n"
        "text = 'x' * (200 * 1024 * 1024)\n"
        "print('ready', flush=True)\n"
        f"r.write_csv_atomic(__import__('pathlib').Path({str(path)!r}), text)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert path.read_text() == "old contents\n"
