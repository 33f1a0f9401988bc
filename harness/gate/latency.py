"""Latency against a baseline: only evidence from this run can fail it.

- **A/B**: a model whose file, runtime or session options changed since the record is measured beside its
  recorded configuration in this run. From lockstep children, the paired rounds decide (harness.gate.decide:
  slower, no change, or undecided when the host is too noisy to tell the minimum effect apart);
  otherwise (sides not measured in lockstep) the rank rule on per-process figures.
- **unchanged**: same file, runtime and options as the record: the ratio against the record is reported
  and said to be the host's, never failed. A profile may opt in (`gate_latency_against_record = true`) to
  the record rule for dedicated, quiet hardware: the rank rule, excused by the reference workload.
- **not gated**: nothing to compare with, or a change that could not be measured beside its recorded
  configuration (said so; `--strict` fails it).
Budgets (`p95_budget_ms`) are absolute and judged elsewhere (harness.gate.budget).
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field

from harness.measure.backends import DEFAULT_BACKEND
from harness.gate.decide import SLOWER, UNDECIDED, UNKNOWN, Decision, decide, decide_paired, unstable
from harness.results import ResultRow, split_floats
from harness.targets import GateRules, TargetProfile

MACHINE_FIELDS = ("cpu_model", "cpu_count", "cpu_isa", "ort_version", "threads")
# What a row's latency depends on besides the host: a change in any of them is A/B'd, never excused.
CONFIGURATION_FIELDS = {"onnx_sha256": "file", "ort_version": DEFAULT_BACKEND, "threads": "threads",
                        "cpu_mem_arena": "CPU arena", "mem_pattern": "memory pattern", "allow_spinning": "spinning",
                        "images_at_once": "images at once", "backend_version": "backend",
                        "backend_options": "backend options"}
AB, UNCHANGED, RECORD, NOT_GATED = "A/B", "unchanged", "record", "not gated"


@dataclass(frozen=True)
class LatencyVerdict:
    method: str  # A/B, unchanged (reported, not gated), record (opt-in), not gated
    reasons: tuple[str, ...] = ()  # why the row fails on latency
    notes: tuple[str, ...] = ()
    decisions: dict = field(default_factory=dict)  # "p50"/"p95" -> the decision's figures
    undecided: bool = False  # a comparison ran but could not separate the minimum effect from the host's noise

    @property
    def gated(self) -> bool:
        return self.method in (AB, RECORD)

    def as_dict(self) -> dict:
        return {"method": self.method, "reasons": list(self.reasons), "notes": list(self.notes),
                "undecided": self.undecided, **self.decisions}


def configuration_now(target: TargetProfile, ort_version: str) -> dict:
    """CONFIGURATION_FIELDS as a row measured now would hold them, but the file, the backend's release and its
    options (compared per variant and per backend): what Baselines compares with the record to decide an A/B."""
    return {"ort_version": ort_version, "threads": target.device.threads,
            "cpu_mem_arena": target.runtime.enable_cpu_mem_arena, "mem_pattern": target.runtime.enable_mem_pattern,
            "allow_spinning": target.runtime.allow_spinning, "images_at_once": target.scenario.images_at_once}


def configuration_changes(new: ResultRow, old: ResultRow) -> list[str]:
    """What differs between the two rows' configurations (None on either side: not recorded, not a change)."""
    changes = []
    for name, label in CONFIGURATION_FIELDS.items():
        a, b = getattr(old, name, None), getattr(new, name, None)
        if a not in (None, "") and b not in (None, "") and a != b:
            cut = 12 if name == "onnx_sha256" else None  # a hash is known by its start
            changes.append(f"{label} {str(a)[:cut]} → {str(b)[:cut]}")
    return changes


def judge(new: ResultRow, old: ResultRow | None, partner: ResultRow | None, rules: GateRules,
          paired=None) -> LatencyVerdict:
    """How `new`'s latency compares: with the A/B partner when there is one, else with the record."""
    if new.status != "ok" or new.p50_ms is None:
        return LatencyVerdict(NOT_GATED, notes=("latency: not measured",))
    if partner is not None and partner.status == "ok":
        return _ab_paired(new, partner, rules, paired) if paired is not None else _ab(new, partner, rules)
    if old is None or old.p50_ms is None:
        return LatencyVerdict(NOT_GATED, notes=("latency: no recorded figure to compare with",))
    changes = configuration_changes(new, old)
    if changes:
        return LatencyVerdict(NOT_GATED, notes=(f"latency not gated: {', '.join(changes)} since the record, and the "
                                                f"recorded configuration was not measured beside it in this run",))
    if rules.latency_against_record:
        different = [f for f in MACHINE_FIELDS if getattr(new, f) != getattr(old, f)]
        if different:
            return LatencyVerdict(NOT_GATED, notes=(
                f"latency not gated: recorded on {old.cpu_model} ({old.cpu_isa}, {old.threads} thread(s)), measured on "
                f"{new.cpu_model} ({new.cpu_isa}, {new.threads} thread(s))",))
        return _against_record(new, old, rules)
    return _unchanged(new, old)


def _unchanged(new: ResultRow, old: ResultRow) -> LatencyVerdict:
    ratio = f"p50 x{new.p50_ms / old.p50_ms:.2f}" if old.p50_ms else f"p50 {new.p50_ms:.2f} ms (the record's is 0)"
    machine = new.reference_ms / old.reference_ms if new.reference_ms and old.reference_ms else None
    yardstick = f" (reference workload x{machine:.2f})" if machine else ""
    return LatencyVerdict(UNCHANGED, notes=(
        f"latency: unchanged file, runtime and profile: {ratio} against the record{yardstick}: the host, "
        f"not a regression (figures from another run never fail latency)",))


def _ab_paired(new: ResultRow, partner: ResultRow, rules: GateRules, paired) -> LatencyVerdict:
    decisions = {"p50": decide_paired(paired.p50, rules.latency_tolerance_pct),
                 "p95": decide_paired(paired.p95, rules.p95_tolerance_pct)}
    against = f"A/B against {partner.model}" + _runtime_note(new, partner)
    reasons = tuple(f"{d.describe(q)} ({against}, paired in this run)" for q, d in decisions.items() if d.outcome == SLOWER)
    undecided = not reasons and any(d.outcome in (UNDECIDED, UNKNOWN) for d in decisions.values())  # a fail is decided
    notes = [f"latency: {against}, {paired.cycles} paired cycles in lockstep — "
             + "; ".join(d.describe(q) for q, d in decisions.items())]
    return LatencyVerdict(AB, reasons, tuple(notes), {q: d.as_dict() for q, d in decisions.items()}, undecided)


def _runtime_note(new: ResultRow, partner: ResultRow) -> str:
    if not new.on_reference_backend and partner.backend_version and partner.backend_version != new.backend_version:
        return f" ({new.runtime} {partner.backend_version} against {new.backend_version})"
    if partner.ort_version and new.ort_version and partner.ort_version != new.ort_version:
        return f" (onnxruntime {partner.ort_version} against {new.ort_version})"
    return ""


def _decisions(old_p50, new_p50, old_p95, new_p95, rules: GateRules, floor_pct: float = 0.0) -> dict[str, Decision]:
    return {"p50": decide(old_p50, new_p50, max(rules.latency_tolerance_pct, floor_pct)),
            "p95": decide(old_p95, new_p95, max(rules.p95_tolerance_pct, floor_pct))}


def _ab(new: ResultRow, partner: ResultRow, rules: GateRules) -> LatencyVerdict:
    """Unpaired (a runner without lockstep): the rank rule on per-process figures."""
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
