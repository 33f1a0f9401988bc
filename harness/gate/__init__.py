"""The gate: compare a run with the committed record (results/<target>.csv) and decide pass or fail.

A shipped row fails when it breaks a budget, could not be measured, or regressed against its recorded
row. Deterministic figures (file size, parameters, quality (mIoU or top-1), parity) compare tightly;
model memory within an absolute tolerance; latency only on evidence from this run: the A/B of a changed
configuration against its recorded one (harness.gate.latency). Comparison-only rows (not in the target's
`ship`) never fail: what would have failed them becomes a note. `strict` also fails a row whose latency
could not be gated or stayed undecided.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Callable

from harness.gate.latency import AB, NOT_GATED, RECORD, UNCHANGED, LatencyVerdict, judge
from harness.measure.backends import NOT_ON_THIS_CPU
from harness.results import ResultRow, RowKey, damaged_fields
from harness.targets import TargetProfile

PASS, FAIL, NEW = "pass", "fail", "new"


@dataclass(frozen=True)
class RowCheck:
    key: RowKey
    outcome: str  # pass, fail, or new (no recorded row to compare with)
    reasons: tuple[str, ...]  # why it failed
    notes: tuple[str, ...]  # what a reader should know, e.g. latency not gated
    latency: LatencyVerdict | None = None
    serving_label: str = ""  # how the row's serving mode reads ("batch of 10"): text only, never a key

    @property
    def shown(self) -> tuple[str, str, str, str]:
        """model, variant, serving as it reads, backend."""
        return self.key.model, self.key.variant, self.serving_label or self.key.serving, self.key.backend

    def as_dict(self) -> dict:
        model, variant, serving, backend = self.shown
        return {"model": model, "variant": variant, "serving": serving, "serving_mode": self.key.serving,
                "backend": backend, "outcome": self.outcome, "reasons": list(self.reasons), "notes": list(self.notes),
                "latency": self.latency.as_dict() if self.latency else None}


@dataclass(frozen=True)
class GateReport:
    checks: tuple[RowCheck, ...]
    missing: tuple[RowKey, ...]  # recorded rows of this run's models that the run did not produce

    @property
    def failed(self) -> list[RowCheck]:
        return [c for c in self.checks if c.outcome == FAIL]

    @property
    def passed(self) -> bool:
        return not self.failed

    host_noise: str = ""  # how much the host wandered in this run, in words
    not_looked_at: tuple[RowKey, ...] = ()  # recorded rows a narrowed run (--model ...) left out
    narrowed: str = ""  # the command line's filters, in words
    labels: dict = field(default_factory=dict)  # RowKey -> its serving label, for the rows shown by key only

    def shown(self, key: RowKey) -> tuple[str, str, str, str]:
        """A recorded row's key as it reads: model, variant, serving label, backend."""
        return key.model, key.variant, self.labels.get(key, key.serving), key.backend

    def latency_counts(self) -> dict[str, int]:
        methods = [c.latency.method for c in self.checks if c.latency is not None]
        counts = {m: methods.count(m) for m in (AB, UNCHANGED, RECORD, NOT_GATED)}
        counts["undecided"] = sum(1 for c in self.checks if c.latency is not None and c.latency.undecided)
        return counts

    def summary(self, target: str) -> str:
        counts = {o: sum(c.outcome == o for c in self.checks) for o in (PASS, FAIL, NEW)}
        text = (f"gate {target}: {'FAILED' if self.failed else 'passed'} — {counts[FAIL]} of {len(self.checks)} rows failed, "
                f"{counts[PASS]} passed")
        if counts[NEW]:
            text += f", {counts[NEW]} new (no record)"
        if self.missing:
            text += f", {len(self.missing)} recorded rows not produced by this run"
        if self.narrowed:
            text += f", {len(self.not_looked_at)} recorded rows not looked at ({self.narrowed})"
        latency = self.latency_counts()
        text += f"; latency: {latency[AB]} rows by A/B in this run"
        if latency["undecided"]:
            text += f" ({latency['undecided']} undecided: host too noisy)"
        text += f", {latency[UNCHANGED]} unchanged since the record (reported, not gated)"
        if latency[RECORD]:
            text += f", {latency[RECORD]} against the record (opted in)"
        text += f", {latency[NOT_GATED]} not gated"
        if self.host_noise:
            text += f"; {self.host_noise}"
        return text

    def to_json(self) -> str:
        return json.dumps({"passed": self.passed, "summary_counts": self.latency_counts(), "host_noise": self.host_noise,
                           "rows": [c.as_dict() for c in self.checks],
                           "missing": [list(self.shown(key)) for key in self.missing],
                           "not_looked_at": [list(self.shown(key)) for key in self.not_looked_at], "narrowed": self.narrowed},
                          indent=1)


def check_row(new: ResultRow, old: ResultRow | None, target: TargetProfile, partner: ResultRow | None = None,
              strict: bool = False, paired=None, explained: str = "") -> RowCheck:
    """`explained`: why this row's file differs from the record without a change (the recorded code makes it here)."""
    reasons, notes = [], []
    damage = damaged_fields(old) if old is not None else []
    if damage:  # a hand-edited or broken record row: nothing in it can be trusted for a comparison
        reasons.append(f"the recorded row is damaged ({', '.join(damage)}): not compared; restore the record from git "
                       f"or re-record with harness bench --update")
        old = None
    if new.status.startswith(NOT_ON_THIS_CPU):  # this machine cannot run it (bf16 without bf16): nothing to gate
        return RowCheck(new.key, PASS, (), (new.status,), judge(new, None, None, target.gate, None), new.serving)
    if new.status != "ok":
        reasons.append(f"not measured: {new.status}")
    elif new.verdict != "fits":
        reasons.append(f"budget: {new.verdict}")
    latency = judge(new, dataclasses.replace(old, onnx_sha256=new.onnx_sha256) if old and explained else old,
                    partner, target.gate, paired)
    reasons += latency.reasons
    notes += latency.notes
    if new.served and old is not None and new.model_mb is not None and old.model_mb is not None:
        notes.append(f"memory {old.model_mb:.1f} → {new.model_mb:.1f} MB over the server's floor: a service's peak depends "
                     f"on the queue its load built (each request in flight holds its image), so it is judged against "
                     f"the budget, not the record")
    if strict and new.status == "ok" and latency.method == NOT_GATED:
        reasons.append("latency not gated (--strict): " + (latency.notes[0] if latency.notes else "no baseline"))
    if strict and latency.undecided:
        reasons.append("latency undecided (--strict): the host was too noisy to tell the minimum effect apart")
    if old is not None and explained:
        notes += [explained, *(f"against the record (not a change): {r}" for r in deterministic_regressions(new, old, target))]
    elif partner is not None and partner.status == "ok":  # the recorded configuration, measured here and now
        reasons += [f"{r} (against {partner.model}, this run)" for r in deterministic_regressions(new, partner, target)]
        if old is not None:
            notes += [f"against the record, for reference: {r}" for r in deterministic_regressions(new, old, target)]
    elif old is not None:
        reasons += deterministic_regressions(new, old, target)
    if not target.budgets.ships(new.variant):  # measured beside the shipped variants, for comparison: never fails
        notes = ["comparison only (not in the target's ship list): never fails the gate",
                 *(f"would fail a shipped row: {r}" for r in reasons), *notes]
        reasons = []
    if old is None and not damage:
        outcome = FAIL if reasons else (PASS if latency.gated else NEW)
        return RowCheck(new.key, outcome, tuple(reasons), tuple(notes) + ("no recorded row",), latency, new.serving)
    return RowCheck(new.key, FAIL if reasons else PASS, tuple(reasons), tuple(notes), latency, new.serving)


def deterministic_regressions(new: ResultRow, old: ResultRow, target: TargetProfile) -> list[str]:
    """File size, parameters, model memory, quality and parity against the record, each as its part compares it."""
    rules = target.gate
    reasons = new.artifact.regressions(old.artifact, rules.file_tolerance_pct)
    # a batch of another size holds other activations: memory is the budget's to judge then, not the record's
    if not new.served and old.images_at_once == new.images_at_once:
        reasons += new.memory.regressions(old.memory, rules.model_mb_tolerance)
    return reasons + new.quality.regressions(old.quality, rules.quality_tolerance_pts)


def _with_drift(check: RowCheck, new: ResultRow, target: TargetProfile, baseline: ResultRow, paired) -> RowCheck:
    """A shipped row slower than its gate_baseline version by the minimum effect fails, with both figures."""
    drift = judge(new, None, baseline, target.gate, paired)
    p50 = check.latency.decisions.get("p50") if check.latency else None
    record = (f"x{p50['ratio']:.3f} against the record, {p50['outcome']}" if p50 and p50.get("ratio") else
              f"against the record: {check.latency.method if check.latency else 'not gated'}")
    reasons = tuple(f"drift since gate_baseline {target.gate.baseline}: {r} ({record})" for r in drift.reasons)
    notes = tuple(f"drift guard ({target.gate.baseline}): {n}" for n in drift.notes)
    if not target.budgets.ships(new.variant):
        reasons, notes = (), notes + tuple(f"would fail a shipped row: {r}" for r in reasons)
    return dataclasses.replace(check, outcome=FAIL if reasons else check.outcome, reasons=check.reasons + reasons,
                               notes=check.notes + notes)


@dataclass(frozen=True)
class Evidence:
    """What a run measured beside its rows that the gate weighs: each changed model's recorded version, measured in
    the same run, with the paired ratios of their lockstep blocks."""

    partner_rows: dict = field(default_factory=dict)  # RowKey -> the recorded version's row, keyed like this run's
    ab_notes: dict = field(default_factory=dict)  # model -> why it had no A/B partner, or how it was chosen
    paired: dict = field(default_factory=dict)  # RowKey -> PairedRatios against its A/B partner
    host_noise: str = ""  # how much the host wandered during the run, in words
    explained: dict = field(default_factory=dict)  # (model, variant) -> why its file's difference is not a change
    drift: dict = field(default_factory=dict)  # RowKey -> (the gate_baseline version's row, PairedRatios against it)
    drift_notes: dict = field(default_factory=dict)  # model -> how the gate_baseline was measured, or why not


@dataclass(frozen=True)
class Scope:
    """How strictly, and over which recorded rows, a run is judged."""

    strict: bool = False  # also fail a row whose latency could not be gated or stayed undecided
    lost: frozenset = frozenset()  # keys in the committed record (git HEAD) missing from the record file
    looked_at: Callable[[RowKey], bool] | None = None  # a narrowed run: the recorded rows it meant to measure
    narrowed: str = ""  # the command line's filters, in words


def run_gate(new_rows: list[ResultRow], recorded: list[ResultRow], target: TargetProfile,
             evidence: Evidence = Evidence(), scope: Scope = Scope()) -> GateReport:
    """Every row of the run against its recorded row, and against its A/B partner (keyed like the row) if any."""
    partners, model_notes, paired = evidence.partner_rows, evidence.ab_notes, evidence.paired
    strict, lost, looked_at, narrowed = scope.strict, scope.lost, scope.looked_at, scope.narrowed
    by_key = {r.key: r for r in recorded}
    checks = []
    for r in new_rows:
        check = check_row(r, by_key.get(r.key), target, partners.get(r.key), strict, paired.get(r.key),
                          evidence.explained.get((r.model, r.variant), ""))
        if r.model in model_notes:
            check = dataclasses.replace(check, notes=check.notes + (f"A/B: {model_notes[r.model]}",))
        if r.key in evidence.drift:
            check = _with_drift(check, r, target, *evidence.drift[r.key])
        if r.model in evidence.drift_notes:
            check = dataclasses.replace(check, notes=check.notes + (f"drift guard: {evidence.drift_notes[r.model]}",))
        if r.key in lost and r.key not in by_key:  # a damaged record must not turn its rows into "new" ones
            check = dataclasses.replace(check, outcome=FAIL, reasons=check.reasons + (
                "this row is in the committed record (git HEAD) but missing from the record file: restore the file "
                "from git, or re-record with --update",))
        checks.append(check)
    checks = tuple(checks)
    produced = {r.key for r in new_rows}
    models = {r.model for r in new_rows}
    wanted = looked_at or (lambda key: True)
    missing = tuple(sorted(k for k in by_key if k[0] in models and k not in produced and wanted(k)))
    skipped = tuple(sorted(k for k in by_key if k not in produced and (not wanted(k) or k[0] not in models)))
    return GateReport(checks, missing, evidence.host_noise, skipped if narrowed else (), narrowed,
                      {r.key: r.serving for r in recorded})
