"""The latency rule: is one set of per-process figures slower than another, beyond noise and a minimum effect?

pyperf's unit: a child process's median is one observation; single calls inside one process are
correlated and are never treated as independent samples. Two sides of per-process values are
"slower" when the ratio of their medians reaches the minimum effect AND a one-sided exact
Mann-Whitney rank test says the new side is larger (p <= ALPHA). With 3 processes per side that
takes complete separation (p = 0.05); with 5, at most one overlap pair. The tolerance never grows
with the run's own noise: a noisy run that is consistently slower still fails.
"""

from __future__ import annotations

import itertools
import math
import statistics
from dataclasses import dataclass

ALPHA = 0.05
SLOWER, FASTER, NO_CHANGE, UNKNOWN = "slower", "faster", "no change", "unknown"
EXACT_LIMIT = 200_000  # combinations enumerated exactly; beyond, the normal approximation
UNSTABLE_SPREAD_PCT = 10.0  # pyperf: stdev at or above 10 % of the mean, here over per-process values


@dataclass(frozen=True)
class Decision:
    outcome: str  # slower, faster, no change, unknown (too few processes on a side)
    ratio: float | None  # median(new) / median(old)
    p_slower: float | None  # one-sided: the chance of ranks this high if nothing changed
    p_faster: float | None
    min_effect_pct: float
    old: tuple[float, ...]
    new: tuple[float, ...]

    def describe(self, quantity: str) -> str:
        if self.outcome == UNKNOWN:
            return f"{quantity}: not decided ({len(self.old)} vs {len(self.new)} processes; need 3 per side)"
        if self.p_slower is None:  # one figure per side: a ratio, no test
            return (f"{quantity} {self.old[0]:.2f} → {self.new[0]:.2f} ms (x{self.ratio:.2f}, minimum effect "
                    f"{self.min_effect_pct:g} %): {self.outcome}")
        return (f"{quantity} {statistics.median(self.old):.2f} → {statistics.median(self.new):.2f} ms "
                f"(x{self.ratio:.2f}, {len(self.old)} vs {len(self.new)} processes, rank test p={self.p_slower:.3f} "
                f"slower / {self.p_faster:.3f} faster, minimum effect {self.min_effect_pct:g} %): {self.outcome}")

    def as_dict(self) -> dict:
        return {"outcome": self.outcome, "ratio": self.ratio, "p_slower": self.p_slower, "p_faster": self.p_faster,
                "min_effect_pct": self.min_effect_pct, "old": list(self.old), "new": list(self.new)}


def u_statistic(new, old) -> float:
    """Mann-Whitney U of `new` over `old`: pairs where new is larger, ties counting half."""
    return sum(1.0 if n > o else 0.5 if n == o else 0.0 for n in new for o in old)


def p_greater(new, old) -> float:
    """One-sided exact p-value that `new` tends to be larger than `old` (permutations of the pooled values)."""
    pooled, k = list(new) + list(old), len(new)
    observed = u_statistic(new, old)
    total = math.comb(len(pooled), k)
    if total <= EXACT_LIMIT:
        at_least = 0
        for chosen in itertools.combinations(range(len(pooled)), k):
            picked = set(chosen)
            a = [pooled[i] for i in chosen]
            b = [pooled[i] for i in range(len(pooled)) if i not in picked]
            at_least += u_statistic(a, b) >= observed - 1e-9
        return at_least / total
    n1, n2 = len(new), len(old)
    mean, sd = n1 * n2 / 2, math.sqrt(n1 * n2 * (n1 + n2 + 1) / 12)
    return 0.5 * math.erfc((observed - 0.5 - mean) / sd / math.sqrt(2))


def decide(old, new, min_effect_pct: float, alpha: float = ALPHA) -> Decision:
    """slower / faster / no change for per-process values of the same quantity, old against new."""
    old, new = tuple(float(v) for v in old), tuple(float(v) for v in new)
    if len(old) < 3 or len(new) < 3:
        return Decision(UNKNOWN, None, None, None, min_effect_pct, old, new)
    ratio = statistics.median(new) / statistics.median(old)
    p_slow, p_fast = p_greater(new, old), p_greater(old, new)
    threshold = 1 + min_effect_pct / 100
    outcome = NO_CHANGE
    if ratio >= threshold and p_slow <= alpha:
        outcome = SLOWER
    elif ratio <= 1 / threshold and p_fast <= alpha:
        outcome = FASTER
    return Decision(outcome, ratio, p_slow, p_fast, min_effect_pct, old, new)


def unstable(values) -> bool:
    """pyperf's rule on per-process values: their stdev is 10 % of their mean or more."""
    values = list(values)
    if len(values) < 2:
        return False
    mean = statistics.fmean(values)
    return mean > 0 and 100 * statistics.stdev(values) / mean >= UNSTABLE_SPREAD_PCT
