"""Benchmark: how long the README's default gate (`harness bench --target watch`) takes to give its verdict, warm and
cold, and whether it decides what the full fixed recipe decides on the same commit.

From a fresh clone of this checkout's HEAD (its committed record and calibration book), with this interpreter:

- cold: an empty cache (HARNESS_CACHE_DIR) every run, as CI's fresh runner: exports, variants, measuring;
- warm: the same cache run after run (one untimed run fills it first);
- full: `--full-runs` times, warm, with the fixed recipe (`recipe = "fixed"`: 3 processes x 2 s per row, as before
  the verdict issue): the reference the others' decisions are compared with.

Each run's decisions are every row's gate outcome and budget verdict (results/latest/watch.gate.json and .csv).
A row the full recipe does not decide (its runs disagree, or its figures lie within their own spread plus 2 % of
a budget: the harness's near-budget rule) has no reference decision: it is listed apart, with how each recipe
called it, instead of counting as a difference.

    python benchmarks/time_to_verdict.py [--runs 5] [--full-runs 3] [--modes cold,warm]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import tomllib
from collections import Counter
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def _bench(clone: Path, cache: Path, target: str = "watch") -> tuple[int, float, dict, int, dict]:
    """(exit code, wall seconds, decisions, lines printed, budget figures) of one `harness bench --target watch`."""
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "harness", "bench", "--target", target], cwd=clone, capture_output=True,
                          text=True, env={**os.environ, "HARNESS_CACHE_DIR": str(cache), "COLUMNS": "120"})
    wall = time.monotonic() - started
    (clone.parent / "last-stdout.txt").write_text(proc.stdout)
    if proc.returncode not in (0, 1):
        raise SystemExit(f"bench failed (exit {proc.returncode}): {(proc.stderr.strip().splitlines() or ['?'])[-1]}")
    latest = clone / "results" / "latest"
    return proc.returncode, wall, _decisions(latest), len(proc.stdout.splitlines()), _budget_figures(latest)


def _budget_figures(latest: Path) -> dict:
    """Each row's figures that meet a budget: (memory figure, p95), for the near-budget rule."""
    target = tomllib.loads((REPO / "harness" / "assets" / "targets" / "watch.toml").read_text())
    memory = "model_mb" if target.get("memory_quantity", "model") == "model" else "peak_rss_mb"
    return {(r["model"], r["variant"], r["serving_mode"], r["backend"] or "onnxruntime"):
            tuple(float(r[c]) if r[c] else None for c in (memory, "p95_ms"))
            for r in csv.DictReader((latest / "watch.csv").open())}


def _near_budget(figure_runs: list[tuple]) -> bool:
    """The harness's own near-budget rule (bench/rounds.py): the figures' range, widened by itself and 2 % of the
    budget, holds the budget."""
    target = tomllib.loads((REPO / "harness" / "assets" / "targets" / "watch.toml").read_text())
    for i, budget in enumerate((target.get("memory_budget_mb"), target.get("p95_budget_ms"))):
        values = [run[i] for run in figure_runs if run and run[i] is not None]
        if budget and values:
            margin = max(values) - min(values) + 0.02 * budget
            if min(values) - margin <= budget <= max(values) + margin:
                return True
    return False


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


def _differences(reference: dict, decisions: dict, undecided: set) -> list[str]:
    return [f"{' '.join(key)}: {reference.get(key)} -> {decisions.get(key)}"
            for key in sorted(set(reference) | set(decisions))
            if key not in undecided and reference.get(key) != decisions.get(key)]


def _reference(full_runs: list[dict], full_figures: list[dict]) -> tuple[dict, set]:
    """The decisions of the full recipe, and the rows it does not decide: its runs disagree, or its figures lie so
    near a budget that their own spread could carry them across."""
    keys = set().union(*full_runs)
    undecided = {key for key in keys if len({run.get(key) for run in full_runs}) > 1
                 or _near_budget([figures.get(key) for figures in full_figures])}
    return {key: full_runs[0].get(key) for key in keys - undecided}, undecided


def _tally(decisions: list) -> str:
    return ", ".join(f"{n}x {decision}" for decision, n in Counter(decisions).items())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--full-runs", type=int, default=3)
    parser.add_argument("--modes", default="cold,warm")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="time-to-verdict-") as tmp:
        tmp = Path(tmp)
        clone = tmp / "clone"
        subprocess.run(["git", "clone", "-q", str(REPO), str(clone)], check=True)
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=clone, capture_output=True, text=True).stdout.strip()
        warm_cache = tmp / "warm-cache"
        _bench(clone, warm_cache)  # fills the warm cache
        full_runs, full_figures = [], []
        for i in range(args.full_runs):
            code, wall, decisions, _, figures = _bench(clone, warm_cache, _fixed_target(tmp))
            full_runs.append(decisions), full_figures.append(figures)
            against = next((line for line in (tmp / "last-stdout.txt").read_text().splitlines()
                            if line.startswith("against")), "")
            print(f"commit {commit}; full fixed recipe (warm) {i + 1}/{args.full_runs}: exit {code} in {wall:.0f} s, "
                  f"{len(decisions)} rows; {against}", flush=True)
        reference, undecided = _reference(full_runs, full_figures)
        seen = {key: [run.get(key) for run in full_runs] for key in undecided}
        figures_seen = {key: [figures.get(key) for figures in full_figures] for key in undecided}
        summary = {}
        for mode in args.modes.split(","):
            walls, codes, lines, differing = [], [], [], 0
            for i in range(args.runs):
                cache = tmp / f"cold-{i}" if mode == "cold" else warm_cache
                code, wall, decisions, printed, figures = _bench(clone, cache)
                different = _differences(reference, decisions, undecided)
                differing += bool(different)
                for key in undecided:
                    seen[key].append(decisions.get(key))
                    figures_seen[key].append(figures.get(key))
                walls.append(wall), codes.append(code), lines.append(printed)
                print(f"  {mode} {i + 1}/{args.runs}: exit {code} in {wall:.1f} s, {printed} lines printed; "
                      f"decisions {'as the full recipe' if not different else 'DIFFER: ' + '; '.join(different)}",
                      flush=True)
            summary[mode] = (statistics.median(walls), codes.count(0), differing, max(lines))
        for mode, (median, passed, differing, most_lines) in summary.items():
            print(f"{mode}: median {median:.1f} s over {args.runs} runs; passed {passed}/{args.runs}; decisions differing "
                  f"from the full recipe in {differing}/{args.runs} (on the {len(reference)} rows it decides); "
                  f"at most {most_lines} lines printed")
        for key in sorted(undecided):
            full, rest = seen[key][:args.full_runs], seen[key][args.full_runs:]
            print(f"not decided by the full recipe itself: {' '.join(key)}: full {_tally(full)}; until-decided {_tally(rest)}")
            memory = [f"{f[0]:.2f}" if f and f[0] is not None else "?" for f in figures_seen[key]]
            print(f"  its memory figure, MB: full {', '.join(memory[:args.full_runs])}; "
                  f"until-decided {', '.join(memory[args.full_runs:])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
