"""Paired figures from lockstep children: ratios of blocks that ran in the same cycle, a fraction of a second apart.

Two children of one lockstep session (harness.measure.lockstep) took block i in cycle i. The ratio of their
block medians in a cycle cancels the host's drift; the median of those ratios over a process's cycles
is that process pair's ratio, one observation per round (pyperf's unit stays the process).
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass

import numpy as np

from harness.results.measurement import Measurement


def _blocks(latencies: tuple[float, ...], sizes: tuple[int, ...]) -> list[tuple[float, ...]]:
    out, start = [], 0
    for size in sizes:
        out.append(latencies[start:start + size])
        start += size
    return out


def paired(a: Measurement, b: Measurement) -> bool:
    """Whether `a` and `b` came from the same lockstep sessions, process by process."""
    return (bool(a.per_process_block_sizes) and len(a.per_process_block_sizes) == len(b.per_process_block_sizes)
            and all(len(x) == len(y) and len(x) > 0 for x, y in zip(a.per_process_block_sizes, b.per_process_block_sizes)))


def cycle_ratios(a: Measurement, b: Measurement) -> list[list[float]]:
    """Per process pair: median(b's block) / median(a's block) for each cycle."""
    out = []
    for lat_a, lat_b, sizes_a, sizes_b in zip(a.per_process_latencies_ms, b.per_process_latencies_ms,
                                              a.per_process_block_sizes, b.per_process_block_sizes):
        out.append([statistics.median(y) / statistics.median(x)
                     for x, y in zip(_blocks(lat_a, sizes_a), _blocks(lat_b, sizes_b)) if x and y])
    return out


@dataclass(frozen=True)
class PairedRatios:
    """b against a, one ratio per process pair (round): p50 from paired cycles, p95 from each round's calls."""

    p50: tuple[float, ...]
    p95: tuple[float, ...]
    cycles: int  # paired cycles behind the p50 ratios

    def as_dict(self) -> dict:
        return {"p50_per_round": list(self.p50), "p95_per_round": list(self.p95), "cycles": self.cycles}


def paired_ratios(a: Measurement, b: Measurement) -> PairedRatios | None:
    """b / a per round, or None when the two were not measured in lockstep together."""
    if not paired(a, b):
        return None
    cycles = cycle_ratios(a, b)
    p95 = tuple(float(np.percentile(y, 95) / np.percentile(x, 95))
                for x, y in zip(a.per_process_latencies_ms, b.per_process_latencies_ms))
    return PairedRatios(tuple(float(statistics.median(c)) for c in cycles), p95, sum(len(c) for c in cycles))


def paired_speedup(fp32: Measurement, variant: Measurement) -> float | None:
    """fp32's time over the variant's, the median over every paired cycle of the run; None when not paired."""
    if not paired(fp32, variant):
        return None
    ratios = [r for process in cycle_ratios(variant, fp32) for r in process]
    return float(statistics.median(ratios)) if ratios else None


def spread_pct(values) -> float | None:
    """Half the p90/p10 range of positive values, in % of their median: how much a figure wanders."""
    values = [v for v in values if v]
    if len(values) < 2:
        return None
    p10, p50, p90 = np.percentile(values, [10, 50, 90])
    return float(50 * (p90 - p10) / p50)
