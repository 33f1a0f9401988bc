"""Budget verdicts: does a measured row fit the target's latency, memory and accuracy budgets?"""

from __future__ import annotations

from dataclasses import dataclass

from harness.measure.backends import NOT_ON_THIS_CPU
from harness.results import ResultRow
from harness.targets import TargetProfile

FITS = "fits"


def memory_figure(row: ResultRow, target: TargetProfile) -> float | None:
    """The memory quantity the target's budget names: model memory or whole-process peak RSS."""
    return row.model_mb if target.budgets.memory_quantity == "model" else row.peak_rss_mb


def verdict(row: ResultRow, target: TargetProfile) -> str:
    """'fits', or every budget the row breaks; a row that could not be measured says so."""
    reasons, budgets = [], target.budgets
    if row.status.startswith(("exceeded memory cap", "the server passed the memory cap")):
        return f"over memory ({row.status})"
    if row.status.startswith(NOT_ON_THIS_CPU):  # e.g. bf16 asked of a CPU without it: nothing to judge
        return NOT_ON_THIS_CPU
    if row.status != "ok":
        return "not measured"
    if budgets.p95_budget_ms and row.p95_ms is not None and row.p95_ms > budgets.p95_budget_ms:
        reasons.append(f"over latency (p95 {row.p95_ms:.1f} > {budgets.p95_budget_ms:g} ms)")
    memory = memory_figure(row, target)
    if budgets.memory_budget_mb and memory is not None and memory > budgets.memory_budget_mb:
        reasons.append(f"over memory ({budgets.memory_quantity} {memory:.1f} > {budgets.memory_budget_mb:g} MB)")
    if budgets.http_min_rate_per_s and row.held_rate_per_s is not None and row.held_rate_per_s < budgets.http_min_rate_per_s:
        reasons.append(f"below rate (held {row.held_rate_per_s:.2f} < {budgets.http_min_rate_per_s:g} requests/s)")
    if row.quality_drop_pts is not None and row.quality_drop_pts > budgets.max_miou_drop:
        reasons.append(f"over accuracy ({row.quality_metric} drop {row.quality_drop_pts:.2f} > {budgets.max_miou_drop:g} pts)")
    return "; ".join(reasons) or FITS


@dataclass(frozen=True)
class TargetSummary:
    rows: int
    fitting: int
    not_measured: int
    fitting_names: tuple[str, ...]  # "model variant (serving)" of each row that fits
    not_on_this_cpu: int = 0

    def line(self, target: TargetProfile) -> str:
        over = self.rows - self.fitting - self.not_measured - self.not_on_this_cpu
        text = f"target {target.name}: {self.fitting} of {self.rows} rows fit every budget"
        if over:
            text += f", {over} over a budget"
        if self.not_measured:
            text += f", {self.not_measured} not measured"
        if self.not_on_this_cpu:
            text += f", {self.not_on_this_cpu} not possible on this CPU"
        if self.fitting_names:
            text += f" — fits: {', '.join(self.fitting_names)}"
        return text


def summarize(rows: list[ResultRow]) -> TargetSummary:
    fits = [r for r in rows if r.verdict == FITS]
    return TargetSummary(len(rows), len(fits), sum(r.verdict == "not measured" for r in rows),
                         tuple(f"{r.model} {r.variant}{_backend(r)} ({r.serving})" for r in fits),
                         sum(r.verdict == NOT_ON_THIS_CPU for r in rows))


def _backend(row: ResultRow) -> str:
    return "" if row.on_reference_backend else f" {row.backend}"
