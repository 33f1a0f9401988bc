"""harness history: a model's versions measured in one run, on a git repository the test writes (tests/fixtures/history_repo.py)."""

import csv
import json
import shutil
from pathlib import Path

import pytest

from harness.errors import HarnessError
from harness.history.revisions import between, input_paths, resolve, touching
from harness.history.versions import Version, distinct

from conftest import HISTORY_TARGET_EXTRA, history_cli as _cli
from history_repo import TARGET, git


@pytest.fixture(scope="module")
def repo(history_repo):
    return history_repo


def _history_rows(repo) -> list[dict]:
    return list(csv.DictReader((repo / "results" / "latest" / "history-fast.csv").open()))


def test_revisions_that_touched_the_inputs_oldest_first(repo):
    path, shas = repo
    paths = input_paths(path, path / "suite.toml")
    assert paths == ["."]
    assert [r.sha for r in touching(path, paths, last=3)] == shas[-3:]
    assert [r.sha for r in touching(path, paths, since=shas[6])] == shas[6:]
    assert [r.subject for r in between(path, shas[0], shas[9])] == [f"c{i}" for i in range(2, 11)]
    assert resolve(path, "HEAD~9").sha == shas[0]
    with pytest.raises(HarnessError, match="not a commit"):
        resolve(path, "no-such-tag")
    with pytest.raises(HarnessError, match="not an ancestor"):
        between(path, shas[5], shas[1])


def test_identical_files_are_one_version_today_last():
    class Made:
        def __init__(self, sha):
            self.sha256 = sha

    class Model:
        def __init__(self, sha):
            self.made = {"fp32": Made(sha)}

    from harness.history.revisions import Revision

    revs = [Revision(f"{i:040x}", f"c{i}", "") for i in range(4)]
    versions = distinct([Version(Model("a"), [revs[0]]), Version(Model("b"), [revs[1]]), Version(Model("a"), [revs[2]]),
                         Version(Model("b"), [], today=True)])
    assert [v.revisions for v in versions] == [[revs[0], revs[2]], [revs[1]]]
    assert versions[-1].today and not versions[0].today
    assert versions[0].label == revs[0].short + " (+1)" and versions[1].label == f"today (= {revs[1].short})"


@pytest.mark.slow
def test_history_shows_five_steps_in_order_and_each_version_once(repo):
    path, shas = repo
    proc = _cli(path, "history", "--model", "drift", "--last", "10", "--group-size", "3")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = _history_rows(path)
    assert [r["group"] for r in rows] == ["0", "0", "1", "1", "2", "0"]  # three groups, each with today's as anchor
    # c1-c2, c3-c4, c5-c6, c7, c8-c9 and today (c10): ten revisions, six distinct sets of files, each measured once
    assert [r["first_commit"] for r in rows] == [shas[0], shas[2], shas[4], shas[6], shas[7], shas[9]]
    assert [len(r["revisions"].split()) for r in rows] == [2, 2, 2, 1, 2, 1]
    ratios = [float(r["p50_vs_today"]) for r in rows[:-1]] + [1.0]
    assert all(a < b for a, b in zip(ratios, ratios[1:])), ratios  # the steps in order
    assert ratios[0] < 1 / 1.8, ratios  # together: over x1.8 (five steps of 4 passes; x2.3-2.7 on a quiet host)
    assert "today's fp32 p50 is x" in proc.stdout
    assert (path / "results" / "latest" / "history-fast.html").read_text().count("data:image/png;base64,") == 1


@pytest.mark.slow
def test_an_unchanged_history_reports_no_change(repo):
    path, shas = repo
    proc = _cli(path, "history", "--model", "jump", "--since", shas[5])  # c6 on: new weights at c8 and c9, same compute
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = _history_rows(path)
    assert [r["first_commit"] for r in rows] == [shas[5], shas[7], shas[8]] and rows[-1]["today"] == "True"
    # never a change: "no change", or "undecided" when the other test worker made the host too noisy to say
    assert {r["p50_decision"] for r in rows[:-1]} <= {"no change", "undecided"}, rows


@pytest.mark.slow
def test_a_rerun_after_one_new_commit_measures_what_changed_and_its_anchor(repo, tmp_path):
    path, shas = repo
    work, env = tmp_path / "work", {"HARNESS_CACHE_DIR": str(tmp_path / "cache")}  # a book of its own
    git(path, "worktree", "add", "-q", str(work), shas[8])
    first = _cli(work, "history", "--model", "drift", "--last", "3", env=env)  # c7, c8 and today (c9 = c8's files)
    assert first.returncode == 0, first.stdout + first.stderr
    assert [r["how"] for r in _history_rows(work)] == ["measured in this run"] * 2
    git(work, "checkout", "-q", shas[9])  # one new commit: c10, one more step
    second = _cli(work, "history", "--model", "drift", "--last", "4", env=env)
    assert second.returncode == 0, second.stdout + second.stderr
    rows = _history_rows(work)
    assert [r["first_commit"] for r in rows] == [shas[6], shas[7], shas[9]]
    # c7 was measured beside c8's files (the old today): kept, chained through c8, which is measured beside c10 now
    assert rows[0]["how"].startswith("chained") and rows[0]["group"] == "-1", rows[0]
    assert [r["how"] for r in rows[1:]] == ["measured in this run"] * 2
    assert "2 version(s) measured in this run" in second.stdout
    chained, direct = float(rows[0]["p50_vs_today"]), float(rows[1]["p50_vs_today"])
    assert chained < direct < 1.0 and 1.05 < direct / chained < 1.6, (chained, direct)  # c7 → c8 is one step
    again = _cli(work, "history", "--model", "drift", "--last", "4", env=env)  # nothing new: every pair kept
    assert again.returncode == 0 and "1 version(s) measured in this run" in again.stdout, again.stdout
    fresh = _cli(work, "history", "--model", "drift", "--last", "4", "--fresh", env=env)
    assert fresh.returncode == 0 and "3 version(s) measured in this run" in fresh.stdout, fresh.stdout


def test_bad_revisions_are_one_line_and_exit_2(repo, tmp_path):
    path, shas = repo
    for args, said in ((("history", "--model", "drift", "--since", "v9.9"), "revision 'v9.9' is not a commit"),
                       (("history", "--model", "late", "--since", shas[0]), "model late did not exist at"),
                       (("bisect", "--model", "jump", "--good", "nope"), "revision 'nope' is not a commit"),
                       (("bisect", "--model", "jump", "--good", shas[9], "--bad", shas[0]), "not an ancestor")):
        proc = _cli(path, *args)
        assert proc.returncode == 2, proc.stdout + proc.stderr
        assert said in proc.stderr and "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    outside = tmp_path / "outside"
    shutil.copytree(path, outside, ignore=shutil.ignore_patterns(".git", "results"))
    proc = _cli(outside, "history", "--model", "drift")
    assert proc.returncode == 2 and "not in a git checkout" in proc.stderr, proc.stderr




OWN_SUITE = """[data]
dir = "{data}"
ignore_index = 11

[[model]]
name = "unet"
arch = "unet_small"
num_classes = 11
input_size = [96, 128]
kwargs = {{ width = 0.125 }}
"""


@pytest.mark.slow
def test_in_the_harness_own_repository_each_revision_makes_its_files_with_its_own_harness(tmp_path, small_split):
    """A change to a built-in model's code (the harness's own) is a new version, and the drift guard sees it."""
    import subprocess

    source = Path(__file__).resolve().parent.parent
    repo = tmp_path / "own"
    tracked = subprocess.run(["git", "ls-files", "harness", "pyproject.toml"], cwd=source, capture_output=True,
                             text=True, check=True).stdout.split()
    for name in (n for n in tracked if not n.startswith("harness/assets/checkpoints/")):
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(source / name, repo / name)
    (repo / "suite.toml").write_text(OWN_SUITE.format(data=small_split))
    (repo / "fast.toml").write_text(TARGET + HISTORY_TARGET_EXTRA)
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", ".")
    git(repo, "commit", "-qm", "c1")
    first = git(repo, "rev-parse", "HEAD")
    models = repo / "harness" / "models" / "segmentation.py"
    code = models.read_text()
    assert "return UNetSmall(num_classes, width=width, **kwargs)" in code
    models.write_text(code.replace("return UNetSmall(num_classes, width=width, **kwargs)",
                                   "return UNetSmall(num_classes, width=2 * width, **kwargs)"))  # the harness's code only
    git(repo, "commit", "-qam", "c2: unet_small twice as wide")
    env = {"HARNESS_CACHE_DIR": str(tmp_path / "cache")}
    proc = _cli(repo, "history", "--model", "unet", "--last", "2", env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = _history_rows(repo)
    assert [r["first_commit"] for r in rows] == [first, git(repo, "rev-parse", "HEAD")], rows
    assert float(rows[0]["file_mb"]) < float(rows[1]["file_mb"]) / 2 and float(rows[0]["p50_vs_today"]) < 0.7
    assert list((tmp_path / "cache" / "revision-files").iterdir())  # made by each revision's own harness

    (repo / "fast.toml").write_text((repo / "fast.toml").read_text() + f'gate_baseline = "{first}"\n')
    guarded = _cli(repo, "bench", env=env)
    assert guarded.returncode == 1, guarded.stdout + guarded.stderr
    gate = json.loads((repo / "results" / "latest" / "fast.gate.json").read_text())
    assert any(r.startswith("drift since gate_baseline") for r in gate["rows"][0]["reasons"]), gate["rows"][0]
