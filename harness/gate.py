"""The gate: compare a run with the committed record (results/<target>.csv) and decide pass or fail.

A row fails when it breaks a budget, could not be measured, or regressed against its recorded row.
Deterministic figures (file size, parameters, quality (mIoU or top-1), parity) compare tightly; model memory within an
absolute tolerance; latency only beyond both a relative threshold and the noise the runs measured,
and only between comparable machines (see `latency_baseline`); a slowdown that the reference workload
measured in the same run shows too is the machine's, and is noted rather than failed.
"""

from __future__ import annotations

from dataclasses import dataclass

from harness.errors import HarnessError
from harness.results import SCHEMA_VERSION, row_key
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


def _num(record: dict[str, str], name: str) -> float | None:
    value = record.get(name, "")
    return float(value) if value not in ("", None) else None


def check_schema(records: list[dict[str, str]], source: str) -> None:
    versions = {r.get("schema_version") for r in records}
    if versions - {str(SCHEMA_VERSION)}:
        other = sorted(v or "none" for v in versions - {str(SCHEMA_VERSION)})[0]
        raise HarnessError(f"{source} has schema version {other}; this harness writes {SCHEMA_VERSION}: "
                           f"re-record it with harness bench --update")


def latency_baseline(new: dict[str, str], old: dict[str, str]) -> tuple[float | None, str | None]:
    """The recorded p50 to compare with, in this machine's terms, and a note; None when not comparable.

    Same CPU, core count, ISA, ORT version and threads: compare directly. Same ISA, ORT and threads
    on another CPU: scale the recorded p50 by the reference workload measured in each run. Anything
    else: not comparable, never failed.
    """
    old_p50 = _num(old, "p50_ms")
    if old_p50 is None:
        return None, "latency: no recorded p50"
    if new["threads"] != old["threads"]:
        return None, f"latency not comparable: recorded with {old['threads']} thread(s), measured with {new['threads']}"
    if all(new[f] == old[f] for f in MACHINE_FIELDS):
        return old_p50, None
    if new["cpu_isa"] == old["cpu_isa"] and new["ort_version"] == old["ort_version"]:
        new_ref, old_ref = _num(new, "reference_ms"), _num(old, "reference_ms")
        if new_ref and old_ref:
            scale = new_ref / old_ref
            return old_p50 * scale, f"latency scaled by the reference workload ({old['cpu_model']} → {new['cpu_model']}: x{scale:.2f})"
    return None, (f"latency not comparable: recorded on {old['cpu_model']} ({old['cpu_isa']}, ORT {old['ort_version']}), "
                  f"measured on {new['cpu_model']} ({new['cpu_isa']}, ORT {new['ort_version']})")


def check_row(new: dict[str, str], old: dict[str, str] | None, target: TargetProfile) -> RowCheck:
    reasons, notes = [], []
    if not target.ships(new["variant"]):
        notes.append("comparison only: budgets not gated (not in the target's ship list)")
    elif new["status"] != "ok":
        reasons.append(f"not measured: {new['status']}")
    elif new["verdict"] != "fits":
        reasons.append(f"budget: {new['verdict']}")
    if old is None:
        return RowCheck(row_key(new), FAIL if reasons else NEW, tuple(reasons), tuple(notes) + ("no recorded row",))

    def grew(name: str, label: str, unit: str, limit: float) -> None:
        a, b = _num(old, name), _num(new, name)
        if a is not None and b is not None and b > limit:
            reasons.append(f"{label} {a:g} → {b:g} {unit} (+{b - a:.3g})")

    file_mb = _num(old, "file_mb")
    if file_mb is not None:
        grew("file_mb", "file", "MB", file_mb * (1 + target.gate_file_tolerance_pct / 100))
    params = _num(old, "params_in_graph")
    if params is not None:
        grew("params_in_graph", "parameters", "", params)
    model_mb = _num(old, "model_mb")
    if model_mb is not None:
        grew("model_mb", "model memory", "MB", model_mb + target.gate_model_mb_tolerance)
    for name, label, tolerance in (("quality_pct", new.get("quality_metric") or "quality", target.gate_miou_tolerance_pts),
                                   ("parity_agreement_pct", "parity agreement", PARITY_TOLERANCE_PTS)):
        a, b = _num(old, name), _num(new, name)
        if a is not None and b is not None and b < a - tolerance:
            reasons.append(f"{label} {a:.2f} → {b:.2f} % ({b - a:+.2f} pts)")

    baseline, note = latency_baseline(new, old)
    if note:
        notes.append(note)
    new_p50 = _num(new, "p50_ms")
    if baseline is not None and new_p50 is not None:
        allowed = _allowed_ms(new, old, new_p50, baseline, target)
        if new_p50 - baseline > allowed:
            slower = (f"p50 {baseline:.2f} → {new_p50:.2f} ms (+{100 * (new_p50 / baseline - 1):.0f} %, "
                      f"beyond {allowed:.2f} ms of tolerance and measured noise)")
            machine = _machine_slowdown(new, old)
            scaled = baseline * machine if machine else None
            if scaled is not None and new_p50 - scaled <= _allowed_ms(new, old, new_p50, scaled, target):
                # A shared host that slows down slows the fixed reference workload too; a heavier model does not.
                notes.append(f"{slower}, but the reference workload measured in the same run was x{machine:.2f} "
                             f"slower too: the machine, not the model")
            else:
                reasons.append(slower)
    return RowCheck(row_key(new), FAIL if reasons else PASS, tuple(reasons), tuple(notes))


def _allowed_ms(new: dict[str, str], old: dict[str, str], new_p50: float, baseline: float, target: TargetProfile) -> float:
    """How much slower a p50 may be: the relative tolerance, or the runs' own measured noise if larger."""
    spread_ms = max(_num(r, "latency_stdev_pct") or 0.0 for r in (new, old)) / 100 * max(new_p50, baseline)
    return max(baseline * target.gate_latency_tolerance_pct / 100, target.gate_latency_noise_sigmas * spread_ms)


def _machine_slowdown(new: dict[str, str], old: dict[str, str]) -> float | None:
    """How much slower the reference workload ran now than when the record was made (None if unknown)."""
    new_ref, old_ref = _num(new, "reference_ms"), _num(old, "reference_ms")
    return new_ref / old_ref if new_ref and old_ref else None


def run_gate(new_records: list[dict[str, str]], recorded: list[dict[str, str]], target: TargetProfile) -> GateReport:
    by_key = {row_key(r): r for r in recorded}
    checks = tuple(check_row(r, by_key.get(row_key(r)), target) for r in new_records)
    produced = {row_key(r) for r in new_records}
    models = {r["model"] for r in new_records}
    missing = tuple(sorted(k for k in by_key if k[0] in models and k not in produced))
    return GateReport(checks, missing)
