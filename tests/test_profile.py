"""harness profile: per-operator time from ONNX Runtime's profiler and OpenVINO's counters, in a child process."""

from __future__ import annotations

import json

import pytest

from conftest import run_cli
from harness.spec import ASSETS_DIR

CALIBRATION = ("--calibration-data", str(ASSETS_DIR / "camvid_train32"), "--calibration-images", "8")


def test_profile_names_each_variants_slowest_operators(tmp_path, tiny_suite):
    out = tmp_path / "profile"
    proc = run_cli("profile", "tiny_unet", "--suite", str(tiny_suite), "--runs", "5", "--top", "3", "--out", str(out),
                   *CALIBRATION)
    assert proc.returncode == 0, proc.stderr
    found = json.loads((out / "tiny_unet_onnxruntime" / "operators.json").read_text())
    assert set(found) == {"fp32", "int8-static"}
    kinds = {v: {o["op_type"] for o in found[v]["ops"]} for v in found}
    assert "Conv" in kinds["fp32"] and "QLinearConv" in kinds["int8-static"]  # the quantized graph's own kernels
    for variant, profile in found.items():
        assert profile["runs"] == 5 and all(o["ms_per_call"] >= 0 for o in profile["ops"])
        in_ops = sum(o["ms_per_call"] for o in profile["ops"])
        assert 0 < in_ops <= profile["wall_ms_per_call"] * 1.05  # operators fit inside the calls they ran in
        assert (out / "tiny_unet_onnxruntime" / variant).glob("onnxruntime_trace*.json")
    shown = " ".join(proc.stdout.split())  # titles wrap at the terminal's width
    assert "slowest 3 of" in shown and "time per call by operator kind" in shown


def test_profile_under_openvino_reads_its_layer_counters(tmp_path, tiny_suite):
    pytest.importorskip("openvino", reason="the openvino extra is not installed: pip install 'harness[openvino]'")
    out = tmp_path / "profile"
    proc = run_cli("profile", "tiny_unet", "--suite", str(tiny_suite), "--backend", "openvino", "--variant", "fp32",
                   "--runs", "5", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    ops = json.loads((out / "tiny_unet_openvino" / "operators.json").read_text())["fp32"]["ops"]
    assert any(o["op_type"] == "Convolution" for o in ops) and all(o["ran_on"] for o in ops)  # e.g. jit_avx2_FP32
    assert (out / "tiny_unet_openvino" / "fp32" / "openvino_layers.json").is_file()


def test_a_variant_the_backend_does_not_run_is_one_line(tmp_path, tiny_suite):
    proc = run_cli("profile", "tiny_unet", "--suite", str(tiny_suite), "--backend", "openvino", "--variant", "int8-dynamic")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [
        "error: variant int8-dynamic runs under onnxruntime, not openvino: pass --backend onnxruntime"]


def test_bench_profile_profiles_every_measured_variant(tmp_path, tiny_suite, fast_target):
    proc = run_cli("bench", "--target", str(fast_target), "--suite", str(tiny_suite), "--no-gate", "--profile",
                   "--results-dir", str(tmp_path / "results"))
    assert proc.returncode == 0, proc.stderr
    found = json.loads((tmp_path / "results" / "latest" / "profile" / "tiny_unet_onnxruntime" / "operators.json").read_text())
    assert set(found) == {"fp32"} and any(o["op_type"] == "Conv" for o in found["fp32"]["ops"])
    assert "slowest" in " ".join(proc.stdout.split())
