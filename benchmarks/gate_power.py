"""Benchmark: how often the gate catches a real slowdown, and how often it cries wolf, on this machine.

A small real model (a stack of 3x3 convolutions from a user factory, in a temporary git repository)
is recorded with `harness bench --update`. Then it is retrained (same architecture, new weights: a
new export, so an A/B against the recorded version, which must pass) and made slower by real extra
compute (more convolution layers: +10, +20 and +40 % of them), and gated repeatedly: each gate sees
the export changed, rebuilds the recorded version from the record's commit and measures both in
lockstep children (A/B). The same series runs again while a neighbour on the other core copies
256 MB numpy arrays in a loop. Last, the record is edited to name another CPU and to be 40 % faster,
and the unchanged and +20 % models are gated again: the record must not decide, the A/B must.

    python benchmarks/gate_power.py [--gates 5] [--retrained 10] [--no-noisy]
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from _suites import noisy_neighbour
from harness.spec import ASSETS_DIR

BASE_LAYERS = 20
STEPS = {"+10 %": 22, "+20 %": 24, "+40 %": 28}  # conv layers: each is 1/20 of the stack's compute
FACTORY = """
import torch
from torch import nn

def build(classes=11, layers=20, width=32, seed=0):
    torch.manual_seed(seed)  # another seed: other weights, the same architecture (a retrained model)
    body = [nn.Conv2d(3, width, 3, padding=1), nn.ReLU()]
    for _ in range(layers):
        body += [nn.Conv2d(width, width, 3, padding=1), nn.ReLU()]
    return nn.Sequential(*body, nn.Conv2d(width, classes, 1))
"""
SUITE = """[data]
dir = "{data}"
ignore_index = 11

[[model]]
name = "stack"
factory = "stack_models:build"
kwargs = {{ layers = {layers}, seed = {seed} }}
num_classes = 11
input_size = [48, 64]
"""
TARGET = """threads = 1
variants = ["fp32"]
warmup_runs = 5
min_runs = 30
min_duration_s = 0.5
processes = 3
gate_ab_processes = 5
"""


def _run(repo: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness", *args], cwd=repo, capture_output=True, text=True)


def _gate(repo: Path) -> dict:
    proc = _run(repo, "bench", "--target", "power.toml", "--suite", "suite.toml", "--results-dir", "results")
    if proc.returncode not in (0, 1):
        raise SystemExit(f"bench failed: {proc.stderr.strip().splitlines()[-1]}")
    row = json.loads((repo / "results" / "latest" / "power.gate.json").read_text())["rows"][0]
    p50 = (row["latency"] or {}).get("p50") or {}
    latency = row["latency"] or {}
    # A wider model also grows its file and parameters, which fail the gate on their own: latency's power is
    # read from the latency decision, not from the exit code.
    return {"failed": proc.returncode == 1, "slower": bool(latency.get("reasons")),
            "undecided": bool(latency.get("undecided")),
            "method": latency.get("method"), "ratio": p50.get("ratio"), "noise": p50.get("noise_pct")}


def _series(repo: Path, label: str, layers: int, gates: int, retrained: bool = False) -> dict:
    results = []
    for i in range(gates):
        seed = i + 1 if retrained else 0  # new weights each time: a new export, so an A/B
        (repo / "suite.toml").write_text(SUITE.format(data=ASSETS_DIR / "camvid_val24", layers=layers, seed=seed))
        results.append(_gate(repo))
        r = results[-1]
        verdict = "SLOWER" if r["slower"] else "undecided" if r["undecided"] else "passes"
        noise = "" if r["noise"] is None else f" ±{r['noise']:.1f} %"
        print(f"  {label}: gate {i + 1}/{gates}: latency {verdict}, gate {'fails' if r['failed'] else 'passes'} "
              f"({r['method']}, p50 x{r['ratio'] or float('nan'):.3f}{noise})", flush=True)
    ratios = [r["ratio"] for r in results if r["ratio"]]
    return {"step": label, "layers": layers, "gates": gates, "failed": sum(r["failed"] for r in results),
            "slower": sum(r["slower"] for r in results), "undecided": sum(r["undecided"] for r in results),
            "median_ratio": statistics.median(ratios) if ratios else None,
            "methods": sorted({r["method"] or "n/a" for r in results})}


def _record_elsewhere(repo: Path) -> None:
    """Make the record say it was measured on another, 40 % faster CPU (its export hash and commit stay)."""
    path = repo / "results" / "power.csv"
    rows = list(csv.DictReader(path.open()))
    for row in rows:
        row["cpu_model"] = "Another CPU (recorded elsewhere)"
        for column in ("p50_ms", "p95_ms", "p99_ms", "reference_ms"):
            row[column] = f"{0.6 * float(row[column]):.4f}" if row[column] else ""
        for column in ("p50_per_process_ms", "p95_per_process_ms"):
            row[column] = ";".join(f"{0.6 * float(v):.3f}" for v in row[column].split(";") if v)
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


def _all_series(repo: Path, args, tag: str = "") -> list[dict]:
    table = [_series(repo, f"retrained{tag}", BASE_LAYERS, args.retrained, retrained=True)]
    table += [_series(repo, f"{label}{tag}", layers, args.gates) for label, layers in STEPS.items()]
    return table


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--gates", type=int, default=5)
    parser.add_argument("--retrained", type=int, default=10)
    parser.add_argument("--no-noisy", action="store_true", help="skip the series with a noisy neighbour")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="gate-power-") as tmp:
        repo = Path(tmp)
        (repo / "stack_models.py").write_text(FACTORY)
        (repo / "suite.toml").write_text(SUITE.format(data=ASSETS_DIR / "camvid_val24", layers=BASE_LAYERS, seed=0))
        (repo / "power.toml").write_text(TARGET)
        for command in (["init", "-q"], ["add", "."], ["commit", "-qm", "the recorded model"]):
            subprocess.run(["git", "-c", "user.email=b@example.com", "-c", "user.name=bench", *command], cwd=repo, check=True)
        recorded = _run(repo, "bench", "--target", "power.toml", "--suite", "suite.toml", "--results-dir", "results", "--update")
        if recorded.returncode != 0:
            raise SystemExit(f"recording failed: {recorded.stderr}")
        table = [_series(repo, "unchanged", BASE_LAYERS, args.gates)]
        table += _all_series(repo, args)
        if not args.no_noisy:
            with noisy_neighbour():
                table += _all_series(repo, args, ", noisy neighbour")
        _record_elsewhere(repo)
        table.append(_series(repo, "unchanged, record 40 % faster on another CPU", BASE_LAYERS, args.gates))
        table.append(_series(repo, "+20 %, record 40 % faster on another CPU", STEPS["+20 %"], args.gates))
    print("\n| model | extra conv layers | gates | latency failed | latency undecided | gate failed (any reason) | "
          "median p50 ratio | decided by |")
    print("|---|---|---|---|---|---|---|---|")
    for r in table:
        ratio = "n/a" if r["median_ratio"] is None else f"x{r['median_ratio']:.3f}"
        print(f"| {r['step']} | {r['layers'] - BASE_LAYERS} of {BASE_LAYERS} | {r['gates']} | {r['slower']} | "
              f"{r['undecided']} | {r['failed']} | {ratio} | {', '.join(r['methods'])} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
