"""Check: two `harness bench --update` runs with different suites, at the same time, on one record, repeated.

Before the record lock, 1 of 8 trials lost one suite's rows while both runs said "updated". Each
repetition here starts both runs together and then reads the record: every run's rows must be there.

    python benchmarks/concurrent_updates.py [--repeats 20]
"""

from __future__ import annotations

import argparse
import csv
import subprocess
import sys
import tempfile
from pathlib import Path

from harness.spec import ASSETS_DIR

SUITE = """[data]
dir = "{data}"
ignore_index = 11

[[model]]
name = "{name}"
arch = "unet_small"
num_classes = 11
input_size = [96, 128]
kwargs = {{ width = {width} }}
"""
TARGET = "threads = 1\nvariants = [\"fp32\"]\nwarmup_runs = 1\nmin_runs = 5\nmin_duration_s = 0.0\nprocesses = 1\n"


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    lost = 0
    with tempfile.TemporaryDirectory(prefix="concurrent-") as tmp:
        folder = Path(tmp)
        (folder / "t.toml").write_text(TARGET)
        for name, width in (("suite_a", 0.125), ("suite_b", 0.0625)):
            (folder / f"{name}.toml").write_text(SUITE.format(data=ASSETS_DIR / "camvid_val24", name=name, width=width))
        for repeat in range(args.repeats):
            record = folder / "results" / "t.csv"
            record.unlink(missing_ok=True)
            runs = [subprocess.Popen([sys.executable, "-m", "harness", "bench", "--target", "t.toml", "--suite",
                                      f"{name}.toml", "--results-dir", "results", "--update"], cwd=folder,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) for name in ("suite_a", "suite_b")]
            codes = [run.wait() for run in runs]
            models = {row["model"] for row in csv.DictReader(record.open())}
            ok = models == {"suite_a", "suite_b"} and codes == [0, 0]
            lost += not ok
            print(f"repeat {repeat + 1}/{args.repeats}: exit codes {codes}, models in the record {sorted(models)}"
                  f"{'' if ok else '  <-- LOST'}", flush=True)
    print(f"{args.repeats - lost} of {args.repeats} repeats kept both suites' rows")
    return 1 if lost else 0


if __name__ == "__main__":
    sys.exit(main())
