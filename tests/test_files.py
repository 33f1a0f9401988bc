"""Files the user keeps: atomic, mode kept, and concurrent updates of one record lose nothing."""

import os
import signal
import subprocess
import sys

import pytest

from harness.files import write_text_atomic
from harness.results import read_rows

from conftest import results_csv_text

UPDATER = """
import sys
from pathlib import Path
from harness.results import ResultRow, merge_and_write, read_rows
import dataclasses

template = read_rows(Path(sys.argv[2]))[0]
for i in range(int(sys.argv[3])):
    merge_and_write(Path(sys.argv[1]), [dataclasses.replace(template, model=f"{sys.argv[4]}_{i}")])
"""


def test_a_rewritten_file_keeps_its_mode(tmp_path):
    path = tmp_path / "watch.csv"
    path.write_text("old\n")
    os.chmod(path, 0o644)
    write_text_atomic(path, "new\n")
    assert path.read_text() == "new\n" and oct(path.stat().st_mode & 0o777) == oct(0o644)
    os.chmod(path, 0o640)
    write_text_atomic(path, "newer\n")
    assert oct(path.stat().st_mode & 0o777) == oct(0o640)
    fresh = tmp_path / "fresh.csv"
    write_text_atomic(fresh, "x\n")
    umask = os.umask(0)
    os.umask(umask)
    assert fresh.stat().st_mode & 0o777 == 0o666 & ~umask


def test_two_concurrent_updaters_lose_no_row(tmp_path):
    """Two processes merging into one record at once, 25 rows each: without the lock, rows vanished."""
    template = tmp_path / "template.csv"
    template.write_text(results_csv_text("watch", "template"))
    record = tmp_path / "watch.csv"
    procs = [subprocess.Popen([sys.executable, "-c", UPDATER, str(record), str(template), "25", name])
             for name in ("suite_a", "suite_b")]
    for proc in procs:
        assert proc.wait(timeout=120) == 0
    models = {r.model for r in read_rows(record)}
    assert models == {f"{name}_{i}" for name in ("suite_a", "suite_b") for i in range(25)}


def test_failed_write_leaves_the_old_file_and_no_temp(tmp_path, monkeypatch):
    path = tmp_path / "watch.csv"
    path.write_text("old contents\n")

    def boom(*args):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        write_text_atomic(path, "new contents\n")
    assert path.read_text() == "old contents\n"
    assert os.listdir(tmp_path) == ["watch.csv"]


def test_kill_9_in_the_middle_of_a_write_leaves_the_old_file(tmp_path):
    """A writer killed while it streams a large CSV never leaves a truncated results file."""
    path = tmp_path / "watch.csv"
    path.write_text("old contents\n")
    code = (
        "import sys, harness.files as f\n"
        "text = 'x' * (200 * 1024 * 1024)\n"
        "print('ready', flush=True)\n"
        f"f.write_text_atomic(__import__('pathlib').Path({str(path)!r}), text)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert path.read_text() == "old contents\n"
