"""The bench's rounds, rows and the gate's decisions in-process, against a runner that measures in this process.

The end-to-end tests run the real child processes; this one exercises the same seams (plan, prepare, rounds,
rows, gate) in seconds, so a change to how rows are assembled or judged fails here first.
"""

import dataclasses
import os

from harness.bench import BenchInputs, run_bench
from harness.gate import FAIL, PASS, run_gate
from harness.spec import load_suite
from harness.targets import TargetProfile
from harness.variants.quantize import default_options


class InProcessRunner:
    """A Runner that measures each request in this process (worker.measure), one after another (no lockstep)."""

    name = "in-process"

    def __init__(self):
        self.requests = []

    def check_target(self, target) -> None:
        pass

    def run(self, request, memory_cap_mb=None, timeout_s=0):
        from harness.measure.worker import measure

        affinity = os.sched_getaffinity(0)
        request = dataclasses.replace(request, cpu_affinity=request.cpu_affinity or tuple(sorted(affinity))[:request.threads])
        self.requests.append(request)
        try:
            return measure(request)
        finally:
            os.sched_setaffinity(0, affinity)  # the measurement pins the process to the target's CPUs

    def close(self) -> None:
        pass


TARGET = TargetProfile.from_flat("inproc", threads=1, variants=("fp32", "int8-dynamic"), min_runs=5, min_duration_s=0.0,
                                 warmup_runs=1, processes=1, ship=("int8-dynamic",))


def _bench(tiny_suite):
    suite = load_suite(tiny_suite)
    inputs = BenchInputs(suite.data_dir, None, default_options())
    runner = InProcessRunner()
    return run_bench(suite, TARGET, inputs, runner=runner), runner


def test_rows_come_from_the_rounds_with_the_floor_and_fp32_reference_and_the_gate_judges_them(tiny_suite):
    run, runner = _bench(tiny_suite)
    rows = {r.variant: r for r in run.rows}
    assert sorted(rows) == ["fp32", "int8-dynamic"] and all(r.status == "ok" for r in rows.values())
    measured = {os.path.basename(r.onnx_path) for r in runner.requests}
    assert len(runner.requests) >= 3 and any("floor" in name for name in measured)  # the runtime floor is timed too
    assert rows["fp32"].speedup_vs_fp32 == 1.0 and rows["int8-dynamic"].speedup_vs_fp32 > 0
    assert rows["fp32"].quality_pct is not None and rows["int8-dynamic"].file_mb < rows["fp32"].file_mb
    unchanged = run_gate(run.rows, run.rows, TARGET)
    assert unchanged.passed and {c.outcome for c in unchanged.checks} == {PASS}
    smaller = [dataclasses.replace(r, params_in_graph=r.params_in_graph // 2, file_mb=r.file_mb / 2) for r in run.rows]
    grown = run_gate(run.rows, smaller, TARGET)  # the record held a smaller model: this run's grew
    shipped = next(c for c in grown.checks if c.key.variant == "int8-dynamic")
    assert not grown.passed and shipped.outcome == FAIL and any("parameters" in r for r in shipped.reasons)


def test_every_row_carries_the_childs_cpu_time_per_call_from_its_timed_calls(tiny_suite):
    run, _ = _bench(tiny_suite)
    for row in run.rows:
        # one thread, no pool to spin: the CPU per call is about the call's wall time, never a whole run's total
        assert row.cpu_ms_per_call is not None and 0.2 * row.p50_ms < row.cpu_ms_per_call < 2 * row.p95_ms + 1, row


def test_a_plugin_backend_registered_in_this_process_is_planned_measured_and_compared(tiny_suite, monkeypatch):
    """The seam a backend plugs into, in-process: the registry finds its entry point, the variants it reads are
    planned for it, the child code loads it, and its row is compared with ONNX Runtime's fp32."""
    from pathlib import Path

    import harness.measure.backends

    monkeypatch.syspath_prepend(str(Path(__file__).parent / "plugins"))
    harness.measure.backends._plugins.cache_clear()
    try:
        target = TargetProfile.from_flat("inproc", threads=1, variants=("fp32", "int8-dynamic"), min_runs=3,
                                         min_duration_s=0.0, warmup_runs=1, processes=1,
                                         backends=("onnxruntime", "numpy-reference"))
        small = tiny_suite.with_name("small_suite.toml")  # a quarter of the pixels: numpy's kernels are slow
        small.write_text(tiny_suite.read_text().replace("input_size = [184, 240]", "input_size = [96, 128]"))
        suite = load_suite(small)
        run = run_bench(suite, target, BenchInputs(suite.data_dir, None, default_options()), runner=InProcessRunner())
    finally:
        monkeypatch.undo()
        harness.measure.backends._plugins.cache_clear()
    rows = {(r.variant, r.backend): r for r in run.rows}
    assert set(rows) == {("fp32", "onnxruntime"), ("int8-dynamic", "onnxruntime"), ("fp32", "numpy-reference")}
    plugin = rows[("fp32", "numpy-reference")]
    assert plugin.status == "ok" and plugin.precision == "f32 (numpy)" and plugin.agreement_with_fp32_pct > 99.9
    assert plugin.key.backend == "numpy-reference" and 0 < plugin.speedup_vs_fp32 < 1  # numpy's kernels: slower
    assert "numpy-reference" not in harness.measure.backends.known_backends()  # gone with the path: nothing global was left


def _timed(runner) -> list:
    return [r for r in runner.requests if "floor" not in os.path.basename(r.onnx_path)]


def test_until_decided_times_rows_no_ab_judges_for_table_duration_and_the_fixed_recipe_for_min_duration(tiny_suite):
    suite = load_suite(tiny_suite)
    inputs = BenchInputs(suite.data_dir, None, default_options())
    for recipe, expected_s in (("until-decided", 0.05), ("fixed", 0.3)):
        target = TargetProfile.from_flat("inproc", threads=1, variants=("fp32",), min_runs=3, min_duration_s=0.3,
                                         table_duration_s=0.05, warmup_runs=1, processes=2, recipe=recipe)
        runner = InProcessRunner()
        run = run_bench(suite, target, inputs, runner=runner)
        assert run.rows[0].status == "ok"
        assert {r.min_duration_s for r in _timed(runner)} == {expected_s}, recipe
        assert len(_timed(runner)) == 2  # `processes` rounds: the budget (none) decides nothing more


def test_a_shipped_row_near_its_budget_gets_more_rounds_and_one_far_from_it_does_not(tiny_suite):
    from harness.bench.enough import straddles as _straddles

    assert not _straddles([5.0, 5.2, 5.1], 500.0) and not _straddles([11.4, 11.6, 11.5], 15.0)
    assert _straddles([9.0, 11.0], 10.0) and _straddles([14.9, 15.1], 15.0) and _straddles([14.8, 14.9], 15.0)
    assert not _straddles([], 10.0) and not _straddles([9.9, 10.1], 0.0)  # no figure, or no budget: nothing to decide
    suite = load_suite(tiny_suite)
    inputs = BenchInputs(suite.data_dir, None, default_options())
    common = dict(threads=1, variants=("fp32",), min_runs=3, min_duration_s=0.0, warmup_runs=1, processes=2,
                  gate_ab_max_processes=4)
    first = InProcessRunner()
    row = run_bench(suite, TargetProfile.from_flat("inproc", **common), inputs, runner=first).rows[0]
    assert len(_timed(first)) == 2
    # The whole process's peak is steady from run to run (latency is not): a budget at it is one the processes
    # cannot settle, and one at 10 times it is decided at once.
    at_peak = dict(memory_quantity="process", memory_budget_mb=row.peak_rss_mb, **common)
    near = InProcessRunner()
    run_bench(suite, TargetProfile.from_flat("inproc", **at_peak), inputs, runner=near)
    assert len(_timed(near)) == 4  # up to gate_ab_max_processes rounds while its processes straddle the budget
    far = InProcessRunner()
    run_bench(suite, TargetProfile.from_flat("inproc", **{**at_peak, "memory_budget_mb": 10 * row.peak_rss_mb}), inputs,
              runner=far)
    assert len(_timed(far)) == 2
    fixed = InProcessRunner()
    run_bench(suite, TargetProfile.from_flat("inproc", recipe="fixed", **at_peak), inputs, runner=fixed)
    assert len(_timed(fixed)) == 2


class LanedRunner(InProcessRunner):
    """Two lanes, as a 2-core machine gives a 1-thread target: groups measured side by side, each on its own lane."""

    def __init__(self):
        super().__init__()
        self.lane_runners = [InProcessRunner(), InProcessRunner()]

    def lanes(self, target):
        return self.lane_runners


def test_models_without_an_ab_are_measured_side_by_side_in_lanes_with_the_floors_measured_once(tiny_suite):
    tiny_suite.write_text(tiny_suite.read_text() + '\n[[model]]\nname = "second_unet"\narch = "unet_small"\n'
                          'num_classes = 11\ninput_size = [184, 240]\nkwargs = { width = 0.0625 }\n')
    suite = load_suite(tiny_suite)
    target = TargetProfile.from_flat("inproc", threads=1, variants=("fp32", "int8-dynamic"), min_runs=3,
                                     min_duration_s=0.0, warmup_runs=1, processes=2)
    runner = LanedRunner()
    run = run_bench(suite, target, BenchInputs(suite.data_dir, None, default_options()), runner=runner)
    assert sorted((r.model, r.variant) for r in run.rows if r.status == "ok") == [
        ("second_unet", "fp32"), ("second_unet", "int8-dynamic"), ("tiny_unet", "fp32"), ("tiny_unet", "int8-dynamic")]
    assert all(r.floor_rss_mb is not None and r.model_mb is not None for r in run.rows)
    assert len(runner.requests) == 2 and all("floor" in os.path.basename(r.onnx_path) for r in runner.requests)
    assert sum(len(lane.requests) for lane in runner.lane_runners) == 2 * 2 * 2  # models x variants x processes


def _lockstep(ratios_per_round, cycles=6, calls=4):
    """One child per round, `cycles` blocks of `calls` timed calls, each call `ratio` times 10 ms."""
    from harness.results.measurement import LatencyStats, Measurement

    out = []
    for ratio in ratios_per_round:
        latencies = tuple(10.0 * ratio * (1 + 0.001 * (i % 3)) for i in range(cycles * calls))
        out.append(Measurement(latencies, LatencyStats.from_samples(latencies), per_process_latencies_ms=(latencies,),
                               per_process_block_sizes=((calls,) * cycles,)))
    return out


def test_a_tuned_finalist_gets_more_rounds_while_its_margin_over_the_shipped_one_is_undecided_and_none_once_decided(
        tiny_suite):
    """harness tune's finalists: rounds go on while a shipped row's paired ratio to the variant it must beat spans
    the minimum gain; a clear gain, a clear loss or a clear tie stops them."""
    from harness.bench.enough import undecided_against
    from harness.bench.plan import DecideAgainst, plan_bench

    suite = load_suite(tiny_suite)
    target = TargetProfile.from_flat("inproc", threads=1, variants=("fp32", "int8-dynamic"), ship=("int8-dynamic",))
    inputs = BenchInputs(suite.data_dir, None, default_options(), decide_against=DecideAgainst("fp32", 5.0))
    plan = plan_bench(suite, target, inputs)
    name = suite.models[0].name

    def undecided(candidate_ratios, against=inputs) -> bool:
        children = {(name, "fp32", "batched"): _lockstep([1.0] * len(candidate_ratios)),
                    (name, "int8-dynamic", "batched"): _lockstep(candidate_ratios)}
        return undecided_against(dataclasses.replace(plan, inputs=against), name, children)

    assert undecided([0.90, 1.02, 0.97])  # the interval spans both a 5 % gain and a tie: another round
    assert undecided([0.953, 0.955, 0.954])  # tight, but its centre sits on the bar: neither 5 % faster nor a tie
    assert not undecided([0.70, 0.71, 0.69])  # clearly 5 % faster
    assert not undecided([1.001, 0.999, 1.0])  # clearly within 5 %: a tie
    assert not undecided([1.30, 1.31, 1.29])  # clearly slower
    assert not undecided([0.90, 1.02, 0.97], dataclasses.replace(inputs, decide_against=None))  # the bench's own runs
    assert undecided([1.0, 1.0, 1.0], dataclasses.replace(inputs, decide_against=DecideAgainst("fp32", 0.0)))  # 0 %: never a tie
