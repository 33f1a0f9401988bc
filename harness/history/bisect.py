"""The first revision whose model is worse than a good revision's, found by binary search over same-run A/Bs.

Each step builds the middle revision and measures it in lockstep beside the good version, judged by the
gate's own rules: latency by the paired decision (slower, no change, or undecided when the host is too noisy
to tell the minimum effect apart), file size, memory and quality as the gate compares them with a record.
A revision whose files are byte-identical to the good or the bad version's is decided without measuring.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

from harness.bench.plan import BenchInputs
from harness.errors import HarnessError
from harness.gate import deterministic_regressions
from harness.gate.decide import FASTER, NO_CHANGE, SLOWER, UNDECIDED
from harness.history import Session, session
from harness.history.measure import VersionFigures, measure_versions
from harness.history.revisions import Revision, between, resolve
from harness.history.versions import Version
from harness.runners import make_runner
from harness.spec import Suite
from harness.targets import TargetProfile

WORSE = "worse"


@dataclass(frozen=True)
class Step:
    """One revision looked at: worse than good, no change, or undecided; and why."""

    revision: Revision
    outcome: str
    why: str
    measured: bool  # an A/B ran (False: its files are the good or the bad version's)


@dataclass(frozen=True)
class Bisection:
    model: str
    good: Revision
    bad: Revision
    steps: list[Step]
    first_worse: Revision | None  # None: undecided, or bad is not worse than good
    verdict: str

    @property
    def ab_count(self) -> int:
        return sum(s.measured for s in self.steps)


def judge(s: Session, good: Version, other: Version, runner) -> tuple[str, str]:
    """(worse / no change / undecided, why) for `other` measured beside `good` in lockstep, by the gate's rules."""
    figures = measure_versions(s.plan, [other, dataclasses.replace(good, today=True)], runner, s.workdir / _fresh(s),
                               s.say, s.advance, 2)
    anchor = {f.run: f.row for f in figures if f.today}
    worse, undecided, said = [], [], []
    for f in (f for f in figures if not f.today and s.plan.target.budgets.ships(f.row.variant)):
        reasons = [r for r in deterministic_regressions(f.row, anchor[f.run], s.plan.target)] if f.run in anchor else []
        if f.p50 is None:
            undecided.append(f"{f.row.variant}: not measured in lockstep ({f.row.status})")
            continue
        said.append(f"{f.row.variant} {f.p50.describe('p50')}")
        if f.p50.outcome == SLOWER:
            reasons.insert(0, f"{f.row.variant} {f.p50.describe('p50')}")
        elif f.p50.outcome not in (NO_CHANGE, FASTER):
            undecided.append(f"{f.row.variant} {f.p50.describe('p50')}")
        worse += reasons
    if worse:
        return WORSE, "; ".join(worse)
    if undecided:
        return UNDECIDED, "; ".join(undecided)
    return NO_CHANGE, "; ".join(said) or "nothing measured"


def _fresh(s: Session) -> str:
    index = len(list(s.workdir.glob("ab_*")))
    (s.workdir / f"ab_{index}").mkdir()
    return f"ab_{index}"


def search(candidates: list[Revision], good: Revision,
           look: Callable[[Revision], Step]) -> tuple[list[Step], int | None, str]:
    """Binary search for the first worse candidate, the last one known worse: (steps, its index or None, verdict)."""
    steps: list[Step] = []
    low, high = -1, len(candidates) - 1  # candidates[high] is worse; low: the last known good (-1: good itself)
    while high - low > 1:
        mid = (low + high) // 2
        step = look(candidates[mid])
        steps.append(step)
        if step.outcome == UNDECIDED:
            after = good.short if low < 0 else candidates[low].short
            return steps, None, (f"undecided at {candidates[mid].short} ({step.why}): the first worse revision is after "
                                 f"{after} and at or before {candidates[high].short}; rerun on a quieter machine")
        high, low = (mid, low) if step.outcome == WORSE else (high, mid)
    first = candidates[high]
    return steps, high, f"first worse revision: {first.short} {first.subject}"


def run_bisect(suite: Suite, target: TargetProfile, inputs: BenchInputs, good: str, bad: str, console=None) -> Bisection:
    name = suite.models[0].name
    with session(suite, target, inputs, console) as s:
        good_rev, bad_rev = resolve(s.root, good), resolve(s.root, bad)
        candidates = between(s.root, good_rev.sha, bad_rev.sha)
        if not candidates:
            raise HarnessError(f"--good {good} and --bad {bad} are the same commit: nothing to bisect")
        built = {}
        for rev, flag in ((good_rev, "--good"), (bad_rev, "--bad")):
            model = s.builder.build(s.today, rev)
            if isinstance(model, str):
                raise HarnessError(f"{flag} {rev.short}: {model}")
            built[rev.sha] = Version(model, [rev])
        good_version, bad_version = built[good_rev.sha], built[bad_rev.sha]
        if good_version.files == bad_version.files:
            return Bisection(name, good_rev, bad_rev, [], None, f"{good_rev.short} and {bad_rev.short} make identical "
                             f"files: nothing changed {name} between them")
        runner = make_runner(s.plan.target, None)
        try:
            outcome, why = judge(s, good_version, bad_version, runner)
            first = Step(bad_rev, outcome, why, True)
            if outcome != WORSE:
                said = "undecided: the host was too noisy" if outcome == UNDECIDED else "not worse"
                return Bisection(name, good_rev, bad_rev, [first], None, f"--bad {bad_rev.short} is {said} against "
                                 f"--good {good_rev.short} ({why}): nothing to bisect")
            known = {good_version.files: (NO_CHANGE, f"--good {good_rev.short}"),
                     bad_version.files: (WORSE, f"--bad {bad_rev.short}")}
            steps, index, verdict = search(candidates, good_rev, lambda rev: _step(s, rev, good_version, known, runner))
        finally:
            runner.close()
    return Bisection(name, good_rev, bad_rev, [first, *steps], None if index is None else candidates[index], verdict)


def _step(s: Session, rev: Revision, good: Version, known: dict, runner) -> Step:
    """`rev` judged against `good`: from files judged before (the same bytes, the same verdict), else by an A/B."""
    model = s.builder.build(s.today, rev)
    if isinstance(model, str):
        return Step(rev, UNDECIDED, model, False)
    version = Version(model, [rev])
    if version.files in known:
        outcome, where = known[version.files]
        return Step(rev, outcome, f"the same files as {where}", False)
    outcome, why = judge(s, good, version, runner)
    if outcome != UNDECIDED:
        known[version.files] = (outcome, rev.short)
    return Step(rev, outcome, why, True)


__all__ = ["Bisection", "Step", "VersionFigures", "run_bisect"]
