"""The device side of a remote runner: `python -m harness.measure.remote` measures one Request with a local child
(or, with `--together`, a list of them in lockstep children).

Staged by the ssh runner into a temporary folder on the device with the few modules the child needs
(standard library, numpy and onnxruntime only). The memory cap and the timeout are enforced here, on
the device, by the same watchdog the local runner uses; the controller only reads one JSON envelope
from stdout: the Reply, plus the child's predictions when the request asked for them.
"""

from __future__ import annotations

import argparse
import base64
import importlib.util
import json
import os
import platform
import sys

from harness.measure.backends import BACKENDS, DEFAULT_BACKEND
from harness.measure.protocol import ProtocolError, Reply, Request

NEEDED_MODULES = ("numpy", BACKENDS[DEFAULT_BACKEND][1])


def probe() -> dict:
    """What the controller checks before measuring here: Python, the modules the child needs, CPUs, host."""
    return {"python": platform.python_version(), "hostname": platform.node(),
            "missing": [m for m in NEEDED_MODULES if importlib.util.find_spec(m) is None],
            "cpus": sorted(os.sched_getaffinity(0))}


def measure(text: str, memory_cap_mb: float | None, timeout_s: float) -> dict:
    from harness.measure.local import ChildProcesses

    try:
        request = Request.from_json(text)
    except ProtocolError as e:
        return {"reply": Reply.failed(f"device could not read the request: {e}").to_json()}
    return _envelope(request, ChildProcesses().run(request, memory_cap_mb, timeout_s))


def measure_together(text: str, memory_cap_mb: float | None, timeout_s: float) -> list[dict]:
    """Several requests in lockstep children on the device (harness.measure.lockstep); one envelope each."""
    from harness.measure.local import ChildProcesses

    try:
        requests = [Request.from_json(one) for one in json.loads(text)]
    except (ProtocolError, ValueError, TypeError) as e:
        return [{"reply": Reply.failed(f"device could not read the requests: {e}").to_json()}]
    replies = ChildProcesses().run_together(requests, memory_cap_mb, timeout_s)
    return [_envelope(request, reply) for request, reply in zip(requests, replies)]


def _envelope(request: Request, reply: Reply) -> dict:
    envelope = {"reply": reply.to_json()}
    if reply.ok and request.predictions_path and os.path.isfile(request.predictions_path):
        with open(request.predictions_path, "rb") as f:
            envelope["predictions_b64"] = base64.b64encode(f.read()).decode()
    return envelope


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.measure.remote")
    parser.add_argument("--probe", action="store_true")
    parser.add_argument("--memory-cap-mb", type=float, default=0.0)
    parser.add_argument("--timeout-s", type=float, default=900.0)
    parser.add_argument("--together", action="store_true", help="stdin holds a JSON list of requests: lockstep")
    args = parser.parse_args(argv)
    if args.probe:
        out = probe()
    elif args.together:
        out = measure_together(sys.stdin.read(), args.memory_cap_mb or None, args.timeout_s)
    else:
        out = measure(sys.stdin.read(), args.memory_cap_mb or None, args.timeout_s)
    sys.stdout.write(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
