"""Benchmark: which ONNX Runtime session options minimise memory for the watch target?

For the built-in default model (fp32 and int8-static), measures peak RSS (VmHWM), the trivial-model
floor and p50 at 1 thread for the four combinations of CPU arena and memory pattern, 3 child
processes each, through the harness's own worker. the watch profile uses the winner.

    python benchmarks/watch_session_options.py
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np

from harness.bench import BenchInputs, make_variant, plan_bench, prepare_eval_sets
from harness.export import export_spec
from harness.results.measurement import build_request
from harness.variants.quantize import default_options
from harness.runners import run_worker
from harness.spec import DEFAULT_SUITE, load_suite
from harness.targets import TargetProfile
from harness.bench.yardsticks import trivial_model

REPEATS = 3


def main() -> int:
    suite = load_suite(DEFAULT_SUITE)
    spec = suite.models[0]
    inputs = BenchInputs(suite.data_dir, suite.calibration_dir, default_options())
    plan = plan_bench(suite, TargetProfile.from_flat("probe", threads=1, variants=("fp32", "int8-static")), inputs)
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        eval_set = prepare_eval_sets(plan, workdir)[(spec.input_hw, spec.num_classes)]
        exported = export_spec(spec, eval_set.images_u8)
        models = {"floor": trivial_model(workdir / "floor.onnx", spec.input_hw), "fp32": exported.path,
                  "int8-static": make_variant(plan, spec, exported, "int8-static").path}
        print(f"{'arena':<6} {'pattern':<8} " + " ".join(f"{name + ' peak MB':>18}" for name in models)
              + f" {'fp32 p50':>9} {'int8 p50':>9} {'ratio':>6}")
        for arena, pattern in ((True, True), (True, False), (False, True), (False, False)):
            target = TargetProfile.from_flat("probe", threads=1, enable_cpu_mem_arena=arena, enable_mem_pattern=pattern,
                                             min_runs=50, min_duration_s=1.0)
            peaks, p50s = {k: [] for k in models}, {k: [] for k in models}
            for _ in range(REPEATS):
                for name, path in models.items():
                    m = run_worker(build_request(path, target, eval_set.sample_path, None, 1, 0))
                    peaks[name].append(m.peak_rss_mb)
                    p50s[name].append(m.latency.p50_ms)
            cells = " ".join(f"{np.median(v):>9.1f} ±{np.ptp(v):>6.1f}" + " " * 1 for v in peaks.values())
            fp32, int8 = np.median(p50s["fp32"]), np.median(p50s["int8-static"])
            print(f"{str(arena):<6} {str(pattern):<8} {cells} {fp32:>9.2f} {int8:>9.2f} {fp32 / int8:>6.2f}")
    print("peak MB: median of 3 children (± range); model memory = peak minus floor under the same options")
    return 0


if __name__ == "__main__":
    sys.exit(main())
