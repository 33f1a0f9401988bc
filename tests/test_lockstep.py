"""Lockstep children: real worker processes alive at once, timed in alternating blocks, paired by cycle."""

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from harness.results.measurement import Measurement, build_request
from harness.bench.pairing import paired_ratios, paired_speedup
from harness.runners import LocalRunner
from test_runner import HW, _conv_stack, _model_holding, _target


@pytest.fixture
def sample(tmp_path) -> Path:
    path = tmp_path / "sample.npy"
    np.save(path, np.zeros((3, *HW), dtype=np.float32))
    return path


def _measure(requests, cap=None):
    return [Measurement.from_reply(r) for r in LocalRunner().run_together(requests, cap)]


def test_every_child_gets_the_same_cycles_and_the_heavier_model_is_slower(tmp_path, sample):
    target = _target(min_runs=20, min_duration_s=0.5)
    light = build_request(_conv_stack(tmp_path / "light.onnx", channels=16), target, sample, None, 1, 0)
    heavy = build_request(_conv_stack(tmp_path / "heavy.onnx", channels=64), target, sample, None, 1, 0)
    light_m, heavy_m, light_again = _measure([light, heavy, light])
    assert all(m.error is None for m in (light_m, heavy_m, light_again))
    blocks = [len(m.per_process_block_sizes[0]) for m in (light_m, heavy_m, light_again)]
    assert blocks[0] == blocks[1] == blocks[2] >= 2  # block i of each ran in cycle i
    assert sum(light_m.per_process_block_sizes[0]) == len(light_m.latencies_ms)
    assert sum(heavy_m.latencies_ms) / 1000 >= 0.5  # each child reached its own minimum duration
    speedup = paired_speedup(heavy_m, light_m)
    assert speedup > 2  # 64-channel convolutions cost far more than 16-channel ones
    same = paired_ratios(light_m, light_again)  # A/A: the same model twice
    assert 0.8 < same.p50[0] < 1.25


def test_a_child_over_the_memory_cap_fails_alone(tmp_path, sample):
    target = _target(min_runs=5, min_duration_s=0.2)
    small = build_request(_conv_stack(tmp_path / "small.onnx", channels=8), target, sample, None, 1, 0)
    big = build_request(_model_holding(tmp_path / "big.onnx", 200), target, sample, None, 1, 0)
    small_m, big_m = _measure([small, big], cap=150)
    assert big_m.error and big_m.error.startswith("exceeded memory cap (") and "> 150 MB" in big_m.error
    assert small_m.error is None and small_m.latency.runs >= 5


def test_a_broken_model_fails_alone_and_the_others_are_measured(tmp_path, sample):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not an onnx file")
    target = _target(min_runs=5, min_duration_s=0.1)
    good = build_request(_conv_stack(tmp_path / "good.onnx", channels=8), target, sample, None, 1, 0)
    broken = dataclasses.replace(good, onnx_path=str(bad))
    good_m, broken_m = _measure([good, broken])
    assert broken_m.error and broken_m.latency is None
    assert good_m.error is None and good_m.latency.runs >= 5


def test_evaluation_and_reference_come_back_from_lockstep_children(tmp_path, sample):
    from harness.bench.yardsticks import reference_model

    target = _target(min_runs=5, min_duration_s=0.1)
    eval_path = tmp_path / "eval.npz"
    np.savez(eval_path, images=np.zeros((2, 3, *HW), np.float32), masks=np.zeros((2, *HW), np.int16))
    request = build_request(_conv_stack(tmp_path / "m.onnx", channels=8), target, sample, eval_path, 3, 255,
                            tmp_path / "pred.npy", reference_path=reference_model(tmp_path / "ref.onnx"),
                            output_shape=(3, *HW))
    (measured,) = _measure([request])
    assert measured.error is None and measured.confusion.sum() == 2 * HW[0] * HW[1]
    assert measured.reference_ms > 0 and (tmp_path / "pred.npy").is_file()
    assert measured.peak_rss_mb > measured.import_rss_mb
