"""harness bisect: the first revision worse than a good one, by same-run A/Bs (tests/fixtures/history_repo.py)."""

import re

import pytest

from conftest import history_cli as _cli


@pytest.fixture(scope="module")
def repo(history_repo):
    return history_repo


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
def test_bisect_names_the_commit_that_made_the_model_slower(repo):
    path, shas = repo
    proc = _cli(path, "bisect", "--model", "jump", "--good", shas[0], "--bad", shas[9])
    measured = int(re.search(r"\((\d+) A/B\(s\) measured\)", proc.stdout).group(1))
    assert 1 <= measured <= 5, proc.stdout
    said = " ".join(proc.stdout.split())  # the verdict as one line, however the terminal wrapped it
    if proc.returncode == 1:  # "undecided" on a noisy host: it must say so and bracket the real step (c6)
        bracket = re.search(r"after (\w+) and at or before (\w+)", said)
        assert "undecided at" in said and bracket, proc.stdout
        index = {sha[:8]: i for i, sha in enumerate(shas)}
        assert index[bracket.group(1)] < 5 <= index[bracket.group(2)], proc.stdout
    else:
        assert proc.returncode == 0 and f"first worse revision: {shas[5][:8]} c6" in said, proc.stdout + proc.stderr
    same = _cli(path, "bisect", "--model", "jump", "--good", shas[6], "--bad", shas[7])  # new names, same compute
    assert same.returncode == 1 and ("not worse" in same.stdout or "undecided" in same.stdout), same.stdout
    assert "first worse revision" not in same.stdout
