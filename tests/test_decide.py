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


def test_a_chained_ratio_is_the_product_with_an_interval_wider_than_either_side():
    from harness.gate.decide import decide_chained, decide_paired

    a_b, b_c = (0.93, 0.94, 0.935), (0.92, 0.93, 0.925)  # two runs: a/b, then b/c
    chained = decide_chained(a_b, b_c, 10)
    assert chained.ratio == pytest.approx(0.935 * 0.925, rel=0.002) and chained.outcome == FASTER
    for side in (decide_paired(a_b, 10), decide_paired(b_c, 10)):
        assert chained.high / chained.low > side.high / side.low  # never narrower than a side alone
    assert "3 + 3 paired rounds of two runs, chained" in chained.describe("p50")
    assert decide_chained((1.01, 0.99, 1.0), (1.0, 1.01, 0.995), 10).outcome == NO_CHANGE
    assert decide_chained((1.2, 1.3), (0.7, 0.9), 10).outcome == "undecided"  # two wide sides: no verdict
    assert decide_chained((1.1,), (1.0, 1.0), 10).outcome == UNKNOWN
