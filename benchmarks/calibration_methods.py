"""Benchmark: which calibration method should int8-static use by default?

Runs `harness bench --target watch` once per calibration method (MinMax, Entropy with 2048 bins,
Percentile 99.999) on the built-in default and prints int8-static's mIoU, drop against fp32, pixel
agreement and p50 for each. The default in harness/variants/quantize.py is the measured winner; the README
quotes this script's output.

    python benchmarks/calibration_methods.py
"""

from __future__ import annotations

import csv
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _suites import subset_suite


def main() -> int:
    print(f"{'method':<11} {'mIoU %':>7} {'drop':>6} {'agree %':>8} {'p50 ms':>7} {'make+bench s':>12}")
    for method in ("minmax", "entropy", "percentile"):
        with tempfile.TemporaryDirectory() as tmp:
            started = time.perf_counter()
            suite = subset_suite(Path(tmp), ["pspnet_resnet18"])
            subprocess.run([sys.executable, "-m", "harness", "bench", "--target", "watch", "--suite", str(suite), "--no-gate",
                            "--results-dir", tmp,
                            "--calibration-method", method], check=True, stdout=subprocess.DEVNULL)
            seconds = time.perf_counter() - started
            with open(Path(tmp) / "watch.csv", newline="") as f:
                rows = {r["variant"]: r for r in csv.DictReader(f)}
        int8 = rows["int8-static"]
        print(f"{method:<11} {float(int8['quality_pct']):>7.2f} {float(int8['quality_drop_pts']):>6.2f} "
              f"{float(int8['agreement_with_fp32_pct']):>8.2f} {float(int8['p50_ms']):>7.2f} {seconds:>12.0f}")
    print(f"fp32 mIoU {float(rows['fp32']['quality_pct']):.2f} %; machine {rows['fp32']['cpu_model']}, ORT {rows['fp32']['ort_version']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
