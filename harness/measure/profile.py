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
from pathlib import Path

from harness.measure import runtime_environment
from harness.measure.protocol import Request


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.measure.profile")
    parser.add_argument("--out", required=True, help="folder for the runtime's own trace")
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args(argv)
    request = Request.from_json(sys.stdin.read())
    runtime_environment(request.threads)  # as the measuring child: thread pools sized, telemetry off
    import numpy as np

    from harness.measure.backends import backend_module, import_runtime

    backend = backend_module(request.backend)
    if not hasattr(backend, "profile"):
        raise SystemExit(f"no per-operator profiler for backend {request.backend}")
    import_runtime(request.backend)
    os.sched_setaffinity(0, request.cpu_affinity)  # as the measuring child: after the imports, before the threads
    sample = np.load(request.sample_path)
    batch = np.ascontiguousarray(np.repeat(sample[None], request.images_at_once, axis=0))
    result = backend.profile(request, Path(args.out), args.runs, batch)
    sys.stdout.write(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
