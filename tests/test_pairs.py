"""Kept pairs (history/pairs.py): a history rerun after one new commit measures what changed plus its anchor."""

import csv

import pytest

from conftest import history_cli as _cli
from history_repo import git


@pytest.fixture(scope="module")
def repo(history_repo):
    return history_repo


def _history_rows(repo) -> list[dict]:
    return list(csv.DictReader((repo / "results" / "latest" / "history-fast.csv").open()))


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
    assert direct < 1.0 and 0.97 < direct / chained < 1.6, (chained, direct)  # c7 → c8 is one step (x1.17 here, quiet)
    again = _cli(work, "history", "--model", "drift", "--last", "4", env=env)  # nothing new: every pair kept
    assert again.returncode == 0 and "1 version(s) measured in this run" in again.stdout, again.stdout
    fresh = _cli(work, "history", "--model", "drift", "--last", "4", "--fresh", env=env)
    assert fresh.returncode == 0 and "3 version(s) measured in this run" in fresh.stdout, fresh.stdout
