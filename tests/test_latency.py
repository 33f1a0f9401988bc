"""The latency rules on synthetic per-process samples: the record never fails latency, paired A/B decides,
undecided is said (and fails only under --strict), comparison-only rows never fail."""

import dataclasses
import math
import random
from pathlib import Path

import pytest

from harness.gate.decide import FASTER, NO_CHANGE, SLOWER, UNDECIDED, decide_paired
from harness.gate import Evidence, check_row, run_gate
from harness.gate.latency import CONFIGURATION_FIELDS, configuration_changes, configuration_now
from harness.results.measurement import Measurement, failed
from harness.bench.pairing import PairedRatios, paired_ratios, paired_speedup
from harness.results import read_rows
from harness.targets import TargetProfile

FIXTURES = Path(__file__).parent / "fixtures"
WATCH = TargetProfile.from_flat("watch", threads=1, variants=("fp32", "int8-static"), ship=("int8-static",))


@pytest.fixture
def record():
    return read_rows(FIXTURES / "gate_record.csv")


def _row(row, p50s, **changes):
    return dataclasses.replace(row, p50_per_process_ms=";".join(map(str, p50s)), p50_ms=sorted(p50s)[len(p50s) // 2],
                               p95_per_process_ms=";".join(str(1.1 * v) for v in p50s),
                               p95_ms=1.1 * sorted(p50s)[len(p50s) // 2], **changes)


def test_a_faster_host_of_the_same_model_in_the_record_never_fails_latency(record):
    """The failure this rule was made for: a record 40 % faster, same CPU string, unchanged code."""
    int8 = record[1]
    recorded = _row(int8, [0.6 * v for v in (2.0, 2.01, 1.99)], reference_ms=0.6)
    today = _row(int8, [2.0, 2.01, 1.99], reference_ms=1.0)
    check = check_row(today, recorded, WATCH)
    assert check.outcome == "pass" and check.latency.method == "unchanged" and not check.reasons
    assert "p50 x1.67 against the record" in check.latency.notes[0] and "not a regression" in check.latency.notes[0]
    assert check_row(today, recorded, WATCH, strict=True).outcome == "pass"  # nothing changed: nothing to gate
    report = run_gate([today], [recorded], WATCH)
    assert report.passed and "1 unchanged since the record (reported, not gated)" in report.summary("watch")


def test_an_absolute_p95_budget_still_fails_whatever_the_record(record):
    over = _row(record[1], [2.0, 2.01, 1.99], verdict="over latency (p95 2.2 > 2 ms)")
    assert check_row(over, record[1], WATCH).reasons == ("budget: over latency (p95 2.2 > 2 ms)",)


def test_a_changed_configuration_without_a_partner_is_not_gated_and_says_what_changed(record):
    today = _row(record[1], [2.0, 2.01, 1.99], ort_version="1.33.0", onnx_sha256="ffff")
    recorded = _row(record[1], [1.0, 1.01, 0.99], ort_version="1.31.1", onnx_sha256="eeee")
    assert configuration_changes(today, recorded) == ["file eeee → ffff", "onnxruntime 1.31.1 → 1.33.0"]
    check = check_row(today, recorded, WATCH)
    assert check.outcome == "pass" and check.latency.method == "not gated"
    assert "recorded configuration was not measured beside it" in check.latency.notes[0]
    assert check_row(today, recorded, WATCH, strict=True).outcome == "fail"


def _paired(ratios):
    return PairedRatios(tuple(ratios), tuple(ratios), 60 * len(ratios))


def test_paired_ab_fails_a_real_slowdown_passes_noise_and_says_undecided(record):
    partner = _row(record[1], [2.0, 2.0, 2.0, 2.0, 2.0], model="tiny_unet@recorded")
    new = _row(record[1], [2.0, 2.0, 2.0, 2.0, 2.0])
    same = check_row(new, record[1], WATCH, partner, paired=_paired([1.01, 0.99, 1.00, 1.02, 0.98]))
    assert same.outcome == "pass" and same.latency.method == "A/B" and not same.latency.undecided
    slower = check_row(new, record[1], WATCH, partner, paired=_paired([1.21, 1.19, 1.22, 1.20, 1.18]))
    assert slower.outcome == "fail" and "paired in this run" in slower.reasons[0]
    noisy = check_row(new, record[1], WATCH, partner, paired=_paired([1.02, 0.90, 1.15, 0.97, 1.12]))
    assert noisy.outcome == "pass" and noisy.latency.undecided
    assert "undecided: host too noisy (±" in noisy.latency.notes[0]
    strict = check_row(new, record[1], WATCH, partner, strict=True, paired=_paired([1.02, 0.90, 1.15, 0.97, 1.12]))
    assert strict.outcome == "fail" and strict.reasons[-1].startswith("latency undecided (--strict)")
    key = ("tiny_unet", "int8-static", "batched", "onnxruntime")
    report = run_gate([new], [record[1]], WATCH, Evidence({key: partner}, paired={key: _paired([1.02, 0.90, 1.15, 0.97, 1.12])}))
    assert "(1 undecided: host too noisy)" in report.summary("watch")


def test_comparison_only_rows_never_fail_the_gate(record):
    fp32 = record[0]  # not in the watch's ship list
    partner = _row(fp32, [2.0] * 5, model="tiny_unet@recorded")
    worse = _row(fp32, [3.0] * 5, file_mb=9.0, quality_pct=0.0, status="ok", verdict="over memory (model 99 > 15 MB)")
    check = check_row(worse, fp32, WATCH, partner, paired=_paired([1.5, 1.5, 1.52, 1.49, 1.51]))
    assert check.outcome == "pass" and check.notes[0].startswith("comparison only")
    would = [n for n in check.notes if n.startswith("would fail a shipped row")]
    assert len(would) == 5  # budget, p50, p95, file, mIoU: all shown, none failing
    broken = check_row(dataclasses.replace(fp32, status="worker failed: boom"), fp32, WATCH)
    assert broken.outcome == "pass"


def test_decide_paired_three_ways():
    assert decide_paired([1.0, 1.01, 0.99, 1.0, 1.005], 10).outcome == NO_CHANGE
    assert decide_paired([1.3, 1.31, 1.29], 10).outcome == SLOWER
    assert decide_paired([0.7, 0.71, 0.69], 10).outcome == FASTER
    assert decide_paired([1.0, 1.3, 0.8], 10).outcome == UNDECIDED
    # significant but below the minimum effect, and the interval reaches it: not a pass, not a fail
    assert decide_paired([1.06, 1.09, 1.07], 10).outcome == UNDECIDED
    assert decide_paired([1.06, 1.061, 1.059, 1.06, 1.06], 10).outcome == NO_CHANGE


def _lockstep(block_medians: list[list[float]], calls: int = 5) -> Measurement:
    """A measurement as lockstep children report it: per process, blocks of `calls` calls around each median."""
    rng = random.Random(len(block_medians))
    per_process, sizes = [], []
    for medians in block_medians:
        latencies = [m * (1 + 0.01 * rng.uniform(-1, 1)) for m in medians for _ in range(calls)]
        per_process.append(tuple(latencies))
        sizes.append((calls,) * len(medians))
    pooled = tuple(x for p in per_process for x in p)
    base = dataclasses.replace(failed(""), error=None)
    return dataclasses.replace(base, latencies_ms=pooled, per_process_latencies_ms=tuple(per_process),
                               per_process_block_sizes=tuple(sizes))


def test_pairing_cancels_a_drifting_host():
    """The host's speed swings x2.5 between cycles; the model is really 20 % slower in every cycle."""
    host = [[1.0 + 1.5 * (math.sin(i / 3 + p) > 0.5) for i in range(30)] for p in range(5)]
    old = _lockstep([[10 * h for h in process] for process in host])
    new = _lockstep([[12 * h for h in process] for process in host])
    ratios = paired_ratios(old, new)
    assert all(r == pytest.approx(1.2, rel=0.02) for r in ratios.p50)
    assert decide_paired(ratios.p50, 10).outcome == SLOWER
    assert paired_speedup(new, old) == pytest.approx(1.2, rel=0.02)
    unpaired = dataclasses.replace(new, per_process_block_sizes=())
    assert paired_ratios(old, unpaired) is None and paired_speedup(old, unpaired) is None


def test_with_a_partner_size_and_quality_are_judged_against_it(record):
    """The recorded configuration measured in this run, on this machine, is the better baseline than the record."""
    int8 = record[1]
    here = dataclasses.replace(int8, quality_pct=int8.quality_pct - 0.5)  # this machine's calibration: 0.5 pts lower
    partner = dataclasses.replace(here, model="tiny_unet@recorded")
    same_as_partner = check_row(here, int8, WATCH, partner, paired=_paired([1.0] * 5))
    assert same_as_partner.outcome == "pass"
    assert any(n.startswith("against the record, for reference: mIoU") for n in same_as_partner.notes)
    worse = dataclasses.replace(here, quality_pct=here.quality_pct - 0.3)
    check = check_row(worse, int8, WATCH, partner, paired=_paired([1.0] * 5))
    assert check.outcome == "fail" and check.reasons[0].endswith("(against tiny_unet@recorded, this run)")


def test_a_hand_edited_record_with_a_zero_p50_is_a_damaged_record_not_a_comparison(record):
    check = check_row(_row(record[1], [2.0, 2.01, 1.99]), dataclasses.replace(record[1], p50_ms=0.0), WATCH)
    assert check.outcome == "fail" and check.reasons[0].startswith("the recorded row is damaged (p50_ms 0.0)")
    assert "gated against the record" not in " ".join(check.notes)
    assert check_row(_row(record[1], [2.0, 2.01, 1.99]), record[1], WATCH).outcome == "pass"  # the intact record


@pytest.mark.parametrize("damage", [{"file_mb": None}, {"file_mb": -1.0}, {"p95_ms": None}, {"quality_pct": None},
                                    {"quality_pct": 140.0}])
def test_every_kind_of_damaged_record_row_is_reported(record, damage):
    check = check_row(_row(record[1], [2.0, 2.01, 1.99]), dataclasses.replace(record[1], **damage), WATCH)
    assert check.outcome == "fail" and "damaged" in check.reasons[0] and next(iter(damage)) in check.reasons[0]


def test_what_triggers_an_ab_is_the_list_the_gate_judges_latency_by(record):
    """One list of what changes latency: a field the gate would call a change is one the A/B looks for (the file
    per variant, the backend's release per backend, every other field from the target and the machine)."""
    from harness.gate.ab import Baselines

    now = configuration_now(WATCH, record[0].ort_version)
    assert set(now) | {"onnx_sha256", "backend_version", "backend_options"} == set(CONFIGURATION_FIELDS)
    baselines = Baselines(Path("suite.toml"), record)
    assert baselines.changes("tiny_unet", {}, now)[0] == []  # the record's own configuration: nothing to A/B
    for field, value in (("threads", 4), ("images_at_once", 10), ("ort_version", "0.0.1")):
        kinds, said = baselines.changes("tiny_unet", {}, {**now, field: value})
        assert kinds == ["runtime" if field == "ort_version" else "options"], (field, said)
    upgraded = [dataclasses.replace(record[1], backend="openvino", backend_version="2026.3.0")]
    kinds, said = Baselines(Path("suite.toml"), [*record, *upgraded]).changes("tiny_unet", {}, now, {"openvino": "2026.4.1"})
    assert kinds == ["runtime"] and "recorded with openvino 2026.3.0, installed 2026.4.1" in said
    assert Baselines(Path("suite.toml"), [*record, *upgraded]).changes("tiny_unet", {}, now, {"openvino": "2026.3.0"})[0] == []
    # another backend's options: a change the A/B measures beside the recorded ones (an older record's "": unknown)
    tuned = [dataclasses.replace(upgraded[0], backend_options="{}")]
    kinds, said = Baselines(Path("suite.toml"), [*record, *tuned]).changes("tiny_unet", {}, now, {},
                                                                          {"openvino": '{"num_streams":2}'})
    assert kinds == ["options"] and 'openvino options {} → {"num_streams":2}' in said
    assert Baselines(Path("suite.toml"), [*record, *upgraded]).changes("tiny_unet", {}, now, {},
                                                                      {"openvino": '{"num_streams":2}'})[0] == []
    today = dataclasses.replace(tuned[0], backend_options='{"num_streams":2}')
    assert "backend options {} → {\"num_streams\":2}" in check_row(today, tuned[0], WATCH).latency.notes[0]
