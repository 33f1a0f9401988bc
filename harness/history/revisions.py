"""Which revisions of a repository could have changed a model: the commits that touched its inputs.

A model's inputs are its suite file and the suite's folder (its factory code and checkpoints live there or
are named from there), any checkpoint or factory file elsewhere in the repository, and the harness's own code
when the repository holds it. That is a superset: commits that touched another model's files are candidates
too, and building them tells (their files come out identical to a neighbour's, and are one version).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from harness.errors import HarnessError
from harness.gate.ab import git, holds_harness, repo_root, resolve_commit


@dataclass(frozen=True)
class Revision:
    """One commit: its full hash, when it was made and its subject line."""

    sha: str
    subject: str
    committed_at: str  # ISO 8601, the committer's date

    @property
    def short(self) -> str:
        return self.sha[:8]


def repository(suite_path: Path) -> Path:
    """The git repository holding the suite, or one line saying it is not in one."""
    root = repo_root(Path(suite_path))
    if root is None:
        raise HarnessError(f"{suite_path} is not in a git checkout: history and bisect read the model's versions from "
                           f"git; run from a clone of the project's repository")
    return root


def resolve(root: Path, rev: str) -> Revision:
    """`rev` (a hash, tag or branch) as a commit of the repository, or one line saying it is not there."""
    sha = resolve_commit(root, rev)
    if not sha:
        raise HarnessError(f"revision {rev!r} is not a commit of the repository at {root}: give a commit hash, tag or "
                           f"branch it holds (git log --oneline shows them)")
    return _describe(root, [sha])[0]


def input_paths(root: Path, suite_path: Path, extra: tuple[Path, ...] = ()) -> list[str]:
    """The paths, relative to the repository, whose commits may change a model of this suite."""
    paths = {Path(suite_path).resolve().parent, *(Path(p).resolve() for p in extra)}
    if holds_harness(root):
        paths.add(root / "harness")  # the harness's own repository: its export and variant code is an input too
    inside = []
    for path in sorted(paths):
        try:
            inside.append(path.relative_to(root).as_posix() or ".")
        except ValueError:
            continue  # outside the repository: not versioned here
    return inside


def touching(root: Path, paths: list[str], last: int | None = None, since: str | None = None,
             until: str = "HEAD") -> list[Revision]:
    """The first-parent commits up to `until` that touched `paths`, oldest first: the last `last` of them, or
    every one after `since` (with `since` itself first)."""
    spec = f"{since}..{until}" if since else until
    args = ["rev-list", "--first-parent", spec, "--", *paths]
    shas = (git(args, root) or "").split()
    if last is not None:
        shas = shas[:last]
    shas.reverse()
    if since:
        shas.insert(0, git(["rev-parse", since], root))
    return _describe(root, shas)


def between(root: Path, good: str, bad: str) -> list[Revision]:
    """The first-parent commits after `good` up to and including `bad`, oldest first; one line if `good` is not
    an ancestor of `bad`."""
    if git(["merge-base", "--is-ancestor", good, bad], root) is None:
        raise HarnessError(f"--good {good[:12]} is not an ancestor of --bad {bad[:12]}: give the older, good revision as "
                           f"--good and a later one as --bad")
    shas = (git(["rev-list", "--first-parent", "--ancestry-path", f"{good}..{bad}"], root) or "").split()
    return _describe(root, list(reversed(shas)))


def _describe(root: Path, shas: list[str]) -> list[Revision]:
    out = []
    for sha in shas:
        line = git(["show", "-s", "--format=%H%x09%cI%x09%s", sha], root) or f"{sha}\t\t"
        full, when, subject = (line.split("\t", 2) + ["", ""])[:3]
        out.append(Revision(full, subject, when))
    return out
