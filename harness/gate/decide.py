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
SLOWER, FASTER, NO_CHANGE, UNKNOWN, UNDECIDED = "slower", "faster", "no change", "unknown", "undecided"
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


# Two-sided 95 % quantiles of Student's t by degrees of freedom (1..30); beyond, the normal's.
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
         2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042)


@dataclass(frozen=True)
class PairedDecision:
    """b against a from paired rounds: the ratio, its 95 % interval, and what it lets the gate say."""

    outcome: str  # slower, faster, no change, undecided (the interval spans the minimum effect), unknown
    ratio: float | None  # geometric mean of the rounds' paired ratios
    low: float | None
    high: float | None
    min_effect_pct: float
    rounds: tuple[float, ...]
    chained_at: int = 0  # a chained ratio (decide_chained): rounds[:chained_at] are a / b's, the rest b / c's

    @property
    def noise_pct(self) -> float | None:
        """Half the interval's width, in %: the smallest change this comparison could tell apart."""
        return None if self.low is None else 100 * (math.sqrt(self.high / self.low) - 1)

    def describe(self, quantity: str) -> str:
        if self.outcome == UNKNOWN:
            return f"{quantity}: not decided ({len(self.rounds)} paired rounds; need 2)"
        rounds = (f"{self.chained_at} + {len(self.rounds) - self.chained_at} paired rounds of two runs, chained"
                  if self.chained_at else f"{len(self.rounds)} paired rounds")
        text = (f"{quantity} x{self.ratio:.3f} (95 % interval x{self.low:.3f}-x{self.high:.3f}, {rounds}, minimum "
                f"effect {self.min_effect_pct:g} %)")
        if self.outcome == UNDECIDED:
            return f"{text}: undecided: host too noisy (±{self.noise_pct:.1f} %)"
        return f"{text}: {self.outcome}"

    def as_dict(self) -> dict:
        return {"outcome": self.outcome, "ratio": self.ratio, "low": self.low, "high": self.high,
                "noise_pct": self.noise_pct, "min_effect_pct": self.min_effect_pct, "paired_rounds": list(self.rounds)}


def decide_paired(ratios, min_effect_pct: float) -> PairedDecision:
    """Slower only when the interval excludes 1 and the ratio reaches the minimum effect; no change only when
    the interval excludes the minimum effect both ways; otherwise undecided (never a silent pass or fail)."""
    ratios = tuple(float(r) for r in ratios if r and r > 0)
    if len(ratios) < 2:
        return PairedDecision(UNKNOWN, None, None, None, min_effect_pct, ratios)
    logs = [math.log(r) for r in ratios]
    half = _T975[min(len(logs) - 1, len(_T975)) - 1] * statistics.stdev(logs) / math.sqrt(len(logs))
    return _outcome(statistics.fmean(logs), half, min_effect_pct, ratios)


def decide_chained(first, second, min_effect_pct: float) -> PairedDecision:
    """a / c from the paired rounds of a / b and of b / c (two runs): the product of their geometric means, its
    interval from both rounds' variances, with the fewer rounds' degrees of freedom (the wider, never narrower)."""
    sides = [[math.log(r) for r in rounds if r and r > 0] for rounds in (first, second)]
    if min(len(s) for s in sides) < 2:
        return PairedDecision(UNKNOWN, None, None, None, min_effect_pct, ())
    error = math.sqrt(sum(statistics.variance(s) / len(s) for s in sides))
    half = _T975[min(min(len(s) for s in sides) - 1, len(_T975)) - 1] * error
    rounds = tuple(math.exp(v) for s in sides for v in s)
    return _outcome(sum(statistics.fmean(s) for s in sides), half, min_effect_pct, rounds, len(sides[0]))


def _outcome(centre: float, half: float, min_effect_pct: float, ratios: tuple, chained_at: int = 0) -> PairedDecision:
    ratio, low, high = math.exp(centre), math.exp(centre - half), math.exp(centre + half)
    threshold = 1 + min_effect_pct / 100
    if low > 1 and ratio >= threshold:
        outcome = SLOWER
    elif high < 1 and ratio <= 1 / threshold:
        outcome = FASTER
    elif high < threshold and low > 1 / threshold:
        outcome = NO_CHANGE
    else:
        outcome = UNDECIDED
    return PairedDecision(outcome, ratio, low, high, min_effect_pct, ratios, chained_at)
