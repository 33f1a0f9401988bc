"""Benchmark: do the harness's served figures agree with an outside load client on the same service?

Starts `harness serve MODEL --target cloud --variant V` (the real service, 2 threads), then measures it with
10 closed-loop connections, alternating, on the same images (the 24 shipped CamVid val PNGs, round robin):
- the harness's own load generator (`python -m harness.serve.loadgen`, closed phase only, as `bench --serving
  http` runs it: its quality pass first, then 10 clients),
- wrk (C, `wrk -t1 -c10`, a Lua script posting the same PNGs; p50/p95 from its latency histogram),
each after the service is warm, PAIRS times for DURATION_S each, and prints requests/s, p50 and p95 of every
run, each client's own CPU use, and the harness/wrk ratios per pair and their medians. Exit 1 when the medians
disagree by more than 10 % (requests/s, p50) or 15 % (p95).

    python benchmarks/served_vs_wrk.py [--model pspnet_resnet18] [--variant int8-static] [--pairs 3] [--seconds 10]
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

SAMPLE = Path(__file__).resolve().parents[1] / "harness" / "assets" / "camvid_val24" / "images"
CLIENTS = 10
LIMITS_PCT = {"req_per_s": 10.0, "p50_ms": 10.0, "p95_ms": 15.0}

WRK_SCRIPT = """
local bodies, n = {}, 0
for _, path in ipairs({%s}) do
  local f = io.open(path, "rb"); n = n + 1; bodies[n] = f:read("*all"); f:close()
end
local i = 0
request = function()
  i = i %% n + 1
  return wrk.format("POST", "/segment", {["Content-Type"] = "application/octet-stream"}, bodies[i])
end
done = function(summary, latency, requests)
  io.write(string.format("JSON {\\"requests\\": %%d, \\"seconds\\": %%f, \\"p50_ms\\": %%f, \\"p95_ms\\": %%f, "
    .. "\\"errors\\": %%d, \\"non2xx\\": %%d}\\n", summary.requests, summary.duration / 1e6, latency:percentile(50) / 1000,
    latency:percentile(95) / 1000, summary.errors.connect + summary.errors.read + summary.errors.write
    + summary.errors.timeout, summary.errors.status))
end
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_service(model: str, variant: str, port: int, log: Path, target: str) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-m", "harness", "serve", model, "--target", target, "--variant", variant,
                             "--port", str(port)], stdout=log.open("w"), stderr=subprocess.STDOUT)
    deadline = time.time() + 900  # the first run exports and calibrates
    while time.time() < deadline:
        if proc.poll() is not None:
            sys.exit(f"harness serve exited {proc.returncode}: {log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as answer:
                if answer.status == 200:
                    return proc
        except OSError:
            time.sleep(0.5)
    sys.exit("harness serve did not become ready")


def timed(cmd: list[str], stdin: str | None = None) -> tuple[str, float]:
    """A client's stdout and its wall seconds."""
    started = time.monotonic()
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = proc.communicate(stdin)
    if proc.returncode != 0:
        sys.exit(f"{cmd[0]} failed: {err[-2000:]}")
    return out, time.monotonic() - started


def children_cpu_s() -> float:
    """CPU seconds (user + system) of the clients that have ended: the difference around one is its own use."""
    import resource

    now = resource.getrusage(resource.RUSAGE_CHILDREN)
    return now.ru_utime + now.ru_stime


def harness_client(port: int, seconds: float) -> dict:
    plan = {"host": "127.0.0.1", "port": port, "image_dir": str(SAMPLE), "masks_out": None, "timeout_s": 10,
            "budget_ms": 0, "cpu_affinity": [],
            "phases": [{"kind": "closed", "clients": CLIENTS, "duration_s": seconds}]}
    cpu0 = children_cpu_s()
    out, wall = timed([sys.executable, "-m", "harness.serve.loadgen"], json.dumps(plan))
    seen = json.loads(out)["closed"]
    rows = [r for r in seen["answers"] if r[4] == 200]
    latencies = sorted(r[3] - r[2] for r in rows)
    return {"req_per_s": len(rows) / seen["duration_s"], "p50_ms": percentile(latencies, 50),
            "p95_ms": percentile(latencies, 95), "errors": len(seen["answers"]) - len(rows),
            "client_cpu_pct": 100 * (children_cpu_s() - cpu0) / wall}


def wrk_client(port: int, seconds: float, script: Path) -> dict:
    cpu0 = children_cpu_s()
    out, wall = timed(["wrk", "-t1", f"-c{CLIENTS}", f"-d{seconds:g}s", "--timeout", "10s", "-s", str(script),
                       f"http://127.0.0.1:{port}/segment"])
    found = json.loads(re.search(r"^JSON (.*)$", out, re.M).group(1))
    return {"req_per_s": found["requests"] / found["seconds"], "p50_ms": found["p50_ms"], "p95_ms": found["p95_ms"],
            "errors": found["errors"] + found["non2xx"], "client_cpu_pct": 100 * (children_cpu_s() - cpu0) / wall}


def percentile(sorted_values: list[float], q: float) -> float:
    import numpy as np

    return float(np.percentile(sorted_values, q)) if sorted_values else float("nan")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="pspnet_resnet18")
    parser.add_argument("--target", default="cloud", help="the service's target (e.g. a copy of cloud with "
                                                          "http_allow_spinning = true, to see the spinning pool's effect)")
    parser.add_argument("--variant", action="append", help="default: int8-static and fp32")
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed (Debian: apt-get install wrk)")
    failed = False
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "post.lua"
        script.write_text(WRK_SCRIPT % ", ".join(f'"{p}"' for p in sorted(SAMPLE.glob("*.png"))))
        for variant in args.variant or ["int8-static", "fp32"]:
            failed |= compare_variant(args, variant, script, Path(tmp))
    return 1 if failed else 0


def compare_variant(args, variant: str, script: Path, tmp: Path) -> bool:
    port = free_port()
    service = start_service(args.model, variant, port, tmp / f"serve-{variant}.log", args.target)
    try:
        wrk_client(port, 3, script)  # warm-up, discarded
        pairs = []
        for _ in range(args.pairs):
            pairs.append((harness_client(port, args.seconds), wrk_client(port, args.seconds, script)))
    finally:
        service.terminate()
        service.wait(30)
    print(f"\n{args.model} {variant} ({args.target}): {CLIENTS} closed-loop connections, {args.seconds:g} s a run, "
          f"harness then wrk")
    print(f"{'run':>4} {'client':>8} {'req/s':>8} {'p50 ms':>8} {'p95 ms':>8} {'errors':>7} {'client CPU %':>13}")
    for k, (ours, theirs) in enumerate(pairs, 1):
        for name, seen in (("harness", ours), ("wrk", theirs)):
            print(f"{k:>4} {name:>8} {seen['req_per_s']:8.1f} {seen['p50_ms']:8.1f} {seen['p95_ms']:8.1f} "
                  f"{seen['errors']:7d} {seen['client_cpu_pct']:13.1f}")
    failed = False
    for figure, limit in LIMITS_PCT.items():
        ratios = [ours[figure] / theirs[figure] for ours, theirs in pairs]
        median = statistics.median(ratios)
        off = abs(median - 1) * 100
        failed |= off > limit
        print(f"{figure}: harness/wrk per pair {', '.join(f'{r:.3f}' for r in ratios)}; median {median:.3f} "
              f"({'within' if off <= limit else 'OUTSIDE'} {limit:g} %)")
    return failed


if __name__ == "__main__":
    sys.exit(main())
