"""The gate: compare a run with the committed record (results/<target>.csv) and decide pass or fail.

A row fails when it breaks a budget, could not be measured, or regressed against its recorded row.
Deterministic figures (file size, parameters, quality (mIoU or top-1), parity) compare tightly; model memory within an
absolute tolerance; latency only beyond both a relative threshold and the noise the runs measured,
and only between comparable machines (see `latency_baseline`); a slowdown that the reference workload
measured in the same run shows too is the machine's, and is noted rather than failed.
"""

from __future__ import annotations

from dataclasses import dataclass

from harness.results import ResultRow, row_key
from harness.targets import TargetProfile

PASS, FAIL, NEW = "pass", "fail", "new"
PARITY_TOLERANCE_PTS = 0.05
MACHINE_FIELDS = ("cpu_model", "cpu_count", "cpu_isa", "ort_version")


@dataclass(frozen=True)
class RowCheck:
    key: tuple[str, str, str]
    outcome: str  # pass, fail, or new (no recorded row to compare with)
    reasons: tuple[str, ...]  # why it failed
    notes: tuple[str, ...]  # what a reader should know, e.g. latency not comparable


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

    def summary(self, target: str) -> str:
        counts = {o: sum(c.outcome == o for c in self.checks) for o in (PASS, FAIL, NEW)}
        text = (f"gate {target}: {'FAILED' if self.failed else 'passed'} — {counts[FAIL]} of {len(self.checks)} rows failed, "
                f"{counts[PASS]} passed")
        if counts[NEW]:
            text += f", {counts[NEW]} new (no record)"
        if self.missing:
            text += f", {len(self.missing)} recorded rows not produced by this run"
        return text


def latency_baseline(new: ResultRow, old: ResultRow) -> tuple[float | None, str | None]:
    """The recorded p50 to compare with, in this machine's terms, and a note; None when not comparable.

    Same CPU, core count, ISA, ORT version and threads: compare directly. Same ISA, ORT and threads
    on another CPU: scale the recorded p50 by the reference workload measured in each run. Anything
    else: not comparable, never failed.
    """
    old_p50 = old.p50_ms
    if old_p50 is None:
        return None, "latency: no recorded p50"
    if new.threads != old.threads:
        return None, f"latency not comparable: recorded with {old.threads} thread(s), measured with {new.threads}"
    if all(getattr(new, f) == getattr(old, f) for f in MACHINE_FIELDS):
        return old_p50, None
    if new.cpu_isa == old.cpu_isa and new.ort_version == old.ort_version:
        if new.reference_ms and old.reference_ms:
            scale = new.reference_ms / old.reference_ms
            return old_p50 * scale, f"latency scaled by the reference workload ({old.cpu_model} → {new.cpu_model}: x{scale:.2f})"
    return None, (f"latency not comparable: recorded on {old.cpu_model} ({old.cpu_isa}, ORT {old.ort_version}), "
                  f"measured on {new.cpu_model} ({new.cpu_isa}, ORT {new.ort_version})")


def check_row(new: ResultRow, old: ResultRow | None, target: TargetProfile) -> RowCheck:
    reasons, notes = [], []
    if not target.budgets.ships(new.variant):
        notes.append("comparison only: budgets not gated (not in the target's ship list)")
    elif new.status != "ok":
        reasons.append(f"not measured: {new.status}")
    elif new.verdict != "fits":
        reasons.append(f"budget: {new.verdict}")
    if old is None:
        return RowCheck(row_key(new), FAIL if reasons else NEW, tuple(reasons), tuple(notes) + ("no recorded row",))
    reasons += _deterministic_regressions(new, old, target)
    reason, note = _latency_regression(new, old, target)
    reasons += reason
    notes += note
    return RowCheck(row_key(new), FAIL if reasons else PASS, tuple(reasons), tuple(notes))


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


def _latency_regression(new: ResultRow, old: ResultRow, target: TargetProfile) -> tuple[list[str], list[str]]:
    """p50 against the record in this machine's terms: (reasons to fail, notes)."""
    baseline, note = latency_baseline(new, old)
    notes = [note] if note else []
    if baseline is None or new.p50_ms is None:
        return [], notes
    allowed = _allowed_ms(new, old, new.p50_ms, baseline, target)
    if new.p50_ms - baseline <= allowed:
        return [], notes
    slower = (f"p50 {baseline:.2f} → {new.p50_ms:.2f} ms (+{100 * (new.p50_ms / baseline - 1):.0f} %, "
              f"beyond {allowed:.2f} ms of tolerance and measured noise)")
    machine = _machine_slowdown(new, old)
    scaled = baseline * machine if machine else None
    if scaled is not None and new.p50_ms - scaled <= _allowed_ms(new, old, new.p50_ms, scaled, target):
        # A shared host that slows down slows the fixed reference workload too; a heavier model does not.
        return [], notes + [f"{slower}, but the reference workload measured in the same run was x{machine:.2f} "
                            f"slower too: the machine, not the model"]
    return [slower], notes


def _allowed_ms(new: ResultRow, old: ResultRow, new_p50: float, baseline: float, target: TargetProfile) -> float:
    """How much slower a p50 may be: the relative tolerance, or the runs' own measured noise if larger."""
    spread_ms = max(r.latency_stdev_pct or 0.0 for r in (new, old)) / 100 * max(new_p50, baseline)
    return max(baseline * target.gate.latency_tolerance_pct / 100, target.gate.latency_noise_sigmas * spread_ms)


def _machine_slowdown(new: ResultRow, old: ResultRow) -> float | None:
    """How much slower the reference workload ran now than when the record was made (None if unknown)."""
    return new.reference_ms / old.reference_ms if new.reference_ms and old.reference_ms else None


def run_gate(new_rows: list[ResultRow], recorded: list[ResultRow], target: TargetProfile) -> GateReport:
    by_key = {row_key(r): r for r in recorded}
    checks = tuple(check_row(r, by_key.get(row_key(r)), target) for r in new_rows)
    produced = {row_key(r) for r in new_rows}
    models = {r.model for r in new_rows}
    missing = tuple(sorted(k for k in by_key if k[0] in models and k not in produced))
    return GateReport(checks, missing)
