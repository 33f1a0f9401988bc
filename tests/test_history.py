"""harness history, bisect and the gate's drift guard, on a git repository the test writes (tests/fixtures/history_repo.py)."""

import csv
import json
import re
import shutil
import sys
from pathlib import Path

import pytest

from harness.errors import HarnessError
from harness.history.revisions import between, input_paths, resolve, touching
from harness.history.versions import Version, distinct

from conftest import run_cli

sys.path.insert(0, str(Path(__file__).parent / "fixtures"))
from history_repo import build_repo, git  # noqa: E402


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    from conftest import SAMPLE_DIR

    root = tmp_path_factory.mktemp("history")
    data = root / "split"
    for sub in ("images", "masks"):
        (data / sub).mkdir(parents=True)
        for path in sorted((SAMPLE_DIR / sub).iterdir())[:6]:
            shutil.copy(path, data / sub / path.name)
    shas = build_repo(root / "repo", data)
    return root / "repo", shas


def _cli(repo, command, *args, env=None):
    return run_cli(command, "--target", "fast.toml", "--suite", "suite.toml", "--results-dir", "results", *args, cwd=repo,
                   env=env)


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


def test_the_search_finds_the_first_worse_revision_and_stops_when_undecided():
    from harness.history.bisect import WORSE, Step, search
    from harness.history.revisions import Revision

    revs = [Revision(f"{i:040x}", f"c{i}", "") for i in range(2, 11)]  # after --good c1, up to --bad c10
    for first in range(9):
        looked = []

        def look(rev, first=first):
            looked.append(rev)
            return Step(rev, WORSE if revs.index(rev) >= first else "no change", "", True)

        steps, index, verdict = search(revs, Revision("0" * 40, "c1", ""), look)
        assert index == first and verdict.startswith(f"first worse revision: {revs[first].short}")
        assert len(looked) <= 4  # ceil(log2(9)): with the check of --bad itself, at most 5 A/Bs

    def noisy(rev):
        return Step(rev, "undecided", "p50 x1.08 (1.01-1.15): undecided", True)

    steps, index, verdict = search(revs, Revision("0" * 40, "c1", ""), noisy)
    assert index is None and len(steps) == 1 and verdict.startswith(f"undecided at {revs[3].short}")
    assert f"after {'0' * 8} and at or before {revs[-1].short}" in verdict


@pytest.mark.slow
def test_history_shows_five_small_steps_in_order_and_each_version_once(repo):
    path, shas = repo
    proc = _cli(path, "history", "--model", "drift", "--last", "10", "--group-size", "3")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = _history_rows(path)
    assert [r["group"] for r in rows] == ["0", "0", "1", "1", "2", "0"]  # three groups, each with today's as anchor
    # c1-c2, c3-c4, c5-c6, c7, c8-c9 and today (c10): ten revisions, six distinct sets of files, each measured once
    assert [r["first_commit"] for r in rows] == [shas[0], shas[2], shas[4], shas[6], shas[7], shas[9]]
    assert [len(r["revisions"].split()) for r in rows] == [2, 2, 2, 1, 2, 1]
    ratios = [float(r["p50_vs_today"]) for r in rows[:-1]] + [1.0]
    assert all(a < b for a, b in zip(ratios, ratios[1:])), ratios  # every step slower than the one before
    steps = [b / a for a, b in zip(ratios, ratios[1:])]
    assert all(1.02 < s < 1.10 for s in steps), steps  # each step under the gate's minimum effect
    assert ratios[0] < 1 / 1.3, ratios  # together: today is over 30 % slower than c1
    assert "today's fp32 p50 is x1." in proc.stdout
    assert (path / "results" / "latest" / "history-fast.html").read_text().count("data:image/png;base64,") == 1


@pytest.mark.slow
def test_an_unchanged_history_reports_no_change(repo):
    path, shas = repo
    proc = _cli(path, "history", "--model", "jump", "--since", shas[5])  # c6 on: new weights at c8 and c9, same compute
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = _history_rows(path)
    assert [r["first_commit"] for r in rows] == [shas[5], shas[7], shas[8]] and rows[-1]["today"] == "True"
    assert [r["p50_decision"] for r in rows[:-1]] == ["no change", "no change"], rows
    assert all(0.95 < float(r["p50_vs_today"]) < 1.05 for r in rows[:-1]), rows


@pytest.mark.slow
def test_bisect_names_the_commit_that_made_the_model_slower(repo):
    path, shas = repo
    proc = _cli(path, "bisect", "--model", "jump", "--good", shas[0], "--bad", shas[9])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"first worse revision: {shas[5][:8]} c6" in proc.stdout
    measured = int(re.search(r"\((\d+) A/B\(s\) measured\)", proc.stdout).group(1))
    assert 1 <= measured <= 5, proc.stdout
    same = _cli(path, "bisect", "--model", "jump", "--good", shas[6], "--bad", shas[7])  # new weights, same compute
    assert same.returncode == 1 and "not worse" in same.stdout, same.stdout


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
    assert chained < direct < 1.0 and 1.03 < direct / chained < 1.12, (chained, direct)  # c7 → c8 is one step
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


@pytest.mark.slow
def test_drift_guard_fails_what_no_single_step_shows(repo, tmp_path):
    path, shas = repo
    work = tmp_path / "work"
    git(path, "worktree", "add", "-q", str(work), shas[8])  # the record made at c9
    assert _cli(work, "bench", "--update").returncode == 0
    git(work, "checkout", "-q", shas[9])  # c10: one more +8 % step
    step = _cli(work, "bench")
    assert step.returncode == 0, step.stdout + step.stderr  # the step's own gate passes
    gate = json.loads((work / "results" / "latest" / "fast.gate.json").read_text())
    drift_row = next(r for r in gate["rows"] if r["model"] == "drift")
    assert drift_row["latency"]["method"] == "A/B" and drift_row["latency"]["p50"]["outcome"] != "slower"

    (work / "fast.toml").write_text((work / "fast.toml").read_text() + f'gate_baseline = "{shas[0]}"\n')
    guarded = _cli(work, "bench")
    assert guarded.returncode == 1, guarded.stdout + guarded.stderr
    gate = json.loads((work / "results" / "latest" / "fast.gate.json").read_text())
    rows = {r["model"]: r for r in gate["rows"]}
    reason = next(r for r in rows["drift"]["reasons"] if r.startswith("drift since gate_baseline"))
    assert "p50 x1.3" in reason or "p50 x1.4" in reason, reason  # the sum of the five steps
    assert "against the record" in reason
    assert rows["jump"]["outcome"] == "fail"  # its +30 % since c1 too; late did not exist at c1: noted, not failed
    assert rows["late"]["outcome"] == "pass" and any("no drift guard" in n for n in rows["late"]["notes"])

    (work / "fast.toml").write_text((work / "fast.toml").read_text().replace(shas[0], "v0.0-none"))
    bad = _cli(work, "bench")
    assert bad.returncode == 2 and "gate_baseline = \"v0.0-none\" is not a commit" in bad.stderr, bad.stderr
