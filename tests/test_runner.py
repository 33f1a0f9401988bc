"""The isolated measurement: a real child process, real ONNX Runtime, memory from the kernel."""

import os
from pathlib import Path

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from harness.results.measurement import LatencyStats, build_request
from harness.onnx_graph import save_graph
from harness.runners import LocalRunner, lane_cpus, physical_cores, run_worker
from harness.targets import TargetProfile
from harness.bench.yardsticks import trivial_model

HW = (32, 32)


def _target(**overrides) -> TargetProfile:
    values = dict(threads=1, warmup_runs=1, min_runs=5, min_duration_s=0.0)
    values.update(overrides)
    return TargetProfile.from_flat("t", description="test", **values)


def _model_holding(path: Path, megabytes: int) -> Path:
    """Identity on the image plus a reduction over a `megabytes` MB random constant."""
    weights = np.random.default_rng(0).standard_normal(megabytes * 262144).astype(np.float32)
    return save_graph(
        path, "big",
        [helper.make_node("ReduceMean", ["w"], ["m"], keepdims=0),
         helper.make_node("Mul", ["m", "zero"], ["z"]),
         helper.make_node("Add", ["image", "z"], ["logits"])],
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 3, *HW])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 3, *HW])],
        [numpy_helper.from_array(weights, "w"), numpy_helper.from_array(np.zeros((), np.float32), "zero")],
    )


def _conv_stack(path: Path, channels: int = 64, layers: int = 4) -> Path:
    rng = np.random.default_rng(0)
    nodes, inits, previous, in_ch = [], [], "image", 3
    for i in range(layers):
        out_ch = 3 if i == layers - 1 else channels
        w = rng.standard_normal((out_ch, in_ch, 3, 3)).astype(np.float32) * 0.05
        inits.append(numpy_helper.from_array(w, f"w{i}"))
        name = "logits" if i == layers - 1 else f"h{i}"
        nodes.append(helper.make_node("Conv", [previous, f"w{i}"], [name], pads=[1, 1, 1, 1]))
        previous, in_ch = name, out_ch
    return save_graph(path, "convs", nodes,
                      [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 3, *HW])],
                      [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 3, *HW])], inits)


@pytest.fixture
def sample(tmp_path) -> Path:
    path = tmp_path / "sample.npy"
    np.save(path, np.zeros((3, *HW), dtype=np.float32))
    return path


def test_peak_rss_grows_when_the_child_holds_50_mb_more(tmp_path, sample):
    target = _target()
    small = run_worker(build_request(trivial_model(tmp_path / "floor.onnx", HW), target, sample, None, 1, 0))
    big = run_worker(build_request(_model_holding(tmp_path / "big.onnx", 50), target, sample, None, 1, 0))
    assert small.error is None and big.error is None
    assert big.peak_rss_mb - small.peak_rss_mb >= 50
    assert small.import_rss_mb < small.peak_rss_mb
    assert big.latency.runs >= 5


def test_thread_and_cpu_caps_are_applied_in_the_child(tmp_path, sample):
    floor = trivial_model(tmp_path / "floor.onnx", HW)
    one = run_worker(build_request(floor, _target(threads=1, cpu_affinity=(0,)), sample, None, 1, 0))
    assert one.cpu_affinity == (0,)
    two = run_worker(build_request(floor, _target(threads=2), sample, None, 1, 0))
    assert two.cpu_affinity == (0, 1)
    assert two.threads_in_process > one.threads_in_process  # ORT's intra-op pool spawns the extra thread
    # One thread in all: no pool, and no telemetry thread (ORT's starts upload threads 9 s in: +0.6 MB of VmHWM)
    assert one.threads_in_process == 1


def test_child_over_its_memory_cap_is_ended_and_reported(tmp_path, sample):
    big = _model_holding(tmp_path / "big.onnx", 200)
    measured = run_worker(build_request(big, _target(), sample, None, 1, 0), memory_cap_mb=150)
    assert measured.latency is None
    assert measured.error.startswith("exceeded memory cap (") and "> 150 MB" in measured.error


def test_broken_model_becomes_an_error_not_a_crash(tmp_path, sample):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not an onnx file")
    measured = run_worker(build_request(bad, _target(), sample, None, 1, 0))
    assert measured.error and measured.latency is None


def test_latency_stats_flag_a_large_spread():
    steady = LatencyStats.from_samples([10.0, 10.1, 9.9, 10.0])
    noisy = LatencyStats.from_samples([10.0, 30.0, 10.0, 12.0])
    assert steady.p50_ms == pytest.approx(10.0) and noisy.p95_ms > noisy.p50_ms
    # Instability is pyperf's rule on per-process medians now, not on single calls (correlated within a process).
    from harness.gate.decide import unstable

    assert not unstable([10.0, 10.1, 9.9]) and unstable([10.0, 13.0, 10.0])


def test_concurrent_serving_keeps_requests_in_flight(tmp_path, sample):
    model = _conv_stack(tmp_path / "convs.onnx")  # a few ms per call: long enough for calls to overlap
    request = build_request(model, _target(threads=2, images_at_once=4, min_runs=40), sample, None, 1, 0,
                            serving="concurrent")
    measured = run_worker(request)
    assert measured.error is None
    assert measured.latency.runs >= 40 and measured.images_per_s > 0
    assert 2 <= measured.max_in_flight <= 4


@pytest.mark.slow
def test_other_work_on_the_childs_cpu_is_noticed(tmp_path, sample):
    """Busy loops pinned to the child's CPU take most of it: the child reports that; alone, it reports little."""
    import subprocess
    import sys

    model = _conv_stack(tmp_path / "convs.onnx")
    request = build_request(model, _target(threads=1, cpu_affinity=(0,), min_runs=5, min_duration_s=1.5), sample, None, 1, 0)
    quiet = run_worker(request)
    spin = "import os, time\nos.sched_setaffinity(0, {0})\nend = time.time() + 20\nwhile time.time() < end: pass\n"
    # two busy loops take about two thirds of the CPU, so the difference stands out of what another test worker
    # on the same two cores adds to either run (one loop's half once came within 20 points of the quiet run)
    busy = [subprocess.Popen([sys.executable, "-c", spin]) for _ in range(2)]
    try:
        contended = run_worker(request)
    finally:
        for proc in busy:
            proc.kill()
            proc.wait()
    assert quiet.error is None and contended.error is None
    # measured against the same child alone a moment before, not against an assumed-idle machine
    assert contended.other_cpu_pct >= quiet.other_cpu_pct + 20 and quiet.other_cpu_pct < 60


def test_every_child_reports_its_cold_start(tmp_path, sample):
    """Creating the session and its first call, timed in the child: a model 50 MB heavier loads slower."""
    small = run_worker(build_request(_conv_stack(tmp_path / "convs.onnx"), _target(), sample, None, 1, 0))
    big = run_worker(build_request(_model_holding(tmp_path / "big.onnx", 50), _target(), sample, None, 1, 0))
    assert small.error is None and big.error is None
    assert 0 < small.load_ms < big.load_ms and small.first_call_ms > 0 and big.first_call_ms > 0
    none = run_worker(build_request(_conv_stack(tmp_path / "convs.onnx"), _target(warmup_runs=0), sample, None, 1, 0))
    assert none.load_ms > 0 and none.first_call_ms is None  # no warm-up call asked for: none is made or timed


def _sysfs(root: Path, siblings: dict[int, str]) -> Path:
    """A sysfs CPU tree as the kernel writes it: each CPU's thread_siblings_list."""
    for cpu, text in siblings.items():
        topology = root / f"cpu{cpu}" / "topology"
        topology.mkdir(parents=True)
        (topology / "thread_siblings_list").write_text(text + "\n")
    return root


def test_lanes_never_split_a_physical_core_between_two_lanes(tmp_path):
    smt = _sysfs(tmp_path / "smt", {0: "0,2", 1: "1,3", 2: "0,2", 3: "1,3"})  # 2 cores, 2 threads each
    assert physical_cores({0, 1, 2, 3}, smt) == [(0, 2), (1, 3)]
    assert lane_cpus({0, 1, 2, 3}, 1, smt) == [(0,), (1,)]  # one thread per core: the siblings stay idle
    assert lane_cpus({0, 1, 2, 3}, 2, smt) == [(0, 2), (1, 3)]
    assert lane_cpus({0, 2}, 1, smt) == [(0,)]  # two vCPUs of one core: one lane, so nothing side by side
    separate = _sysfs(tmp_path / "separate", {0: "0", 1: "1", 2: "2-3", 3: "2-3"})
    assert lane_cpus({0, 1, 2, 3}, 1, separate) == [(0,), (1,), (2,)]
    assert physical_cores({0, 7}, separate) == [(0,), (7,)]  # siblings unreadable: a core of its own


def test_a_target_gets_lanes_only_where_two_sets_of_its_threads_fit_on_separate_cores():
    cpus = sorted(os.sched_getaffinity(0))
    one_thread = LocalRunner().lanes(_target(threads=1))
    assert [lane.cpus for lane in one_thread] == (lane_cpus(cpus, 1) if len(lane_cpus(cpus, 1)) > 1 else [()])
    assert [lane.cpus for lane in LocalRunner().lanes(_target(threads=1, cpu_affinity=(cpus[0],)))] == [()]
    assert [lane.cpus for lane in LocalRunner().lanes(_target(threads=len(cpus)))] == [()]
