"""Latency against a baseline: the same run's A/B partner, the record on the same machine, or not gated (said so).

One scaling at most: against the record, a slowdown that the reference workload (timed inside the same
children) shows too is the machine's and is noted, not failed. Nothing is scaled across machines: a
changed model is judged by the A/B, an unchanged one on another machine is reported as not gated.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field

from harness.decide import SLOWER, UNKNOWN, Decision, decide, unstable
from harness.results import ResultRow, split_floats
from harness.targets import GateRules

MACHINE_FIELDS = ("cpu_model", "cpu_count", "cpu_isa", "ort_version", "threads")
AB, RECORD, NOT_GATED = "A/B", "record", "not gated"


@dataclass(frozen=True)
class LatencyVerdict:
    method: str  # A/B, record, not gated
    reasons: tuple[str, ...] = ()  # why the row fails on latency
    notes: tuple[str, ...] = ()
    decisions: dict = field(default_factory=dict)  # "p50"/"p95" -> Decision.as_dict(): the figures behind it

    @property
    def gated(self) -> bool:
        return self.method != NOT_GATED

    def as_dict(self) -> dict:
        return {"method": self.method, "reasons": list(self.reasons), "notes": list(self.notes), **self.decisions}


def judge(new: ResultRow, old: ResultRow | None, partner: ResultRow | None, rules: GateRules) -> LatencyVerdict:
    """How `new`'s latency compares: with the A/B partner when there is one, else with the record."""
    if new.status != "ok" or new.p50_ms is None:
        return LatencyVerdict(NOT_GATED, notes=("latency: not measured",))
    if partner is not None and partner.status == "ok":
        return _ab(new, partner, rules)
    if old is None or old.p50_ms is None:
        return LatencyVerdict(NOT_GATED, notes=("latency: no recorded figure to compare with",))
    different = [f for f in MACHINE_FIELDS if getattr(new, f) != getattr(old, f)]
    if different:
        return LatencyVerdict(NOT_GATED, notes=(
            f"latency not gated: recorded on {old.cpu_model} ({old.cpu_isa}, ORT {old.ort_version}, {old.threads} "
            f"thread(s)), measured on {new.cpu_model} ({new.cpu_isa}, ORT {new.ort_version}, {new.threads} thread(s)), "
            f"and no A/B partner in this run",))
    return _against_record(new, old, rules)


def _decisions(old_p50, new_p50, old_p95, new_p95, rules: GateRules, floor_pct: float = 0.0) -> dict[str, Decision]:
    return {"p50": decide(old_p50, new_p50, max(rules.latency_tolerance_pct, floor_pct)),
            "p95": decide(old_p95, new_p95, max(rules.p95_tolerance_pct, floor_pct))}


def _ab(new: ResultRow, partner: ResultRow, rules: GateRules) -> LatencyVerdict:
    decisions = _decisions(split_floats(partner.p50_per_process_ms), split_floats(new.p50_per_process_ms),
                           split_floats(partner.p95_per_process_ms), split_floats(new.p95_per_process_ms), rules)
    reasons = tuple(f"{d.describe(q)} (A/B against {partner.model}, same run)" for q, d in decisions.items()
                    if d.outcome == SLOWER)
    notes = [f"latency: A/B against {partner.model} in this run — "
             + "; ".join(f"{q} x{d.ratio:.2f} {d.outcome}" for q, d in decisions.items() if d.outcome != UNKNOWN)]
    notes += _unstable_notes(new, partner)
    return LatencyVerdict(AB, reasons, tuple(notes), {q: d.as_dict() for q, d in decisions.items()})


def _against_record(new: ResultRow, old: ResultRow, rules: GateRules) -> LatencyVerdict:
    old_p50 = split_floats(old.p50_per_process_ms)
    if old_p50:  # per-process figures on both sides: the rank rule
        decisions = _decisions(old_p50, split_floats(new.p50_per_process_ms), split_floats(old.p95_per_process_ms),
                               split_floats(new.p95_per_process_ms), rules, rules.record_tolerance_pct)
    else:  # a record from before per-process figures were kept: the ratio of medians alone, no noise allowance
        # p95 of one run against p95 of another, with nothing to tell noise from change, is not decided.
        decisions = {"p50": _ratio_only(old.p50_ms, new.p50_ms, max(rules.latency_tolerance_pct, rules.record_tolerance_pct))}
    machine = new.reference_ms / old.reference_ms if new.reference_ms and old.reference_ms else None
    reasons, notes = [], []
    for quantity, d in decisions.items():
        if d.outcome != SLOWER:
            continue
        threshold = 1 + d.min_effect_pct / 100
        if machine is not None and d.ratio / machine < threshold:
            # A shared host that slows down slows the reference workload in the same children too; a heavier model does not.
            notes.append(f"{d.describe(quantity)}, but the reference workload in the same children ran x{machine:.2f}: "
                         f"the machine, not the model")
        else:
            reasons.append(d.describe(quantity) + " (against the record)")
    notes.insert(0, "latency: against the record (same machine) — "
                 + "; ".join(f"{q} x{d.ratio:.2f} {d.outcome}" for q, d in decisions.items() if d.ratio is not None))
    notes += _unstable_notes(new, old)
    return LatencyVerdict(RECORD, tuple(reasons), tuple(notes), {q: d.as_dict() for q, d in decisions.items()})


def _ratio_only(old: float | None, new: float | None, min_effect_pct: float) -> Decision:
    if not old or not new:
        return Decision(UNKNOWN, None, None, None, min_effect_pct, (), ())
    ratio = new / old
    outcome = SLOWER if ratio >= 1 + min_effect_pct / 100 else "no change"
    return Decision(outcome, ratio, None, None, min_effect_pct, (old,), (new,))


def _unstable_notes(*rows: ResultRow) -> list[str]:
    notes = []
    for row in rows:
        values = split_floats(row.p50_per_process_ms)
        if unstable(values):
            spread = 100 * statistics.stdev(values) / statistics.fmean(values)
            notes.append(f"{row.model}: per-process p50s spread {spread:.0f} % (pyperf's unstable rule): rerun on a quieter machine")
        if row.contended_pct is not None and row.contended_pct >= 10:
            notes.append(f"{row.model}: other work took {row.contended_pct:.0f} % of the target's CPUs while it was measured")
    return notes
