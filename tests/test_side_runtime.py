"""The runtime A/B: a record made with another onnxruntime is measured again under that release, beside today's."""

import csv
import json
import os
import re
import subprocess
import sys

import onnxruntime
import pytest

from harness.gate.side_runtime import side_runtime

from conftest import run_cli


def _previous_release() -> str | None:
    """The registry's newest onnxruntime release below the installed one; None when the index cannot be read."""
    try:
        proc = subprocess.run([sys.executable, "-m", "pip", "index", "versions", "onnxruntime"], capture_output=True,
                              text=True, timeout=120)
    except subprocess.TimeoutExpired:
        return None
    found = re.search(r"Available versions: (.*)", proc.stdout)
    if not found:
        return None
    key = lambda v: tuple(int(p) for p in v.split(".") if p.isdigit())  # noqa: E731
    older = [v.strip() for v in found.group(1).split(",") if key(v.strip()) < key(onnxruntime.__version__)]
    return max(older, key=key) if older else None


def _set_record_runtime(path, version: str) -> None:
    rows = list(csv.DictReader(path.open()))
    for row in rows:
        row["ort_version"] = version
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


def _bench(tiny_suite, fast_target, results, *extra):
    return run_cli("bench", "--target", str(fast_target), "--suite", str(tiny_suite), "--results-dir", str(results),
                   *extra)


@pytest.mark.slow
def test_a_record_of_the_previous_release_is_measured_under_both_releases(tiny_suite, fast_target, tmp_path):
    previous = _previous_release()
    if previous is None:
        if os.environ.get("HARNESS_REQUIRE_INDEX"):
            pytest.fail("the package index cannot be read, so no earlier onnxruntime release can be installed")
        pytest.skip("the package index cannot be read")
    side = side_runtime(previous)
    assert side.python, side.reason
    said = subprocess.run([side.python, "-c", "import onnxruntime; print(onnxruntime.__version__)"],
                          capture_output=True, text=True).stdout.strip()
    assert said == previous
    results = tmp_path / "results"
    assert _bench(tiny_suite, fast_target, results, "--update").returncode == 0
    _set_record_runtime(results / "fast.csv", previous)
    run = _bench(tiny_suite, fast_target, results)
    assert run.returncode in (0, 1), run.stderr  # a real speed difference between releases may fail: that is the point
    gate = json.loads((results / "latest" / "fast.gate.json").read_text())
    row = gate["rows"][0]
    assert row["latency"]["method"] == "A/B"
    notes = " ".join(row["latency"]["notes"] + row["notes"])
    assert f"onnxruntime {previous} against {onnxruntime.__version__}" in notes
    assert f"recorded with onnxruntime {previous}, installed {onnxruntime.__version__}" in notes
    raw = json.loads((results / "latest" / "fast.raw.json").read_text())
    assert {r["model"] for r in raw["rows"]} == {"tiny_unet", "tiny_unet@recorded"}


def test_a_release_that_cannot_be_installed_is_said_and_not_gated(tiny_suite, fast_target, tmp_path):
    missing = side_runtime("0.0.1")
    assert missing.python is None and missing.reason.startswith("could not install onnxruntime 0.0.1")
    results = tmp_path / "results"
    assert _bench(tiny_suite, fast_target, results, "--update").returncode == 0
    _set_record_runtime(results / "fast.csv", "0.0.1")
    run = _bench(tiny_suite, fast_target, results)
    assert run.returncode == 0, run.stdout
    row = json.loads((results / "latest" / "fast.gate.json").read_text())["rows"][0]
    assert row["latency"]["method"] == "not gated"
    assert any("could not install onnxruntime 0.0.1" in n for n in row["notes"])
    strict = _bench(tiny_suite, fast_target, results, "--strict")
    assert strict.returncode == 1
