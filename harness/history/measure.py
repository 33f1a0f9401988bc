"""A model's versions measured side by side: each group in lockstep with today's version, its anchor.

More versions than a group holds are measured in several groups, each with today's version in it, so
every version's ratio to today's is paired in its own group (cycles a fraction of a second apart).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from harness.bench.pairing import paired_ratios
from harness.bench.plan import BenchPlan
from harness.bench.rounds import measure_alternating
from harness.bench.rows import model_rows
from harness.gate.decide import PairedDecision, decide_paired
from harness.history.revisions import Revision
from harness.history.versions import Version
from harness.results import ResultRow


@dataclass(frozen=True)
class VersionFigures:
    """One version's row under one run and serving mode, and its latency against today's from the same group."""

    label: str
    revisions: tuple[Revision, ...]
    today: bool
    row: ResultRow
    p50: PairedDecision | None = None  # this version's p50 / today's, paired; None for today's own row
    p95: PairedDecision | None = None
    group: int = 0  # which lockstep group measured it (today's rows: the first group's)

    @property
    def run(self) -> tuple[str, str, str]:  # (variant, serving mode, backend): which of today's rows it pairs with
        return self.row.variant, self.row.key.serving, self.row.runtime


def groups_of(versions: list[Version], group_size: int) -> list[list[Version]]:
    """Today's version with up to group_size - 1 others in each group, oldest first."""
    today = next(v for v in versions if v.today)
    others = [v for v in versions if not v.today]
    step = max(1, group_size - 1)
    return [[today, *others[i:i + step]] for i in range(0, len(others), step)] or [[today]]


def measure_versions(plan: BenchPlan, versions: list[Version], runner, workdir: Path, say, advance,
                     group_size: int) -> list[VersionFigures]:
    """Every version's rows, oldest first, today's last; each paired with today's measured in its group."""
    figures: list[VersionFigures] = []
    today_rows: list[ResultRow] = []
    rules = plan.target.gate
    for index, group in enumerate(groups_of(versions, group_size)):
        anchor = group[0].model
        models = [anchor, *(dataclasses.replace(v.model, ab_partner_of=anchor.spec.name) for v in group[1:])]
        folder = workdir / f"history_group_{index}"
        folder.mkdir()
        measured = measure_alternating(plan, models, runner, folder, say, advance)
        if index == 0:
            today_rows = model_rows(plan, anchor, measured)
        for version, model in zip(group[1:], models[1:]):
            for row in model_rows(plan, model, measured):
                mine = measured.get((anchor.spec.name, _run(row), row.key.serving))
                theirs = measured.get((model.spec.name, _run(row), row.key.serving))
                ratios = paired_ratios(mine[0], theirs[0]) if mine and theirs and not (mine[0].error or theirs[0].error) \
                    else None
                p50 = decide_paired(ratios.p50, rules.latency_tolerance_pct) if ratios else None
                p95 = decide_paired(ratios.p95, rules.p95_tolerance_pct) if ratios else None
                figures.append(VersionFigures(version.label, tuple(version.revisions), False, row, p50, p95, index))
    today = next(v for v in versions if v.today)
    figures += [VersionFigures(today.label, tuple(today.revisions), True, row) for row in today_rows]
    return figures


def _run(row: ResultRow) -> str:
    from harness.measure.backends import run_name

    return run_name(row.runtime, row.variant)
