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
from harness.gate.decide import PairedDecision, decide_chained, decide_paired
from harness.history.pairs import PairBook, files_id, kept_row
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
    group: int = 0  # which lockstep group measured it (today's rows: the first group's); -1: kept from an earlier run
    how: str = "measured in this run"

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
                     group_size: int, book: PairBook | None = None) -> list[VersionFigures]:
    """Every version's rows, oldest first, today's last: measured beside today's in this run, or from pairs the book
    kept (beside today's very files, or beside an anchor measured beside today's now)."""
    today = next(v for v in versions if v.today)
    others = [v for v in versions if not v.today]
    keys = [(run, serving) for run in plan.runs for serving in plan.target.scenario.in_children]
    kept, via = _reusable(others, today, keys, book) if book is not None else (set(), {})
    anchors = {id(a) for a in via.values()}
    chosen = [v for v in others if id(v) not in kept and (id(v) not in via or id(v) in anchors)]
    measured = _measure(plan, [*chosen, today], runner, workdir, say, advance, group_size)
    if book is not None:
        for v in chosen:
            for f in measured[v.label]:
                if f.p50 is not None and f.p95 is not None:
                    book.put(files_id(v.files), files_id(today.files), _run(f.row), f.row.key.serving, f.p50.rounds,
                             f.p95.rounds, f.row)
        book.save()
    figures = []
    for v in others:
        if v.label in measured:
            figures += measured[v.label]
        elif id(v) in kept:
            figures += _kept(plan, v, today, keys, book, workdir)
        else:
            figures += _chained(plan, v, via[id(v)], today, keys, book, workdir, measured)
    return figures + measured[today.label]


def _reusable(others: list[Version], today: Version, keys, book: PairBook) -> tuple[set, dict]:
    """The versions the book holds beside today's very files, and the others it holds beside an anchor (newest first)."""
    kept = {id(v) for v in others if book.holds(files_id(v.files), files_id(today.files), keys)}
    via = {}
    for v in (v for v in others if id(v) not in kept):
        anchor = next((a for a in reversed(others) if a is not v and book.holds(files_id(v.files), files_id(a.files), keys)),
                      None)
        if anchor is not None:
            via[id(v)] = anchor
    return kept, via


def _kept(plan: BenchPlan, v: Version, today: Version, keys, book: PairBook, workdir: Path) -> list[VersionFigures]:
    rules, out = plan.target.gate, []
    for run, serving in keys:
        pair = book.get(files_id(v.files), files_id(today.files), run, serving)
        out.append(VersionFigures(v.label, tuple(v.revisions), False, kept_row(pair, workdir),
                                  decide_paired(pair.p50, rules.latency_tolerance_pct),
                                  decide_paired(pair.p95, rules.p95_tolerance_pct), -1,
                                  f"kept: measured beside today's very files at {pair.measured_at}"))
    return out


def _chained(plan: BenchPlan, v: Version, anchor: Version, today: Version, keys, book: PairBook, workdir: Path,
             measured: dict) -> list[VersionFigures]:
    rules, out = plan.target.gate, []
    for run, serving in keys:
        first = book.get(files_id(v.files), files_id(anchor.files), run, serving)
        now = next((f for f in measured.get(anchor.label, ()) if (_run(f.row), f.row.key.serving) == (run, serving)), None)
        second = (now.p50.rounds, now.p95.rounds) if now is not None and now.p50 and now.p95 else None
        if second is None:
            kept = book.get(files_id(anchor.files), files_id(today.files), run, serving)
            second = (kept.p50, kept.p95)
        out.append(VersionFigures(v.label, tuple(v.revisions), False, kept_row(first, workdir),
                                  decide_chained(first.p50, second[0], rules.latency_tolerance_pct),
                                  decide_chained(first.p95, second[1], rules.p95_tolerance_pct), -1,
                                  f"chained: its ratio to {anchor.label}, kept from {first.measured_at}, times "
                                  f"{anchor.label}'s to today's" + (" measured in this run" if now else " kept")))
    return out


def _measure(plan: BenchPlan, versions: list[Version], runner, workdir: Path, say, advance,
             group_size: int) -> dict[str, list[VersionFigures]]:
    """version label -> its figures, measured in this run in lockstep groups, each with today's as its anchor."""
    out: dict[str, list[VersionFigures]] = {}
    rules = plan.target.gate
    for index, group in enumerate(groups_of(versions, group_size)):
        anchor = group[0].model
        models = [anchor, *(dataclasses.replace(v.model, ab_partner_of=anchor.spec.name) for v in group[1:])]
        folder = workdir / f"history_group_{index}"
        folder.mkdir()
        measured = measure_alternating(plan, models, runner, folder, say, advance)
        if index == 0:
            out[group[0].label] = [VersionFigures(group[0].label, tuple(group[0].revisions), True, row)
                                   for row in model_rows(plan, anchor, measured)]
        for version, model in zip(group[1:], models[1:]):
            figures = out.setdefault(version.label, [])
            for row in model_rows(plan, model, measured):
                mine = measured.get((anchor.spec.name, _run(row), row.key.serving))
                theirs = measured.get((model.spec.name, _run(row), row.key.serving))
                ratios = paired_ratios(mine[0], theirs[0]) if mine and theirs and not (mine[0].error or theirs[0].error) \
                    else None
                p50 = decide_paired(ratios.p50, rules.latency_tolerance_pct) if ratios else None
                p95 = decide_paired(ratios.p95, rules.p95_tolerance_pct) if ratios else None
                figures.append(VersionFigures(version.label, tuple(version.revisions), False, row, p50, p95, index))
    return out


def _run(row: ResultRow) -> str:
    from harness.measure.backends import run_name

    return run_name(row.runtime, row.variant)
