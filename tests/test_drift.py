"""The gate's drift guard (bench/drift.py): every model also A/B'd against its version at the target's gate_baseline."""

import json
import re

import pytest

from conftest import history_cli as _cli
from history_repo import git


@pytest.fixture(scope="module")
def repo(history_repo):
    return history_repo


@pytest.mark.slow
def test_drift_guard_fails_what_the_record_does_not_show(repo, tmp_path):
    path, shas = repo
    work = tmp_path / "work"
    git(path, "worktree", "add", "-q", str(work), shas[9])
    assert _cli(work, "bench", "--update").returncode == 0  # the record made at c10: nothing changed since
    unchanged = _cli(work, "bench")
    assert unchanged.returncode == 0, unchanged.stdout + unchanged.stderr

    (work / "fast.toml").write_text((work / "fast.toml").read_text() + f'gate_baseline = "{shas[0]}"\n')
    guarded = _cli(work, "bench")
    assert guarded.returncode == 1, guarded.stdout + guarded.stderr
    gate = json.loads((work / "results" / "latest" / "fast.gate.json").read_text())
    rows = {r["model"]: r for r in gate["rows"]}
    reason = next(r for r in rows["drift"]["reasons"] if r.startswith("drift since gate_baseline"))
    assert re.search(r"p50 x(\d\.\d+)", reason) and float(re.search(r"p50 x(\d\.\d+)", reason).group(1)) > 1.5, reason
    assert "against the record: unchanged" in reason  # both figures: the record saw no change
    assert f"next: harness bisect --target fast.toml --model drift --good {shas[0]}" in " ".join(guarded.stdout.split())
    assert rows["jump"]["outcome"] == "fail", rows["jump"]  # its +60 % since c1 too; late did not exist at c1: noted, not failed
    assert rows["late"]["outcome"] == "pass" and any("no drift guard" in n for n in rows["late"]["notes"])

    (work / "fast.toml").write_text((work / "fast.toml").read_text().replace(shas[0], "v0.0-none"))
    bad = _cli(work, "bench")
    assert bad.returncode == 2 and "gate_baseline = \"v0.0-none\" is not a commit" in bad.stderr, bad.stderr
