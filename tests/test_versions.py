"""A model's versions (history/versions.py): byte-identical files are one version; in the harness's own repository
each revision's own harness makes its files."""

import csv
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from harness.history.versions import Version, distinct

from conftest import HISTORY_TARGET_EXTRA, history_cli as _cli
from history_repo import TARGET, git


def _history_rows(repo) -> list[dict]:
    return list(csv.DictReader((repo / "results" / "latest" / "history-fast.csv").open()))


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
                                   "return UNetSmall(num_classes, width=4 * width, **kwargs)"))  # the harness's code only
    git(repo, "commit", "-qam", "c2: unet_small four times as wide")
    env = {"HARNESS_CACHE_DIR": str(tmp_path / "cache")}
    proc = _cli(repo, "history", "--model", "unet", "--last", "2", env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = _history_rows(repo)
    assert [r["first_commit"] for r in rows] == [first, git(repo, "rev-parse", "HEAD")], rows
    assert float(rows[0]["file_mb"]) < float(rows[1]["file_mb"]) / 2 and float(rows[0]["p50_vs_today"]) < 0.7
    assert list((tmp_path / "cache" / "revision-files").iterdir())  # made by each revision's own harness

    # A named variant too (the target's settings, on the export that revision's harness made) is guarded.
    target = (repo / "fast.toml").read_text().replace('variants = ["fp32"]', 'variants = ["fp32", "lean"]')
    (repo / "fast.toml").write_text(target + f'gate_baseline = "{first}"\n[variant.lean]\nbase = "int8-dynamic"\n')
    guarded = _cli(repo, "bench", env=env)
    assert guarded.returncode == 1, guarded.stdout + guarded.stderr
    gate = json.loads((repo / "results" / "latest" / "fast.gate.json").read_text())
    drifted = {row["variant"] for row in gate["rows"] if any(r.startswith("drift since gate_baseline") for r in row["reasons"])}
    assert drifted == {"fp32", "lean"}, gate["rows"]
