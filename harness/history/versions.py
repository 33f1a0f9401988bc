"""A model's versions: its files as each revision makes them, one version per distinct set of files.

A revision's suite entry, checkpoint and factory code come from git (`git archive`); in a repository that
holds the harness itself, that revision's own harness makes the files (its `harness export` and `harness
quantize`, in a child process), so a change to the harness's export or variant code is a new version too.
Files are cached by content; revisions whose files are byte-identical are one version, measured once.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from harness.bench.prepare import PreparedModel, prepare_model, prepared_from_files
from harness.gate.ab import holds_harness, machine_tag, made_by_revision, tree_at
from harness.history.revisions import Revision
from harness.spec import find_spec, load_suite

TODAY = "today"


@dataclass
class Version:
    """One distinct set of a model's files, and every revision that makes exactly these files (oldest first)."""

    model: PreparedModel
    revisions: list[Revision] = field(default_factory=list)
    today: bool = False  # the working tree's version: every ratio is against it

    @property
    def files(self) -> tuple[tuple[str, str], ...]:
        return tuple(sorted((v, m.sha256) for v, m in self.model.made.items()))

    @property
    def label(self) -> str:
        """The commit that brought these files (the first that makes them), and how many more make them too."""
        more = f" (+{len(self.revisions) - 1})" if len(self.revisions) > 1 else ""
        if self.today:
            return TODAY + (f" (= {self.revisions[0].short}{more})" if self.revisions else "")
        return self.revisions[0].short + more


class VersionBuilder:
    """Builds a model's files at revisions of the repository at `root`, each revision's tree unpacked once."""

    def __init__(self, plan, root: Path, workdir: Path, say, on_calibration):
        self.plan, self.root, self.workdir, self.say, self.on_calibration = plan, root, workdir, say, on_calibration
        self.relative = Path(plan.suite.path).resolve().relative_to(root)

    def exists(self, name: str, rev: Revision) -> bool:
        tree = tree_at(self.root, rev.sha, self.workdir)
        return tree is not None and (tree / self.relative).is_file() and \
            find_spec(load_suite(tree / self.relative), name) is not None

    def build(self, today: PreparedModel, rev: Revision) -> PreparedModel | str:
        """`today`'s model as `rev` makes it, or why it cannot be made there."""
        name = today.spec.name
        tree = tree_at(self.root, rev.sha, self.workdir)
        if tree is None:
            return f"commit {rev.short} cannot be read from {self.root}"
        if not (tree / self.relative).is_file():
            return f"{self.relative} did not exist at {rev.short}"
        spec = find_spec(load_suite(tree / self.relative), name)
        if spec is None:
            return f"model {name} was not in the suite at {rev.short}"
        if spec.input_hw != today.spec.input_hw or spec.num_classes != today.spec.num_classes:
            return f"{name}'s input size or classes differ at {rev.short}: not comparable with today's"
        spec = dataclasses.replace(spec, name=f"{name}@{rev.short}")
        self.say(f"build {spec.name}")
        if holds_harness(tree):
            return self._by_own_harness(today, spec, tree, rev)
        built = prepare_model(self.plan, spec, today.eval_set, self.say, lambda: None, self.on_calibration)
        if built.exported is None or built.failures:
            return f"at {rev.short}: " + "; ".join(f"{v}: {why}" for v, why in built.failures.items())
        return built

    def _by_own_harness(self, today: PreparedModel, spec, tree: Path, rev: Revision) -> PreparedModel | str:
        files = {}
        for variant in self.plan.variants:
            made = made_by_revision(tree, rev.sha, today.spec.name, self.relative, variant, machine_tag(self.plan.machine))
            if isinstance(made, str):
                return f"the harness at {rev.short} could not make {variant}: {made}"
            files[variant] = made
        return prepared_from_files(spec, files, today.eval_set, f"made by the harness at {rev.short}")


def distinct(versions: list[Version]) -> list[Version]:
    """Versions with identical files folded into one, oldest first (by each one's latest commit), today's last."""
    out: dict[tuple, Version] = {}
    latest: dict[tuple, int] = {}
    for index, version in enumerate(versions):
        found = out.setdefault(version.files, version)
        latest[version.files] = index
        if found is version:
            continue
        found.revisions = [*found.revisions, *(r for r in version.revisions if r not in found.revisions)]
        if version.today:
            found.today, found.model = True, version.model  # today's own build: every ratio is against it
    return sorted(out.values(), key=lambda v: (v.today, latest[v.files]))
