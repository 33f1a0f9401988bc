"""Named variants ([variant.NAME] in a target): read and refused like the target's own keys; made, measured, recorded
and gated with their own quantization settings and session options."""

from __future__ import annotations

import csv
import json

import pytest
from conftest import FAST_TARGET, run_cli

from harness.errors import HarnessError
from harness.spec import ASSETS_DIR
from harness.targets import load_target
from harness.variants.quantize import QuantizeOptions

NAMED = """
variants = ["fp32", "int8-static", "int8-tuned"]
ship = ["int8-tuned"]
[variant.int8-tuned]
base = "int8-static"
calibration_method = "entropy"
per_channel = false
[variant.int8-tuned.onnxruntime]
allow_spinning = {spinning}
"""
CALIBRATION = ("--calibration-data", str(ASSETS_DIR / "camvid_train32"), "--calibration-images", "8")


AB = "gate_ab_processes = 3\ngate_ab_max_processes = 3\n"  # the A/B is what is asserted, not its decision: short


def _target(tmp_path, extra: str, name: str = "named"):
    path = tmp_path / f"{name}.toml"
    path.write_text(FAST_TARGET + AB + extra)
    return path


def test_a_named_variant_reads_as_its_base_with_its_own_settings(tmp_path):
    target = load_target(str(_target(tmp_path, NAMED.format(spinning="false"))))
    variant = target.scenario.variant("int8-tuned")
    assert (variant.name, variant.base, variant.needs_calibration) == ("int8-tuned", "int8-static", True)
    options = variant.named.quantize_options(QuantizeOptions(calibration_images=8))
    assert (options.calibration_method, options.per_channel, options.calibration_images) == ("entropy", False, 8)
    assert variant.named.session_for("onnxruntime") == {"allow_spinning": False}
    assert target.scenario.variant("int8-static").named is None
    assert load_target(str(_target(tmp_path, "variants = ['fp32']\n[variant.ov]\nbase = 'fp32'\nbackend = 'openvino'\n",
                                   "ov"))).scenario.variant("ov").backends == ("openvino",)


@pytest.mark.parametrize("table, said", [
    ("[variant.int8-tuned]\nbase = 'int9'\n", "base 'int9' is not a registered variant"),
    ("[variant.int8-tuned]\ncalibration_method = 'entropy'\n", "needs base ="),
    ("[variant.int8-tuned]\nbase = 'int8-static'\nmethod = 'entropy'\n", "has no setting 'method'"),
    ("[variant.int8-tuned]\nbase = 'int8-static'\nper_channel = 'no'\n", "per_channel must be bool"),
    ("[variant.int8-tuned]\nbase = 'int8-static'\ncalibration_method = 'mse'\n", "calibration method 'mse' is unknown"),
    ("[variant.int8-tuned]\nbase = 'bf16'\nbackend = 'onnxruntime'\n", "backend 'onnxruntime' does not run bf16"),
    ("[variant.int8-tuned]\nbase = 'int8-static'\n[variant.int8-tuned.onnxruntime]\nspin = false\n", "no option 'spin'"),
    ("[variant.int8-static]\nbase = 'int8-static'\n", "is a registered variant's name"),
    ("[variant.'a b']\nbase = 'fp32'\n", "variant name 'a b' is refused"),
])
def test_a_bad_named_variant_is_refused_in_one_line(tmp_path, table, said):
    with pytest.raises(HarnessError, match=said):
        load_target(str(_target(tmp_path, "variants = ['fp32']\n" + table)))


def test_an_undeclared_name_says_which_are_declared(tmp_path, tiny_suite):
    path = _target(tmp_path, NAMED.format(spinning="false").replace('"int8-tuned"]\nship', '"int8-tuner"]\nship')
                   .replace('ship = ["int8-tuned"]', ''))
    result = run_cli("bench", "--suite", str(tiny_suite), "--target", str(path), *CALIBRATION,
                     "--results-dir", str(tmp_path / "results"))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "unknown variant 'int8-tuner'" in result.stderr and "the target names int8-tuned" in result.stderr


def test_a_named_variant_is_made_measured_recorded_and_gated_with_its_settings(tmp_path, tiny_suite):
    results = tmp_path / "results"
    path = _target(tmp_path, NAMED.format(spinning="false"))
    args = ("bench", "--suite", str(tiny_suite), "--target", str(path), *CALIBRATION, "--results-dir", str(results))
    first = run_cli(*args, "--update")
    assert first.returncode == 0, first.stderr[-2000:]
    rows = {r["variant"]: r for r in csv.DictReader((results / "named.csv").open())}
    tuned, plain = rows["int8-tuned"], rows["int8-static"]
    assert tuned["status"] == "ok" and "Entropy" in tuned["recipe"] and "per-tensor" in tuned["recipe"]
    assert "Percentile" in plain["recipe"] and "per-channel" in plain["recipe"]
    assert tuned["onnx_sha256"] != plain["onnx_sha256"]
    assert (tuned["allow_spinning"], plain["allow_spinning"]) == ("False", "True")
    assert (results / "calibration" / "tiny_unet.int8-tuned.entropy.json").is_file()
    latest = json.loads((results / "latest" / "named.gate.json").read_text())
    assert latest["passed"]

    changed = path.read_text().replace("allow_spinning = false", "allow_spinning = true")
    path.write_text(changed)
    second = run_cli(*args)
    assert second.returncode == 0, second.stderr[-2000:]
    notes = json.dumps(json.loads((results / "latest" / "named.gate.json").read_text()))
    assert "int8-tuned options" in notes and '\\"allow_spinning\\":false' in notes, notes[:3000]
    rows = {r["variant"]: r for r in csv.DictReader((results / "latest" / "named.csv").open())}
    assert rows["int8-tuned"]["allow_spinning"] == "True" and rows["int8-tuned"]["onnx_sha256"] == tuned["onnx_sha256"]


def test_a_named_variant_whose_settings_changed_is_ab_tested_against_its_recorded_settings(tmp_path, small_split):
    """The partner's named variant is made as the target file declared it at the record's commit."""
    import subprocess

    from conftest import TINY_SUITE

    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "suite.toml").write_text(TINY_SUITE.format(data=small_split))
    (repo / "named.toml").write_text(FAST_TARGET + AB + NAMED.format(spinning="false"))

    def git(*args):
        subprocess.run(["git", "-c", "user.email=t@t", "-c", "user.name=t", *args], cwd=repo, check=True,
                       capture_output=True)

    git("init", "-q")
    git("add", ".")
    git("commit", "-q", "-m", "entropy")
    args = ("bench", "--suite", "suite.toml", "--target", "named.toml", *CALIBRATION, "--results-dir", "results")
    assert run_cli(*args, "--update", cwd=repo).returncode == 0
    (repo / "named.toml").write_text((repo / "named.toml").read_text().replace('"entropy"', '"minmax"'))
    changed = run_cli(*args, cwd=repo)
    assert changed.returncode in (0, 1), changed.stderr[-2000:]
    gate = json.loads((repo / "results" / "latest" / "named.gate.json").read_text())
    tuned = next(r for r in gate["rows"] if r["variant"] == "int8-tuned")
    notes = " ".join(tuned["notes"])
    assert "int8-tuned file changed since the record" in notes, notes
    assert "measured beside its recorded configuration (files at" in notes, notes  # entropy's file, rebuilt
    assert tuned["latency"]["method"] == "A/B"
