"""Benchmark: how long the README's default gate (`harness bench --target watch`) takes to give its verdict, warm and
cold, and whether it decides what the full fixed recipe decides on the same commit.

From a fresh clone of this checkout's HEAD (its committed record and calibration book), with this interpreter:

- cold: an empty cache (HARNESS_CACHE_DIR) every run, as CI's fresh runner: exports, variants, measuring;
- warm: the same cache run after run (one untimed run fills it first);
- full: once, warm, with the fixed recipe (`recipe = "fixed"`: 3 processes x 2 s per row, as before the verdict
  issue): the reference the others' decisions are compared with.

Each run's decisions are every row's gate outcome and budget verdict (results/latest/watch.gate.json and .csv).

    python benchmarks/time_to_verdict.py [--runs 5] [--modes cold,warm]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def _bench(clone: Path, cache: Path, target: str = "watch") -> tuple[int, float, dict, int]:
    """(exit code, wall seconds, decisions, lines printed) of one `harness bench --target watch` in the clone."""
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "harness", "bench", "--target", target], cwd=clone, capture_output=True,
                          text=True, env={**os.environ, "HARNESS_CACHE_DIR": str(cache), "COLUMNS": "120"})
    wall = time.monotonic() - started
    if proc.returncode not in (0, 1):
        raise SystemExit(f"bench failed (exit {proc.returncode}): {(proc.stderr.strip().splitlines() or ['?'])[-1]}")
    return proc.returncode, wall, _decisions(clone / "results" / "latest"), len(proc.stdout.splitlines())


def _decisions(latest: Path) -> dict:
    gate = json.loads((latest / "watch.gate.json").read_text())
    # a verdict's kind, not its figure: "over memory (model 19.6 > 15 MB)" and "(model 19.5 ...)" are one decision
    verdicts = {(r["model"], r["variant"], r["serving"], r["backend"] or "onnxruntime"):
                "; ".join(sorted(part.split(" (")[0] for part in r["verdict"].split("; ")))
                for r in csv.DictReader((latest / "watch.csv").open())}
    out = {}
    for row in gate["rows"]:
        key = (row["model"], row["variant"], row["serving_mode"], row["backend"])
        out[key] = (row["outcome"], verdicts.get((row["model"], row["variant"], row["serving"], row["backend"])))
    return out


def _fixed_target(folder: Path) -> str:
    """The watch target with the fixed recipe, named watch so it is gated against results/watch.csv."""
    text = (REPO / "harness" / "assets" / "targets" / "watch.toml").read_text()
    path = folder / "watch.toml"
    path.write_text(text + '\nrecipe = "fixed"  # 3 processes x 2 s per row: the reference\n')
    return str(path)


def _differences(reference: dict, decisions: dict) -> list[str]:
    return [f"{' '.join(key)}: {reference.get(key)} -> {decisions.get(key)}"
            for key in sorted(set(reference) | set(decisions)) if reference.get(key) != decisions.get(key)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--modes", default="cold,warm")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="time-to-verdict-") as tmp:
        tmp = Path(tmp)
        clone = tmp / "clone"
        subprocess.run(["git", "clone", "-q", str(REPO), str(clone)], check=True)
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=clone, capture_output=True, text=True).stdout.strip()
        warm_cache = tmp / "warm-cache"
        _bench(clone, warm_cache)  # fills the warm cache
        code, wall, reference, _ = _bench(clone, warm_cache, _fixed_target(tmp))
        print(f"commit {commit}; full fixed recipe (warm): exit {code} in {wall:.0f} s, {len(reference)} rows", flush=True)
        summary = {}
        for mode in args.modes.split(","):
            walls, codes, lines, differing = [], [], [], 0
            for i in range(args.runs):
                cache = tmp / f"cold-{i}" if mode == "cold" else warm_cache
                code, wall, decisions, printed = _bench(clone, cache)
                different = _differences(reference, decisions)
                differing += bool(different)
                walls.append(wall), codes.append(code), lines.append(printed)
                print(f"  {mode} {i + 1}/{args.runs}: exit {code} in {wall:.1f} s, {printed} lines printed; "
                      f"decisions {'as the full recipe' if not different else 'DIFFER: ' + '; '.join(different)}",
                      flush=True)
            summary[mode] = (statistics.median(walls), codes.count(0), differing, max(lines))
        for mode, (median, passed, differing, most_lines) in summary.items():
            print(f"{mode}: median {median:.1f} s over {args.runs} runs; passed {passed}/{args.runs}; decisions differing "
                  f"from the full recipe in {differing}/{args.runs}; at most {most_lines} lines printed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
