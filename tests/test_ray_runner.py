"""The Ray runner on a real local Ray cluster (two nodes on 127.0.0.1, each offering one `harness_measure`).

Ray is an optional extra (`pip install 'harness[ray]'`); .ci/run installs it and sets HARNESS_REQUIRE_RAY=1,
so CI fails rather than skips without it.
"""

from __future__ import annotations

import csv
import os
import socket
import sys
from pathlib import Path

import pytest

from conftest import SAMPLE_DIR, run_cli
from harness.spec import ASSETS_DIR

import importlib.util

HAVE_RAY = importlib.util.find_spec("ray") is not None

needs_ray = pytest.mark.skipif(not HAVE_RAY and not os.environ.get("HARNESS_REQUIRE_RAY"),
                               reason="Ray is not installed (pip install 'harness[ray]')")
TWO_MODELS = ("pspnet_resnet18", "pspnet_resnet18_pruned30")


@pytest.fixture(scope="module", autouse=True)
def loopback_only():
    """Ray picks the machine's outward address by default; this makes every node (and the CLI) use 127.0.0.1."""
    before = os.environ.get("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER")
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    yield
    if before is None:
        del os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"]
    else:
        os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = before


@pytest.fixture(scope="module")
def cluster():
    from ray.cluster_utils import Cluster

    node = {"num_cpus": 1, "resources": {"harness_measure": 1}, "node_ip_address": "127.0.0.1",
            "include_dashboard": False}
    made = Cluster(initialize_head=True, head_node_args=node)
    made.add_node(**{k: v for k, v in node.items() if k != "include_dashboard"})
    made.wait_for_nodes()
    yield made
    made.shutdown()


def _suite(tmp_path: Path) -> Path:
    zoo = ASSETS_DIR / "checkpoints"
    checkpoints = {"pspnet_resnet18": zoo / "pspnet_resnet18_camvid.pt",
                   "pspnet_resnet18_pruned30": zoo / "zoo" / "pspnet_resnet18_pruned30.pt"}
    text = f'[data]\ndir = "{SAMPLE_DIR}"\nignore_index = 11\n'
    for name in TWO_MODELS:
        text += (f'\n[[model]]\nname = "{name}"\narch = "pspnet_resnet18"\nnum_classes = 11\ninput_size = [192, 240]\n'
                 f'checkpoint = "{checkpoints[name]}"\n')
    path = tmp_path / "two_models.toml"
    path.write_text(text)
    return path


def _target(tmp_path: Path) -> Path:
    path = tmp_path / "fast.toml"
    path.write_text('description = "fast"\nthreads = 1\nmin_runs = 10\nmin_duration_s = 0.1\nwarmup_runs = 1\n'
                    'processes = 2\nvariants = ["fp32"]\n')
    return path


def _rows(path: Path) -> dict[tuple[str, str], dict]:
    with open(path, newline="") as f:
        return {(r["model"], r["variant"]): r for r in csv.DictReader(f)}


@needs_ray
@pytest.mark.slow
def test_a_two_model_suite_on_a_ray_cluster_gives_the_local_rows_each_naming_its_node(cluster, tmp_path):
    suite, target = _suite(tmp_path), _target(tmp_path)
    for where, extra in (("local", ()), ("ray", ("--cluster", cluster.address))):
        proc = run_cli("bench", "--target", str(target), "--suite", str(suite), "--no-gate",
                       "--results-dir", str(tmp_path / where), *extra)
        assert proc.returncode == 0, proc.stderr
    local, remote = _rows(tmp_path / "local" / "fast.csv"), _rows(tmp_path / "ray" / "fast.csv")
    assert set(local) == set(remote) == {(m, "fp32") for m in TWO_MODELS}
    nodes = set()
    for key, row in remote.items():
        assert row["status"] == "ok", row["status"]
        assert row["quality_pct"] == local[key]["quality_pct"] and row["file_mb"] == local[key]["file_mb"]
        assert row["measured_on"].startswith("ray node ") and local[key]["measured_on"].startswith("local (")
        assert row["processes"] == "2" and row["model_mb"] and row["p50_ms"]
        nodes.add(row["measured_on"])
    assert len(nodes) == 2, f"the two models should each have had a node of their own: {nodes}"


@needs_ray
def test_an_unreachable_cluster_is_refused_in_one_line(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = run_cli("bench", "--target", str(_target(tmp_path)), "--suite", str(_suite(tmp_path)),
                   "--cluster", f"127.0.0.1:{port}", "--results-dir", str(tmp_path / "r"), timeout=60)
    assert proc.returncode == 2 and "cannot connect to the Ray cluster at 127.0.0.1" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr


def test_without_ray_installed_cluster_says_how_to_install_it(tmp_path):
    blocker = tmp_path / "no_ray"  # a `ray` that fails to import, as on a machine without the extra
    (blocker / "ray").mkdir(parents=True)
    (blocker / "ray" / "__init__.py").write_text("raise ImportError('No module named ray')\n")
    import subprocess

    proc = subprocess.run([sys.executable, "-m", "harness", "bench", "--target", str(_target(tmp_path)), "--suite",
                           str(_suite(tmp_path)), "--cluster", "auto", "--results-dir", str(tmp_path / "r")],
                          capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(blocker)}, timeout=120)
    assert proc.returncode == 2 and "pip install 'harness[ray]'" in proc.stderr, proc.stderr


@needs_ray
@pytest.mark.slow
def test_tune_on_a_ray_cluster_screens_a_batch_on_each_node_side_by_side(cluster, tmp_path):
    """Two nodes: each screening batch is dealt into two groups (each a copy of the model with its own fp32), one per
    node; survivors and finalists each in one group on one node."""
    suite, target = _suite(tmp_path), _target(tmp_path)
    suite.write_text(suite.read_text().split("\n[[model]]\nname = \"pspnet_resnet18_pruned30\"")[0])
    proc = run_cli("tune", "pspnet_resnet18", "--target", str(target), "--suite", str(suite), "--cluster",
                   cluster.address, "--backend", "onnxruntime", "--trials", "4", "--batch", "2", "--survivors", "1",
                   "--finalists", "1", "--screen-images", "4", "--no-write", "--results-dir", str(tmp_path / "tuned"))
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    with open(tmp_path / "tuned" / "latest" / "tune-fast-pspnet_resnet18.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 4 and all(r["measured_on"].startswith("ray node ") for r in rows if r["p50_ms"])
    screened = {r["measured_on"] for r in rows if r["stage"] == "screen" and r["p50_ms"]}
    assert len(screened) == 2, f"each node should have screened a group of its own: {screened}"
    assert "screen 1: 4 candidates" in " ".join(proc.stdout.split())  # one batch of 2 per node, side by side
