"""A model's history measured in one run: its versions at earlier revisions, side by side with today's.

`run_history` builds the model at each revision that touched its inputs (revisions.py), folds revisions
that make identical files into one version (versions.py) and measures every distinct version in lockstep
beside today's (measure.py); `bisect.py` finds the first revision slower than a good one by same-run A/Bs.
"""

from __future__ import annotations

import contextlib
import dataclasses
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from harness.bench import calibration_bar
from harness.bench.narrow import Narrowing
from harness.bench.plan import BenchInputs, BenchPlan, plan_bench
from harness.bench.prepare import PreparedModel, prepare_eval_sets, prepare_model
from harness.errors import HarnessError
from harness.history.measure import VersionFigures, measure_versions
from harness.history.pairs import PairBook
from harness.history.revisions import Revision, input_paths, repository, resolve, touching
from harness.history.versions import Version, VersionBuilder, distinct
from harness.runners import make_runner
from harness.spec import Suite
from harness.targets import TargetProfile

GROUP_SIZE = 6  # versions per lockstep group, today's included: each child runs one block in turn


@dataclass(frozen=True)
class History:
    """One model's distinct versions and their figures, oldest first, today's last."""

    model: str
    figures: list[VersionFigures]
    looked_at: list[Revision]  # the revisions that touched the model's inputs
    versions: int  # distinct sets of files among them and today's
    skipped: list[tuple[Revision, str]] = field(default_factory=list)  # not built, and why

    @property
    def measured_now(self) -> int:
        """Versions measured in this run, today's included."""
        return len({f.label for f in self.figures if f.group >= 0})


@dataclass
class Session:
    """What history and bisect share for one model: the plan, a scratch folder, progress, today's build."""

    plan: BenchPlan
    root: Path
    workdir: Path
    progress: Progress
    bar: object
    today: PreparedModel
    builder: VersionBuilder

    def say(self, message: str) -> None:
        self.progress.update(self.bar, description=escape(message))

    def advance(self) -> None:
        self.progress.advance(self.bar)


def narrowed(suite: Suite, target: TargetProfile, model: str, variants: tuple[str, ...]) -> tuple[Suite, TargetProfile]:
    """One model of the suite, the variants asked for (default: those the target ships) as the ones that ship, and
    the serving modes the measuring children run (a service is judged by its budgets, not by history)."""
    shipped = tuple(v for v in target.scenario.variants if target.budgets.ships(v)) if target.budgets.ship else ("fp32",)
    variants = variants or shipped or ("fp32",)
    if not target.scenario.in_children:
        raise HarnessError(f"{target.where} serves only over HTTP; history and bisect measure in child processes: use "
                           f"a target with serving \"batched\" or \"concurrent\"")
    suite, target = Narrowing((model,), variants, target.scenario.in_children).apply(suite, target)
    if len(suite.models) != 1:
        raise HarnessError(f"--model {model} matches {len(suite.models)} models of {suite.path}; name one: "
                           f"{', '.join(m.name for m in suite.models)}")
    return suite, dataclasses.replace(target, budgets=dataclasses.replace(target.budgets, ship=variants))


@contextlib.contextmanager
def session(suite: Suite, target: TargetProfile, inputs: BenchInputs, console) -> Iterator[Session]:
    root = repository(suite.path)
    plan = plan_bench(suite, target, inputs)
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with tempfile.TemporaryDirectory(prefix="harness-history-") as tmp, \
            Progress(*columns, console=console, transient=True) as progress:
        workdir, spec = Path(tmp), suite.models[0]
        bar = progress.add_task("loading evaluation images", total=None)
        eval_set = prepare_eval_sets(plan, workdir)[(spec.input_hw, spec.num_classes)]
        on_calibration = calibration_bar(progress, spec.name)
        today = prepare_model(plan, spec, eval_set, lambda m: progress.update(bar, description=escape(m)), lambda: None,
                              on_calibration)
        if today.exported is None or today.failures:
            raise HarnessError(f"{spec.name} cannot be built from the working tree, so there is nothing to compare its "
                               f"versions with: " + "; ".join(f"{v}: {w}" for v, w in today.failures.items()))
        builder = VersionBuilder(plan, root, workdir, lambda m: progress.update(bar, description=escape(m)),
                                 on_calibration)
        yield Session(plan, root, workdir, progress, bar, today, builder)


def run_history(suite: Suite, target: TargetProfile, inputs: BenchInputs, last: int | None = None,
                since: str | None = None, group_size: int = GROUP_SIZE, console=None, fresh: bool = False) -> History:
    """The one model of `suite` at its last `last` revisions (or those since `since`), beside today's: measured in
    this run, or (unless `fresh`) from pairs an earlier run on this machine kept (history/pairs.py)."""
    name = suite.models[0].name
    with session(suite, target, inputs, console) as s:
        start = resolve(s.root, since) if since else None
        if start is not None and not s.builder.exists(name, start):
            raise HarnessError(f"model {name} did not exist at {since} ({start.short}): give a revision at or after the "
                               f"commit that added it")
        extra = tuple(p for p in (suite.models[0].checkpoint,) if p is not None)
        looked_at = touching(s.root, input_paths(s.root, suite.path, extra), last, start.sha if start else None)
        s.progress.update(s.bar, total=len(looked_at), completed=0)
        built, skipped = [], []
        for rev in looked_at:
            model = s.builder.build(s.today, rev)
            if isinstance(model, str):
                skipped.append((rev, model))
            else:
                built.append(Version(model, [rev]))
            s.advance()
        versions = distinct([*built, Version(s.today, [], today=True)])
        s.progress.update(s.bar, total=None, completed=0)  # children: how many depends on what the book kept
        runner = make_runner(s.plan.target, None)
        try:
            figures = measure_versions(s.plan, versions, runner, s.workdir, s.say, s.advance, group_size,
                                       None if fresh else PairBook(s.plan))
        finally:
            runner.close()
    return History(name, figures, looked_at, len(versions), skipped)
