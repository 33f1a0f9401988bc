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


# --- the project folder, found from wherever a command runs ----------------------------------------------------------

def test_the_project_is_found_from_any_subfolder_and_a_new_folder_is_its_own_project(tmp_path):
    from harness.files import project_root

    project = tmp_path / "project"
    (project / "results" / "latest").mkdir(parents=True)
    (project / "docs" / "deep").mkdir(parents=True)
    for start in (project, project / "results", project / "results" / "latest", project / "docs" / "deep"):
        assert project_root(start) == project.resolve()
    repo = tmp_path / "repo"
    (repo / ".git").mkdir(parents=True)
    (repo / "src").mkdir()
    assert project_root(repo / "src") == repo.resolve()  # no results/ yet: the repository root
    alone = tmp_path / "alone"
    alone.mkdir()
    assert project_root(alone) == alone.resolve()


def test_a_first_record_inside_a_results_folder_is_refused_and_elsewhere_allowed(tmp_path):
    from harness.errors import HarnessError
    from harness.files import check_first_record_place

    results = tmp_path / "results"
    (results / "results").mkdir(parents=True)
    check_first_record_place(results / "results")  # no record in the outer folder: nothing is being missed
    (results / "watch.csv").write_text(results_csv_text("watch", "m"))
    with pytest.raises(HarnessError, match=r"refusing to start a new record in .*results/results: it lies inside"):
        check_first_record_place(results / "results")
    check_first_record_place(results)
    check_first_record_place(tmp_path / "elsewhere" / "results")


PROJECT_SUITE = ('[data]\ndir = "{data}"\nignore_index = 11\n[[model]]\nname = "tiny"\narch = "unet_small"\n'
                 'num_classes = 11\ninput_size = [96, 128]\nkwargs = {{ width = {width} }}\n')


@pytest.mark.slow
def test_a_bench_from_a_subfolder_gates_the_same_record_as_from_the_project_folder(tmp_path):
    from conftest import SAMPLE_DIR, run_cli

    project = tmp_path / "project"
    (project / "targets").mkdir(parents=True)
    (project / "targets" / "quick.toml").write_text('threads = 1\nmin_runs = 5\nmin_duration_s = 0.0\nprocesses = 1\n'
                                                    'variants = ["fp32"]\n')
    suite = project / "suite.toml"
    suite.write_text(PROJECT_SUITE.format(data=SAMPLE_DIR, width=0.125))
    bench = ("bench", "--target", "quick", "--suite", str(suite))
    first = run_cli(*bench, cwd=project / "targets")
    assert first.returncode == 0 and "first record" in first.stdout, first.stdout + first.stderr
    assert (project / "results" / "quick.csv").is_file() and not (project / "targets" / "results").exists()
    (project / "sub").mkdir()
    unchanged = run_cli(*bench, cwd=project / "sub")
    assert unchanged.returncode == 0 and "gate quick: passed" in unchanged.stdout, unchanged.stdout + unchanged.stderr
    assert f"project folder: {project.resolve()}" in unchanged.stdout
    suite.write_text(PROJECT_SUITE.format(data=SAMPLE_DIR, width=0.25))  # a real regression: more parameters
    for where in (project, project / "results", project / "sub"):
        wider = run_cli(*bench, cwd=where)
        assert wider.returncode == 1 and "gate quick: FAILED" in wider.stdout, (where, wider.stdout + wider.stderr)
    assert not (project / "results" / "results").exists() and not (project / "sub" / "results").exists()
    nested = run_cli(*bench, "--results-dir", "results/more", cwd=project)
    assert nested.returncode == 2 and nested.stderr.strip().count("\n") == 0, nested.stderr
    assert "refusing to start a new record" in nested.stderr


@pytest.mark.parametrize("part", ["../../../../escape4_onnxruntime", "a/b", "/etc", "..", ".", ""])
def test_a_path_from_a_name_never_leaves_its_folder(tmp_path, part):
    from harness.errors import HarnessError
    from harness.files import path_under

    with pytest.raises(HarnessError, match="would not be a plain entry of"):
        path_under(tmp_path / "profile", part)
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # nothing made on the way


def test_a_plain_name_is_a_path_under_its_folder(tmp_path):
    from harness.files import path_under

    assert path_under(tmp_path, "tiny_unet_onnxruntime") == tmp_path / "tiny_unet_onnxruntime"
    assert path_under(tmp_path, "m", "int8-static") == tmp_path / "m" / "int8-static"
    assert path_under(tmp_path, "x..y") == tmp_path / "x..y"  # dots inside a name climb nowhere
