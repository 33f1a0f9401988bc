"""Benchmark: does int8-static earn its place on the watch? (issue: quantization done right by default)

Runs `harness bench --target watch` on the built-in default (shipped pspnet_resnet18, 24 CamVid val
frames, 1 thread) into a scratch folder, then checks the claims the README makes for the default
recipe, all from one run: int8-static p50 at least 2.0x faster than fp32, its file at most 30 % of
fp32's, and its mIoU within 0.5 point of fp32's. Prints the figures; exits 1 if a claim fails.

    python benchmarks/int8_static_vs_fp32.py [--repeat N]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from _suites import bench_rows, subset_suite

MIN_SPEEDUP, MAX_FILE_SHARE, MAX_MIOU_DROP = 2.0, 0.30, 0.5


def one_run() -> dict[str, dict[str, str]]:
    with tempfile.TemporaryDirectory() as tmp:
        suite = subset_suite(Path(tmp), ["pspnet_resnet18"])
        rows = bench_rows(Path(tmp), suite, "watch")
    return {r["variant"]: r for r in rows if r["model"] == "pspnet_resnet18"}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=1, help="independent bench runs")
    args = parser.parse_args()
    failures = 0
    for i in range(args.repeat):
        rows = one_run()
        fp32, int8 = rows["fp32"], rows["int8-static"]
        speedup = float(fp32["p50_ms"]) / float(int8["p50_ms"])
        file_share = float(int8["file_mb"]) / float(fp32["file_mb"])
        drop = float(fp32["quality_pct"]) - float(int8["quality_pct"])
        ok = speedup >= MIN_SPEEDUP and file_share <= MAX_FILE_SHARE and drop <= MAX_MIOU_DROP
        failures += not ok
        print(f"run {i + 1}: fp32 p50 {float(fp32['p50_ms']):.2f} ms, int8-static p50 {float(int8['p50_ms']):.2f} ms "
              f"-> {speedup:.2f}x (need >= {MIN_SPEEDUP}); file {float(int8['file_mb']):.2f} / {float(fp32['file_mb']):.2f} MB "
              f"= {100 * file_share:.0f} % (need <= {100 * MAX_FILE_SHARE:.0f} %); mIoU {float(fp32['quality_pct']):.2f} -> "
              f"{float(int8['quality_pct']):.2f} (drop {drop:.2f}, need <= {MAX_MIOU_DROP}); {'OK' if ok else 'FAILED'}")
        print(f"       machine: {fp32['cpu_model']} ({fp32['cpu_isa']}), ORT {fp32['ort_version']}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
