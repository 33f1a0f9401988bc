"""Shared fixtures: real images from the shipped CamVid sample, a private export cache."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

from harness.spec import ASSETS_DIR

SAMPLE_DIR = ASSETS_DIR / "camvid_val24"
sys.path.insert(0, str(Path(__file__).parent / "fixtures"))  # history_repo.py
CAMVID_IGNORE = 11
CAMVID_CLASSES = 11


@pytest.fixture(autouse=True, scope="session")
def private_cache(tmp_path_factory):
    import os

    path = tmp_path_factory.mktemp("cache")
    os.environ["HARNESS_CACHE_DIR"] = str(path)
    return path


@pytest.fixture
def tiny_root(tmp_path) -> Path:
    """A real dataset root: train/ (8 frames) and val/ (4 frames) from the shipped sample, with classes.txt."""
    root = tmp_path / "camvid_tiny"
    frames = sorted((SAMPLE_DIR / "images").iterdir())
    for split, chosen in (("train", frames[:8]), ("val", frames[8:12])):
        for sub in ("images", "masks"):
            (root / split / sub).mkdir(parents=True)
            for frame in chosen:
                shutil.copy(SAMPLE_DIR / sub / frame.name, root / split / sub / frame.name)
    shutil.copy(SAMPLE_DIR / "classes.txt", root / "classes.txt")
    return root


@pytest.fixture
def small_split(tmp_path) -> Path:
    """A real 6-frame images/ + masks/ folder copied from the shipped sample."""
    root = tmp_path / "split"
    for sub in ("images", "masks"):
        (root / sub).mkdir(parents=True)
        for path in sorted((SAMPLE_DIR / sub).iterdir())[:6]:
            shutil.copy(path, root / sub / path.name)
    return root


def run_cli(*args: str, cwd=None, timeout: float = 600, env: dict | None = None):
    """Run the real `harness` command in a subprocess, as a user would (`env`: variables added to this one's)."""
    import os
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", "harness", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=timeout, env={**os.environ, **env} if env else None)


TINY_SUITE = """
[data]
dir = "{data}"
ignore_index = 11

[[model]]
name = "tiny_unet"
arch = "unet_small"
num_classes = 11
input_size = [184, 240]
kwargs = {{ width = 0.125 }}
"""

FAST_TARGET = """
description = "fast test target"
threads = 1
min_runs = 5
min_duration_s = 0.0
warmup_runs = 1
"""


@pytest.fixture
def tiny_suite(tmp_path, small_split) -> Path:
    path = tmp_path / "suite.toml"
    path.write_text(TINY_SUITE.format(data=small_split))
    return path


@pytest.fixture
def baseline_suite(tmp_path) -> Path:
    """The default suite's first model (the shipped PSPNet-R18) alone, on the shipped sample."""
    path = tmp_path / "baseline_suite.toml"
    path.write_text(f'[data]\ndir = "{SAMPLE_DIR}"\nignore_index = 11\n\n[[model]]\nname = "pspnet_resnet18"\n'
                    f'arch = "pspnet_resnet18"\nnum_classes = 11\ninput_size = [192, 240]\n'
                    f'checkpoint = "{ASSETS_DIR / "checkpoints" / "pspnet_resnet18_camvid.pt"}"\n')
    return path


@pytest.fixture
def fast_target(tmp_path) -> Path:
    path = tmp_path / "fast.toml"
    path.write_text(FAST_TARGET)
    return path


def results_csv_text(target: str, model: str) -> str:
    """A schema-valid results CSV with one row, as a committed record would be."""
    from harness.results import ResultRow, rows_to_csv_text
    from harness.results.row import CELL_FIELDS

    values = dict.fromkeys(CELL_FIELDS)
    values.update(target=target, model=model, variant="fp32", serving="1 per call", status="ok", verdict="fits", flags="", recipe="", nodes_in_float_names="",
                  p50_ms=12.5, threads=1, images_at_once=1, cpu_mem_arena=False, cpu_model="cpu", cpu_count=2,
                  cpu_isa="avx2", ort_version="1", harness_version="0", measured_at="2026-01-01T00:00:00Z")
    return rows_to_csv_text([ResultRow(**values)])


# harness history, bisect and the drift guard (test_history.py, test_bisect.py, test_drift.py) on the repository
# tests/fixtures/history_repo.py writes. The suite runs on two workers, and the other one's tests (a Ray cluster, a
# service under load, training) come and go on both cores: a 6 % step measured x1.24 there once. So these tests take
# larger steps (each +25-35 %, the jump +60 %) and never fail on the tool saying "undecided";
# benchmarks/history_drift.py measures the issue's own steps (+6-9 %, each passing its own gate) on a quiet host.
# They measure on the last CPU (other tests pin their children to the first), with shorter children and at most 5
# rounds of an A/B still undecided (the larger steps decide sooner).
_CPUS = sorted(os.sched_getaffinity(0))
HISTORY_TARGET_EXTRA = ("gate_ab_max_processes = 5\n" + (f"cpu_affinity = [{_CPUS[-1]}]\n" if len(_CPUS) > 1 else ""))


@pytest.fixture(scope="module")
def history_repo(tmp_path_factory):
    """The ten-commit repository (its folder, the commits' hashes oldest first), with the shipped sample's images."""
    from history_repo import TARGET, build_repo

    root = tmp_path_factory.mktemp("history")
    data = root / "split"
    for sub in ("images", "masks"):
        (data / sub).mkdir(parents=True)
        for path in sorted((SAMPLE_DIR / sub).iterdir())[:6]:
            shutil.copy(path, data / sub / path.name)
    target = TARGET.replace("min_duration_s = 0.3", "min_duration_s = 0.15") + HISTORY_TARGET_EXTRA
    shas = build_repo(root / "repo", data, target, passes_per_step=4, jump_depth=16)
    return root / "repo", shas


def history_cli(repo, command, *args, env=None):
    return run_cli(command, "--target", "fast.toml", "--suite", "suite.toml", "--results-dir", "results", *args, cwd=repo,
                   env=env)
