"""Per-operator time in a child process: `python -m harness.measure.profile --out DIR` reads a Request on stdin.

ONNX Runtime: its own profiler (the Chrome trace it writes stays in DIR); OpenVINO: its per-layer counters
(PERF_COUNT). Warm-up calls are left out: only the timed calls' operators count. Prints one JSON document:
each operator's time per call, its kind, and where it ran (ORT's provider, OpenVINO's kernel).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from harness.measure.protocol import Request


def profile_onnxruntime(request: Request, out: Path, runs: int, batch) -> dict:
    import onnxruntime as ort

    from harness.backends.onnxruntime_cpu import session_options

    options = session_options(ort, request)
    options.enable_profiling = True
    options.profile_file_prefix = str(out / "onnxruntime_trace")
    session = ort.InferenceSession(request.onnx_path, options, providers=["CPUExecutionProvider"])
    feed = {session.get_inputs()[0].name: batch}
    for _ in range(request.warmup_runs):
        session.run(None, feed)
    started = time.perf_counter()
    for _ in range(runs):
        session.run(None, feed)
    wall_ms = 1000 * (time.perf_counter() - started) / runs
    trace = Path(session.end_profiling())
    events = json.loads(trace.read_text())
    windows = sorted((e["ts"], e["ts"] + e["dur"]) for e in events if e.get("name") == "model_run")[-runs:]
    ops: dict[str, dict] = {}
    for e in events:
        if e.get("cat") != "Node" or not e.get("name", "").endswith("_kernel_time"):
            continue
        if not any(start <= e["ts"] <= end for start, end in windows):
            continue  # a warm-up call's
        node = e["name"][: -len("_kernel_time")]
        entry = ops.setdefault(node, {"node": node, "op_type": e["args"].get("op_name", "?"),
                                      "ran_on": e["args"].get("provider", ""), "total_us": 0})
        entry["total_us"] += e["dur"]
    return {"trace": str(trace), "wall_ms_per_call": wall_ms, "runs": runs,
            "ops": [{**o, "ms_per_call": o.pop("total_us") / 1000 / runs} for o in ops.values()]}


def profile_openvino(request: Request, out: Path, runs: int, batch) -> dict:
    import openvino as ov

    from harness.backends.openvino_cpu import OpenVinoModel

    model = OpenVinoModel(request, ov, len(batch))  # checks the precision against the CPU, as the child does
    compiled = model._compile(len(batch), {"PERF_COUNT": True})  # compiled as the child does, plus layer counters
    infer = compiled.create_infer_request()
    for _ in range(request.warmup_runs):
        infer.infer({0: batch})
    ops: dict[str, dict] = {}
    started = time.perf_counter()
    for _ in range(runs):
        infer.infer({0: batch}, share_inputs=True)
        for info in infer.profiling_info:
            if str(info.status).endswith("EXECUTED") and not str(info.status).endswith("NOT_RUN"):
                entry = ops.setdefault(info.node_name, {"node": info.node_name, "op_type": info.node_type,
                                                        "ran_on": info.exec_type, "total_us": 0.0})
                entry["total_us"] += info.real_time.total_seconds() * 1e6
    wall_ms = 1000 * (time.perf_counter() - started) / runs
    layers = out / "openvino_layers.json"
    layers.write_text(json.dumps(list(ops.values()), indent=1))
    return {"trace": str(layers), "wall_ms_per_call": wall_ms, "runs": runs,
            "ops": [{**o, "ms_per_call": o.pop("total_us") / 1000 / runs} for o in ops.values()]}


PROFILERS = {"onnxruntime": profile_onnxruntime, "openvino": profile_openvino}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.measure.profile")
    parser.add_argument("--out", required=True, help="folder for the runtime's own trace")
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args(argv)
    request = Request.from_json(sys.stdin.read())
    import numpy as np

    if request.backend not in PROFILERS:
        raise SystemExit(f"no per-operator profiler for backend {request.backend}")
    import importlib

    from harness.backends import BACKENDS

    importlib.import_module(BACKENDS[request.backend][1])
    os.sched_setaffinity(0, request.cpu_affinity)  # as the measuring child: after the imports, before the threads
    sample = np.load(request.sample_path)
    batch = np.ascontiguousarray(np.repeat(sample[None], request.images_at_once, axis=0))
    result = PROFILERS[request.backend](request, Path(args.out), args.runs, batch)
    sys.stdout.write(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
