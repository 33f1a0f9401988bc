"""harness history: a model's versions measured in one run, on a git repository the test writes (tests/fixtures/history_repo.py)."""

import csv
import shutil

import pytest

from harness.errors import HarnessError
from harness.history.revisions import between, input_paths, resolve, touching

from conftest import history_cli as _cli


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


@pytest.mark.slow
def test_history_shows_five_steps_in_order_and_each_version_once(repo):
    path, shas = repo
    proc = _cli(path, "history", "--model", "drift", "--last", "10", "--group-size", "4")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = _history_rows(path)
    assert [r["group"] for r in rows] == ["0", "0", "0", "1", "1", "0"]  # two groups, each with today's as anchor
    # c1-c2, c3-c4, c5-c6, c7, c8-c9 and today (c10): ten revisions, six distinct sets of files, each measured once
    assert [r["first_commit"] for r in rows] == [shas[0], shas[2], shas[4], shas[6], shas[7], shas[9]]
    assert [len(r["revisions"].split()) for r in rows] == [2, 2, 2, 1, 2, 1]
    ratios = [float(r["p50_vs_today"]) for r in rows[:-1]] + [1.0]
    # the steps in order: every two steps apart, and at most one pair of neighbours swapped (a worker beside this one
    # once moved one group's ratios by 15 %: x0.581 for c3 against x0.560 for c5)
    assert all(a < b for a, b in zip(ratios, ratios[2:])), ratios
    assert sum(a >= b for a, b in zip(ratios, ratios[1:])) <= 1, ratios
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


def test_history_measures_the_shipped_variants_in_the_children_and_refuses_a_service_only_target(repo):
    from harness.history import narrowed
    from harness.spec import load_suite
    from harness.targets import TargetProfile

    path, _ = repo
    suite = load_suite(path / "suite.toml")
    target = TargetProfile.from_flat("t", threads=1, serving=("batched", "http"), variants=("fp32", "fp16"), ship=("fp16",))
    one, narrow = narrowed(suite, target, "jump", ())
    assert [m.name for m in one.models] == ["jump"] and narrow.scenario.serving == ("batched",)
    assert narrow.scenario.variants == ("fp16",) and narrow.budgets.ship == ("fp16",)
    with pytest.raises(HarnessError, match="serves only over HTTP"):
        narrowed(suite, TargetProfile.from_flat("web", threads=1, serving=("http",)), "jump", ())
