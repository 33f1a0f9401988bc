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
