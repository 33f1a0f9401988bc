"""Suites the benchmark scripts run on: parts of the built-in default, written to a scratch folder."""

from __future__ import annotations

import contextlib
import csv
import os
import subprocess
import sys
import tomllib
from pathlib import Path

from harness.variants.quantize import DEFAULT_CALIBRATION_IMAGES, DEFAULT_CALIBRATION_METHOD
from harness.spec import ASSETS_DIR, DEFAULT_SUITE


NEIGHBOUR = """
import os, numpy as np
os.sched_setaffinity(0, {cpus})
a = np.ones(256 * 2**20 // 8)
while True:
    b = a.copy()
"""


@contextlib.contextmanager
def noisy_neighbour():
    """Another process copying 256 MB numpy arrays in a loop on the last CPU (targets measure on the first)."""
    cpus = sorted(os.sched_getaffinity(0))
    neighbour = subprocess.Popen([sys.executable, "-c", NEIGHBOUR.format(cpus={cpus[-1]})]) if len(cpus) > 1 else None
    try:
        yield
    finally:
        if neighbour:
            neighbour.kill()
            neighbour.wait()


def bench_rows(folder: Path, suite: Path, target: str) -> list[dict[str, str]]:
    """One `harness bench --no-gate` of `suite` under `target` (a name or a .toml), its rows as CSV dicts."""
    results = folder / "results"
    subprocess.run([sys.executable, "-m", "harness", "bench", "--target", target, "--suite", str(suite), "--no-gate",
                    "--results-dir", str(results)], check=True, stdout=subprocess.DEVNULL)
    with open(results / f"{Path(target).stem}.csv", newline="") as f:
        return list(csv.DictReader(f))


def subset_suite(folder: Path, names: list[str], data_dir: Path | None = None, source: Path = DEFAULT_SUITE) -> Path:
    """A copy of a built-in suite (the default unless `source`) holding only the named models (in that order),
    paths made absolute."""
    default = tomllib.loads(source.read_text())
    models = {m["name"]: m for m in default["model"]}
    calibration = default["calibration"]
    lines = ["[data]", f'dir = "{data_dir or ASSETS_DIR / default["data"]["dir"]}"',
             f'ignore_index = {default["data"]["ignore_index"]}', "", "[calibration]",
             f'dir = "{ASSETS_DIR / calibration["dir"]}"', f'method = "{calibration.get("method", DEFAULT_CALIBRATION_METHOD)}"',
             f'images = {calibration.get("images", DEFAULT_CALIBRATION_IMAGES)}', ""]
    for name in names:
        m = models[name]
        lines += ["[[model]]", f'name = "{name}"', f'arch = "{m["arch"]}"', f'num_classes = {m["num_classes"]}',
                  f'input_size = {list(m["input_size"])}', f'checkpoint = "{ASSETS_DIR / m["checkpoint"]}"', ""]
    path = folder / "suite.toml"
    path.write_text("\n".join(lines))
    return path


def one_model(model: str, target_name: str):
    """(suite, target, inputs) for one model of the built-in default under a target: what tune's benchmarks search."""
    import dataclasses

    from harness.bench import BenchInputs
    from harness.spec import load_suite
    from harness.targets import load_target
    from harness.variants.quantize import default_options

    suite = load_suite(str(ASSETS_DIR / "default_suite.toml"))
    suite = dataclasses.replace(suite, models=[m for m in suite.models if m.name == model])
    inputs = BenchInputs(suite.data_dir, suite.calibration_dir, default_options(
        calibration_method=suite.calibration_method, calibration_images=suite.calibration_images),
        calibration_book=Path("results") / "calibration")
    return suite, load_target(target_name), inputs
