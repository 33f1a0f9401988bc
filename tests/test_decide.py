"""The latency rule on per-process figures: a clear slowdown fails, noise passes, noise does not buy tolerance."""

import pytest

from harness.gate.decide import FASTER, NO_CHANGE, SLOWER, UNKNOWN, decide, p_greater, unstable


def test_exact_rank_test_matches_hand_counts():
    assert p_greater([4, 5, 6], [1, 2, 3]) == pytest.approx(1 / 20)  # complete separation, 3 vs 3
    assert p_greater([1, 2, 3], [4, 5, 6]) == pytest.approx(1.0)
    assert p_greater([6, 7, 8, 9, 10], [1, 2, 3, 4, 5]) == pytest.approx(1 / 252)


def test_a_clear_slowdown_is_slower():
    old = [10.0, 10.2, 9.9, 10.1, 10.0]
    decision = decide(old, [12.1, 12.3, 11.9, 12.2, 12.0], min_effect_pct=10)
    assert decision.outcome == SLOWER and decision.ratio == pytest.approx(1.21, abs=0.005)
    assert decide(old, [8.0, 8.1, 7.9, 8.2, 8.0], min_effect_pct=10).outcome == FASTER


def test_noise_and_small_effects_pass():
    old = [10.0, 10.4, 9.7, 10.2, 9.9]
    assert decide(old, [10.1, 9.8, 10.3, 10.0, 10.2], 10).outcome == NO_CHANGE  # same distribution
    assert decide(old, [10.6, 10.7, 10.5, 10.8, 10.6], 10).outcome == NO_CHANGE  # real but under 10 %


def test_a_noisy_new_run_does_not_widen_its_own_tolerance():
    """The old rule allowed 3 x the larger per-call stdev: a noisy run excused its own +30 %."""
    old = [10.0, 10.1, 9.9]
    noisy_and_slower = [13.0, 16.0, 12.5]  # per-process spread 13 %, every process slower
    decision = decide(old, noisy_and_slower, 10)
    assert unstable(noisy_and_slower) and decision.outcome == SLOWER


def test_too_few_processes_are_not_decided():
    assert decide([10.0, 10.1], [20.0, 20.1], 10).outcome == UNKNOWN
