"""The gate: compare a run with the committed record (results/<target>.csv) and decide pass or fail.

A row fails when it breaks a budget, could not be measured, or regressed against its recorded row.
Deterministic figures (file size, parameters, quality (mIoU or top-1), parity) compare tightly; model
memory within an absolute tolerance; latency by the rank rule on per-process figures (harness.decide),
against the same run's A/B partner when the model changed, else against the record on the same
machine, else not gated, and counted as such (harness.latency). `strict` fails an ungated latency.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass

from harness.latency import LatencyVerdict, judge
from harness.results import ResultRow, row_key
from harness.targets import TargetProfile

PASS, FAIL, NEW = "pass", "fail", "new"
PARITY_TOLERANCE_PTS = 0.05


@dataclass(frozen=True)
class RowCheck:
    key: tuple[str, str, str]
    outcome: str  # pass, fail, or new (no recorded row to compare with)
    reasons: tuple[str, ...]  # why it failed
    notes: tuple[str, ...]  # what a reader should know, e.g. latency not gated
    latency: LatencyVerdict | None = None

    def as_dict(self) -> dict:
        return {"model": self.key[0], "variant": self.key[1], "serving": self.key[2], "outcome": self.outcome,
                "reasons": list(self.reasons), "notes": list(self.notes),
                "latency": self.latency.as_dict() if self.latency else None}


@dataclass(frozen=True)
class GateReport:
    checks: tuple[RowCheck, ...]
    missing: tuple[tuple[str, str, str], ...]  # recorded rows of this run's models that the run did not produce

    @property
    def failed(self) -> list[RowCheck]:
        return [c for c in self.checks if c.outcome == FAIL]

    @property
    def passed(self) -> bool:
        return not self.failed

    def latency_counts(self) -> dict[str, int]:
        methods = [c.latency.method for c in self.checks if c.latency is not None]
        return {m: methods.count(m) for m in ("A/B", "record", "not gated")}

    def summary(self, target: str) -> str:
        counts = {o: sum(c.outcome == o for c in self.checks) for o in (PASS, FAIL, NEW)}
        text = (f"gate {target}: {'FAILED' if self.failed else 'passed'} — {counts[FAIL]} of {len(self.checks)} rows failed, "
                f"{counts[PASS]} passed")
        if counts[NEW]:
            text += f", {counts[NEW]} new (no record)"
        if self.missing:
            text += f", {len(self.missing)} recorded rows not produced by this run"
        latency = self.latency_counts()
        gated = latency["A/B"] + latency["record"]
        text += (f"; latency gated on {gated} of {len(self.checks)} rows ({latency['A/B']} by A/B in this run, "
                 f"{latency['record']} against the record), not gated on {latency['not gated']}")
        return text

    def to_json(self) -> str:
        return json.dumps({"passed": self.passed, "summary_counts": self.latency_counts(),
                           "rows": [c.as_dict() for c in self.checks],
                           "missing": [list(key) for key in self.missing]}, indent=1)


def check_row(new: ResultRow, old: ResultRow | None, target: TargetProfile, partner: ResultRow | None = None,
              strict: bool = False) -> RowCheck:
    reasons, notes = [], []
    if not target.budgets.ships(new.variant):
        notes.append("comparison only: budgets not gated (not in the target's ship list)")
    elif new.status != "ok":
        reasons.append(f"not measured: {new.status}")
    elif new.verdict != "fits":
        reasons.append(f"budget: {new.verdict}")
    latency = judge(new, old, partner, target.gate)
    reasons += latency.reasons
    notes += latency.notes
    if strict and not latency.gated and new.status == "ok":
        reasons.append("latency not gated (--strict): " + (latency.notes[0] if latency.notes else "no baseline"))
    if old is None:
        outcome = FAIL if reasons else (PASS if latency.gated else NEW)
        return RowCheck(row_key(new), outcome, tuple(reasons), tuple(notes) + ("no recorded row",), latency)
    reasons += _deterministic_regressions(new, old, target)
    return RowCheck(row_key(new), FAIL if reasons else PASS, tuple(reasons), tuple(notes), latency)


def _deterministic_regressions(new: ResultRow, old: ResultRow, target: TargetProfile) -> list[str]:
    """File size, parameters, model memory, quality and parity against the record."""
    rules = target.gate
    reasons = []

    def grew(a, b, label: str, unit: str, limit: float) -> None:
        if a is not None and b is not None and b > limit:
            reasons.append(f"{label} {a:g} → {b:g} {unit} (+{b - a:.3g})")

    if old.file_mb is not None:
        grew(old.file_mb, new.file_mb, "file", "MB", old.file_mb * (1 + rules.file_tolerance_pct / 100))
    if old.params_in_graph is not None:
        grew(old.params_in_graph, new.params_in_graph, "parameters", "", old.params_in_graph)
    if old.model_mb is not None:
        grew(old.model_mb, new.model_mb, "model memory", "MB", old.model_mb + rules.model_mb_tolerance)
    for a, b, label, tolerance in ((old.quality_pct, new.quality_pct, new.quality_metric or "quality", rules.quality_tolerance_pts),
                                   (old.parity_agreement_pct, new.parity_agreement_pct, "parity agreement", PARITY_TOLERANCE_PTS)):
        if a is not None and b is not None and b < a - tolerance:
            reasons.append(f"{label} {a:.2f} → {b:.2f} % ({b - a:+.2f} pts)")
    return reasons


def run_gate(new_rows: list[ResultRow], recorded: list[ResultRow], target: TargetProfile,
             partners: dict[tuple[str, str, str], ResultRow] | None = None, strict: bool = False,
             model_notes: dict[str, str] | None = None, lost: set[tuple[str, str, str]] = frozenset()) -> GateReport:
    """Every row of the run against its recorded row, and against its A/B partner (keyed like the row) if any."""
    by_key, partners, model_notes = {row_key(r): r for r in recorded}, partners or {}, model_notes or {}
    checks = []
    for r in new_rows:
        check = check_row(r, by_key.get(row_key(r)), target, partners.get(row_key(r)), strict)
        if r.model in model_notes:
            check = dataclasses.replace(check, notes=check.notes + (f"A/B: {model_notes[r.model]}",))
        if row_key(r) in lost and row_key(r) not in by_key:  # a damaged record must not turn its rows into "new" ones
            check = dataclasses.replace(check, outcome=FAIL, reasons=check.reasons + (
                "this row is in the committed record (git HEAD) but missing from the record file: restore the file "
                "from git, or re-record with --update",))
        checks.append(check)
    checks = tuple(checks)
    produced = {row_key(r) for r in new_rows}
    models = {r.model for r in new_rows}
    missing = tuple(sorted(k for k in by_key if k[0] in models and k not in produced))
    return GateReport(checks, missing)
