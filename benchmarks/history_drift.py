"""Benchmark: drift that no single step shows, on a git repository with a known history (tests/fixtures/history_repo.py).

Model `drift` gets five steps of +6-8 % compute (commits 3, 5, 7, 8, 10); model `jump` one +30 % step at
commit 6 and four commits that change its files but not its compute. The script runs, each as a user would:
1. every step's own gate: the record made at the commit before the step (`bench --update`), then `bench`
   at the step: each must pass (each step under the gate's 10 %);
2. `harness history --model drift --last 10`: the cumulative slowdown, the steps in order, each version once;
3. the gate at commit 10 with the record at commit 9 and `gate_baseline` at commit 1: it must fail on drift;
4. `harness bisect --model jump --good c1 --bad c10`: it must name commit 6, in at most 5 A/Bs.

    python benchmarks/history_drift.py [--keep DIR]
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "fixtures"))
from history_repo import build_repo, git  # noqa: E402

from harness.spec import ASSETS_DIR  # noqa: E402

STEPS = (3, 5, 7, 8, 10)


def harness(cwd: Path, *args: str) -> tuple[subprocess.CompletedProcess, float]:
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "harness", *args, "--target", "fast.toml", "--suite", "suite.toml",
                           "--results-dir", "results"], cwd=cwd, capture_output=True, text=True)
    return proc, time.monotonic() - start


def drift_row(work: Path) -> dict:
    gate = json.loads((work / "results" / "latest" / "fast.gate.json").read_text())
    return next(r for r in gate["rows"] if r["model"] == "drift")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", help="build the repository here and keep it")
    args = parser.parse_args()
    root = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="history-drift-"))
    data = root / "split"
    for sub in ("images", "masks"):
        (data / sub).mkdir(parents=True, exist_ok=True)
        for path in sorted((ASSETS_DIR / "camvid_val24" / sub).iterdir())[:6]:
            shutil.copy(path, data / sub / path.name)
    repo = root / "repo"
    shas = build_repo(repo, data)
    commit = git(Path(__file__).resolve().parents[1], "rev-parse", "--short", "HEAD")  # the harness measured
    print(f"repository: {repo} ({len(shas)} commits)")

    print("\n| step | commit | own gate | p50 x (A/B against the commit before) | decision | wall s |\n|---|---|---|---|---|---|")
    work = root / "work"
    for step in STEPS:
        if work.exists():
            git(repo, "worktree", "remove", "--force", str(work))
        git(repo, "worktree", "add", "-q", str(work), shas[step - 2])
        recorded, _ = harness(work, "bench", "--update")
        assert recorded.returncode == 0, recorded.stdout + recorded.stderr
        git(work, "checkout", "-q", shas[step - 1])
        gated, wall = harness(work, "bench")
        p50 = drift_row(work)["latency"].get("p50") or {}
        print(f"| c{step - 1} → c{step} | {shas[step - 1][:8]} | {'passed' if gated.returncode == 0 else 'FAILED'} | "
              f"x{p50.get('ratio', 0):.3f} ({p50.get('low', 0):.3f}-{p50.get('high', 0):.3f}) | {p50.get('outcome')} | "
              f"{wall:.0f} |")

    history, wall = harness(repo, "history", "--model", "drift", "--last", "10")
    assert history.returncode == 0, history.stdout + history.stderr
    rows = list(csv.DictReader((repo / "results" / "latest" / "history-fast.csv").open()))
    print(f"\n`harness history --model drift --last 10`: {len(rows)} distinct versions of 10 revisions, {wall:.0f} s\n")
    print("| version | commits | p50 ms | p50 / today's (95 % interval) | decision |\n|---|---|---|---|---|")
    for r in rows:
        ratio = "1 (anchor)" if r["today"] == "True" else \
            f"x{float(r['p50_vs_today']):.3f} ({float(r['p50_vs_today_low']):.3f}-{float(r['p50_vs_today_high']):.3f})"
        print(f"| {r['version']} ({r['subject']}) | {len(r['revisions'].split())} | {float(r['p50_ms']):.2f} | {ratio} | "
              f"{r['p50_decision'] or 'today'} |")

    (work / "fast.toml").write_text((work / "fast.toml").read_text() + f'gate_baseline = "{shas[0]}"\n')
    guarded, wall = harness(work, "bench")
    reason = next((r for r in drift_row(work)["reasons"] if r.startswith("drift since")), "none")
    print(f"\ngate at c10 (record at c9) with gate_baseline = c1: exit {guarded.returncode} in {wall:.0f} s; {reason}")

    bisect, wall = harness(repo, "bisect", "--model", "jump", "--good", shas[0], "--bad", shas[9])
    found = re.search(r"first worse revision: (\w+) (\S+) \((\d+) A/B", bisect.stdout)
    print(f"\n`harness bisect --model jump --good c1 --bad c10`: exit {bisect.returncode} in {wall:.0f} s; "
          + (f"names {found.group(1)} ({found.group(2)}; the step is c6 = {shas[5][:8]}) in {found.group(3)} A/B(s)"
             if found else bisect.stdout[-500:]))
    print(f"\nharness at {commit}")
    if not args.keep:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
