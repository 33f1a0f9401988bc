"""Same-run A/B: rebuild the recorded version of a changed model from git, to measure it beside the new one.

Latency recorded on another machine, or minutes ago on a shared one, says little about this run. When
a model's export differs from the one the record measured (its ONNX sha256), the model's suite entry,
checkpoint and factory code are taken from the commit the record was made at (`git archive`, into a
temporary folder), exported with today's harness, and measured in alternating child processes with
the new version under the same target. Outside a git checkout, or when the commit is gone, the gate
says so and falls back to the record's figures.
"""

from __future__ import annotations

import dataclasses
import io
import subprocess
import tarfile
from dataclasses import dataclass
from pathlib import Path

from harness.results import ResultRow
from harness.spec import ModelSpec, find_spec, load_suite


def _git(args: list[str], cwd: Path) -> str | None:
    try:
        proc = subprocess.run(["git", *args], cwd=cwd, capture_output=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return proc.stdout.decode(errors="replace").strip() if proc.returncode == 0 else None


def repo_root(path: Path) -> Path | None:
    top = _git(["rev-parse", "--show-toplevel"], Path(path).resolve().parent)
    return Path(top) if top else None


def current_commit(suite_path: Path) -> str:
    """The commit the suite's files are at, '-dirty' when the suite's folder has uncommitted changes; '' outside git."""
    folder = Path(suite_path).resolve().parent
    head = _git(["rev-parse", "HEAD"], folder)
    if not head:
        return ""
    dirty = _git(["status", "--porcelain", "--", "."], folder)
    return head + ("-dirty" if dirty else "")


def committed_keys(record_path: Path) -> set[tuple[str, str, str]]:
    """(model, variant, serving) of every row in the committed version (HEAD) of a record; empty outside git."""
    import csv

    root = repo_root(record_path)
    if root is None:
        return set()
    relative = Path(record_path).resolve().relative_to(root)
    text = _git(["show", f"HEAD:{relative.as_posix()}"], root)
    if not text:
        return set()
    return {(r.get("model", ""), r.get("variant", ""), r.get("serving", "")) for r in csv.DictReader(io.StringIO(text))}


@dataclass(frozen=True)
class Partner:
    """The recorded version of one model, or why there is none."""

    spec: ModelSpec | None
    rev: str
    reason: str = ""  # set when spec is None


class Baselines:
    """Finds, for each changed model, its version at the record's commit (or at --against REV)."""

    def __init__(self, suite_path: Path, recorded: list[ResultRow], against: str | None = None):
        self.suite_path, self.against = Path(suite_path), against
        self.recorded = {r.model: r for r in recorded if r.variant == "fp32"} or {r.model: r for r in recorded}
        self.root = repo_root(self.suite_path)

    def needs_partner(self, name: str, sha256: str) -> tuple[bool, str]:
        """Whether `name` changed since the record (or since --against); the note says how that was decided."""
        if self.against:
            return True, f"A/B against {self.against}"
        row = self.recorded.get(name)
        if row is None:
            return False, "no recorded row"
        if not row.onnx_sha256:
            return False, "the record holds no export hash (re-record with --update to enable A/B)"
        if row.onnx_sha256 == sha256:
            return False, "export unchanged since the record"
        return True, f"export changed since the record ({row.onnx_sha256[:12]} → {sha256[:12]})"

    def partner(self, name: str, workdir: Path) -> Partner:
        rev = self.against or (self.recorded[name].git_commit or "").removesuffix("-dirty")
        if self.root is None:
            return Partner(None, rev, f"{self.suite_path} is not in a git checkout: no A/B, the record's figures are used")
        if not rev:
            return Partner(None, rev, "the record names no commit: no A/B, the record's figures are used")
        tree = self._tree(rev, Path(workdir))
        if tree is None:
            return Partner(None, rev, f"commit {rev[:12]} cannot be read from {self.root}: no A/B, the record's figures are used")
        relative = self.suite_path.resolve().relative_to(self.root)
        if not (tree / relative).is_file():
            return Partner(None, rev, f"{relative} did not exist at {rev[:12]}: nothing to compare with")
        spec = find_spec(load_suite(tree / relative), name)
        if spec is None:
            return Partner(None, rev, f"model {name} was not in the suite at {rev[:12]}: nothing to compare with")
        return Partner(dataclasses.replace(spec, name=f"{name}@{rev[:8]}"), rev)

    def _tree(self, rev: str, workdir: Path) -> Path | None:
        tree = workdir / f"rev-{rev[:12]}"
        if tree.is_dir():
            return tree
        try:
            proc = subprocess.run(["git", "archive", "--format=tar", rev], cwd=self.root, capture_output=True, timeout=300)
        except (OSError, subprocess.TimeoutExpired):
            return None
        if proc.returncode != 0:
            return None
        with tarfile.open(fileobj=io.BytesIO(proc.stdout)) as archive:
            archive.extractall(tree, filter="data")
        return tree
