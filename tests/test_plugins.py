"""Backends from outside the package: a plugin registered by an entry point measures rows end to end."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import pytest

from conftest import FAST_TARGET, run_cli

PLUGINS = Path(__file__).parent / "plugins"  # numpy_reference_backend.py and its dist-info (entry point)


@pytest.fixture
def small_suite(tiny_suite) -> Path:
    """The tiny suite at a quarter of its pixels: numpy's reference kernels take ~0.1 s a call there, not ~0.4 s."""
    path = tiny_suite.with_name("small_suite.toml")
    path.write_text(tiny_suite.read_text().replace("input_size = [184, 240]", "input_size = [96, 128]"))
    return path


def _with_plugins() -> dict:
    return {"PYTHONPATH": os.pathsep.join(filter(None, (str(PLUGINS), os.environ.get("PYTHONPATH"))))}


@pytest.mark.slow
def test_a_backend_registered_by_an_entry_point_yields_measured_rows_in_harness_bench(tmp_path, small_suite):
    target = tmp_path / "plug.toml"
    target.write_text(FAST_TARGET + 'variants = ["fp32", "int8-dynamic"]\nbackends = ["onnxruntime", "numpy-reference"]\n'
                      'processes = 1\n')
    proc = run_cli("bench", "--target", str(target), "--suite", str(small_suite), "--no-gate",
                   "--results-dir", str(tmp_path / "results"), env=_with_plugins())
    assert proc.returncode == 0, proc.stderr
    with open(tmp_path / "results" / "plug.csv", newline="") as f:
        rows = {(r["variant"], r["backend"]): r for r in csv.DictReader(f)}
    # the plugin runs the variants it names (fp32), beside ONNX Runtime's rows in the same lockstep run
    assert set(rows) == {("fp32", "onnxruntime"), ("int8-dynamic", "onnxruntime"), ("fp32", "numpy-reference")}
    plugin, reference = rows[("fp32", "numpy-reference")], rows[("fp32", "onnxruntime")]
    assert plugin["status"] == "ok" and plugin["precision"] == "f32 (numpy)", plugin["status"]
    import onnx

    assert plugin["backend_version"] == onnx.__version__
    assert float(plugin["p50_ms"]) > 0 and float(plugin["load_ms"]) > 0 and float(plugin["speedup_vs_fp32"]) > 0
    # another runtime's kernels on the same file and images: the same predictions, hence the same quality
    assert float(plugin["agreement_with_fp32_pct"]) > 99.9
    assert abs(float(plugin["quality_pct"]) - float(reference["quality_pct"])) < 0.05
    assert float(plugin["peak_rss_mb"]) > 0 and plugin["floor_rss_mb"]  # its own runtime floor
    assert "numpy-reference" in proc.stdout


def test_without_the_plugin_the_backend_is_refused_in_one_line_naming_the_ones_there_are(tmp_path, tiny_suite):
    target = tmp_path / "plug.toml"
    target.write_text(FAST_TARGET + 'backends = ["onnxruntime", "numpy-reference"]\n')
    proc = run_cli("bench", "--target", str(target), "--suite", str(tiny_suite), "--no-gate",
                   "--results-dir", str(tmp_path / "results"))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "numpy-reference" in proc.stderr and "onnxruntime, openvino, litert" in proc.stderr, proc.stderr


def test_a_registered_plugin_whose_module_is_broken_is_named_not_a_traceback(tmp_path, tiny_suite):
    broken = tmp_path / "broken"
    (broken / "harness_broken-0.1.dist-info").mkdir(parents=True)
    (broken / "harness_broken-0.1.dist-info" / "METADATA").write_text("Metadata-Version: 2.1\nName: harness-broken\n"
                                                                      "Version: 0.1\n")
    (broken / "harness_broken-0.1.dist-info" / "entry_points.txt").write_text("[harness.backends]\nbroken = gone_module\n")
    target = tmp_path / "plug.toml"
    target.write_text(FAST_TARGET + 'backends = ["onnxruntime", "broken"]\n')
    proc = run_cli("bench", "--target", str(target), "--suite", str(tiny_suite), "--no-gate",
                   "--results-dir", str(tmp_path / "results"), env={"PYTHONPATH": str(broken)})
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "backend 'broken' is registered but its module cannot be imported" in proc.stderr, proc.stderr


@pytest.mark.slow
def test_an_upgrade_of_a_backends_runtime_is_measured_against_the_recorded_release_in_the_same_run(tmp_path, small_suite):
    """As an onnxruntime upgrade is: the record's release of the plugin's runtime (onnx) in a side environment,
    in lockstep beside today's."""
    import json

    import onnx

    from test_side_runtime import _previous_release

    if _previous_release() is None:  # the index cannot be read: no older release can be installed
        if os.environ.get("HARNESS_REQUIRE_INDEX"):
            pytest.fail("the package index cannot be read, so no earlier onnx release can be installed")
        pytest.skip("the package index cannot be read")
    previous = "1.22.0"
    target = tmp_path / "plug.toml"
    target.write_text(FAST_TARGET + 'variants = ["fp32"]\nbackends = ["onnxruntime", "numpy-reference"]\n'
                      'processes = 1\ngate_ab_processes = 3\ngate_ab_max_processes = 3\n')
    results = tmp_path / "results"
    args = ("bench", "--target", str(target), "--suite", str(small_suite), "--results-dir", str(results))
    assert run_cli(*args, "--update", env=_with_plugins()).returncode == 0
    record = results / "plug.csv"
    rows = list(csv.DictReader(record.open(newline="")))
    for row in rows:
        if row["backend"] == "numpy-reference":
            row["backend_version"] = previous  # as if recorded under the previous onnx
    with record.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    run = run_cli(*args, env=_with_plugins())
    assert run.returncode in (0, 1), run.stderr  # a real difference between the releases may fail: that is the point
    gate = {(r["variant"], r["backend"]): r for r in json.loads((results / "latest" / "plug.gate.json").read_text())["rows"]}
    plugin = gate[("fp32", "numpy-reference")]
    assert plugin["latency"]["method"] == "A/B", plugin
    notes = " ".join(plugin["latency"]["notes"] + plugin["notes"])
    assert f"numpy-reference {previous} against {onnx.__version__}" in notes
    assert f"recorded with numpy-reference {previous}, installed {onnx.__version__}" in notes
    raw = json.loads((results / "latest" / "plug.raw.json").read_text())
    assert {r["model"] for r in raw["rows"]} == {"tiny_unet", "tiny_unet@recorded"}
    # the side environment carries the plugin itself: its children load it without this test's PYTHONPATH
    import subprocess

    side = next((Path(os.environ["HARNESS_CACHE_DIR"]) / "runtimes").glob(f"onnx-{previous}-onnxruntime-*"))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    said = subprocess.run([str(side / "bin" / "python"), "-c", "from harness.measure.backends import load_model, backend_module; "
                           "import onnx; print(backend_module('numpy-reference').PACKAGE, onnx.__version__)"],
                          capture_output=True, text=True, env=env, timeout=120)
    assert said.stdout.split() == ["onnx", previous], said.stderr
    # without the upgrade (the record's release is today's) nothing is A/B'd: no false alarm, no side environment
    assert run_cli(*args, "--update", env=_with_plugins()).returncode == 0
    again = run_cli(*args, env=_with_plugins())
    assert again.returncode == 0, again.stderr
    gate = {(r["variant"], r["backend"]): r for r in json.loads((results / "latest" / "plug.gate.json").read_text())["rows"]}
    assert gate[("fp32", "numpy-reference")]["latency"]["method"] == "unchanged"


def test_a_backend_not_registered_where_the_child_runs_is_named_and_releases_compare_without_build_suffixes():
    from harness.measure.backends import backend_module, same_release

    with pytest.raises(LookupError, match="backend 'numpy-reference' is not registered where this runs"):
        backend_module("numpy-reference")  # this process has no tests/plugins on its path: a device without it
    assert same_release("2026.4.1", "2026.4.1.dev20260101") and same_release("1.23.2", "1.23.2+cpu")
    assert not same_release("1.22.0", "1.23.2") and not same_release("2026.3.0", "2026.4.1")
