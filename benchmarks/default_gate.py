"""Benchmark: the README's default gate (`harness bench --target watch`) on unchanged code, run after run.

From a fresh clone of this checkout's HEAD, first one run records this host (`--update` into a scratch
results folder). Then the gate runs `--runs` times in each condition and the exit codes, the gate's
summary line, the paired int8-static vs fp32 ratio of pspnet_resnet18 and the wall time are printed:

- quiet: against the record this host just made;
- noisy: the same while a neighbour on the other core copies 256 MB numpy arrays in a loop;
- faster-record: against that record with every latency made 40 % lower (as a faster host of the same
  CPU model would have recorded them): the failure the gate used to have;
- committed: against the record committed in results/ (made on whatever machine made it).

    python benchmarks/default_gate.py [--runs 5] [--conditions quiet,noisy,faster-record,committed]
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _suites import noisy_neighbour

REPO = Path(__file__).resolve().parent.parent
LATENCY_COLUMNS = ("p50_ms", "p95_ms", "p99_ms", "reference_ms")
PER_PROCESS = ("p50_per_process_ms", "p95_per_process_ms")
def _bench(clone: Path, results: Path, *extra: str) -> tuple[int, str, float]:
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "harness", "bench", "--target", "watch", "--results-dir", str(results),
                           *extra], cwd=clone, capture_output=True, text=True)
    summary = next((line for line in proc.stdout.splitlines() if line.startswith(("gate watch", "budgets of"))), "")
    if proc.returncode not in (0, 1):
        summary = (proc.stderr.strip().splitlines() or ["?"])[-1]
    return proc.returncode, summary, time.monotonic() - started


def _ratio(results: Path) -> float | None:
    for row in csv.DictReader((results / "latest" / "watch.csv").open()):
        if row["model"] == "pspnet_resnet18" and row["variant"] == "int8-static":
            return float(row["speedup_vs_fp32"]) if row["speedup_vs_fp32"] else None
    return None


def _scaled_record(source: Path, target: Path, factor: float) -> None:
    rows = list(csv.DictReader(source.open()))
    for row in rows:
        for column in LATENCY_COLUMNS:
            if row[column]:
                row[column] = f"{float(row[column]) * factor:.4f}"
        for column in PER_PROCESS:
            row[column] = ";".join(f"{float(v) * factor:.3f}" for v in row[column].split(";") if v)
    with target.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


def _series(clone: Path, label: str, record: Path, runs: int, noisy: bool = False) -> dict:
    results = clone / f"results-{label}"
    results.mkdir()
    shutil.copy(record, results / "watch.csv")
    codes, ratios, seconds = [], [], []
    with noisy_neighbour() if noisy else contextlib.nullcontext():
        for i in range(runs):
            code, summary, wall = _bench(clone, results)
            codes.append(code)
            ratios.append(_ratio(results))
            seconds.append(wall)
            print(f"  {label} {i + 1}/{runs}: exit {code} in {wall:.0f} s; R18 int8-static x{ratios[-1] or float('nan'):.3f} "
                  f"vs fp32; {summary}", flush=True)
    valid = [r for r in ratios if r]
    return {"condition": label, "passed": codes.count(0), "runs": runs, "ratios": valid,
            "spread": max(valid) / min(valid) if valid else None, "median_s": statistics.median(seconds)}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--conditions", default="quiet,noisy,faster-record,committed")
    args = parser.parse_args()
    conditions = args.conditions.split(",")
    with tempfile.TemporaryDirectory(prefix="default-gate-") as tmp:
        clone = Path(tmp) / "clone"
        subprocess.run(["git", "clone", "--quiet", str(REPO), str(clone)], check=True)
        own = clone / "results-own"
        code, summary, wall = _bench(clone, own, "--update")
        print(f"record of this host: exit {code} in {wall:.0f} s ({summary})", flush=True)
        faster = Path(tmp) / "faster.csv"
        _scaled_record(own / "watch.csv", faster, 0.6)
        records = {"quiet": own / "watch.csv", "noisy": own / "watch.csv", "faster-record": faster,
                   "committed": clone / "results" / "watch.csv"}
        table = [_series(clone, c, records[c], args.runs, noisy=c == "noisy") for c in conditions]
    print("\n| condition | gate passed | R18 int8-static vs fp32 (each run) | max / min | median wall s |")
    print("|---|---|---|---|---|")
    for r in table:
        ratios = ", ".join(f"{v:.3f}" for v in r["ratios"])
        spread = f"{r['spread']:.3f}" if r["spread"] else "n/a"
        print(f"| {r['condition']} | {r['passed']} of {r['runs']} | {ratios} | {spread} | {r['median_s']:.0f} |")
    return 0 if all(r["passed"] == r["runs"] for r in table) else 1


if __name__ == "__main__":
    sys.exit(main())
