"""Backends in the measuring child: ONNX Runtime as always, OpenVINO beside it (real runtimes, real child processes)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from conftest import FAST_TARGET, run_cli
from harness.measure.backends import NOT_ON_THIS_CPU, missing_extra
from harness.errors import HarnessError
from harness.results.measurement import build_request
from harness.onnx_graph import save_graph
from harness.results import SCHEMA_VERSION
from harness.runners import LocalRunner
from harness.spec import ASSETS_DIR
from harness.targets import TargetProfile

openvino = pytest.importorskip("openvino", reason="the openvino extra is not installed: pip install 'harness[openvino]'")

HW = (32, 32)
CLASSES = 3


def _convs(path: Path, hw: tuple[int, int] = HW) -> Path:
    """Three 3x3 convolutions, 3 -> 16 -> 16 -> 3 channels: a real compute graph either runtime compiles."""
    rng = np.random.default_rng(0)
    nodes, inits, previous, in_ch = [], [], "image", 3
    for i, out_ch in enumerate((16, 16, CLASSES)):
        inits.append(numpy_helper.from_array(rng.standard_normal((out_ch, in_ch, 3, 3)).astype(np.float32) * 0.2, f"w{i}"))
        name = "logits" if out_ch == CLASSES and i == 2 else f"h{i}"
        nodes.append(helper.make_node("Conv", [previous, f"w{i}"], [name], pads=[1, 1, 1, 1]))
        previous, in_ch = name, out_ch
    return save_graph(path, "convs", nodes, [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 3, *hw])],
                      [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", CLASSES, *hw])], inits)


def _files(folder: Path, hw: tuple[int, int] = HW):
    folder.mkdir(exist_ok=True)
    rng = np.random.default_rng(1)
    images = rng.standard_normal((4, 3, *hw)).astype(np.float32)
    np.save(folder / "sample.npy", images[0])
    np.savez(folder / "eval.npz", images=images, masks=rng.integers(0, CLASSES, (4, *hw)).astype(np.int16))
    return _convs(folder / "convs.onnx", hw), folder / "sample.npy", folder / "eval.npz"


@pytest.fixture
def files(tmp_path):
    return _files(tmp_path)


def _measure(files, tmp_path, backend: str, precision: str = "", serving: str = "batched", **target):
    import dataclasses

    model, sample, eval_path = files
    hw = np.load(sample).shape[-2:]
    profile = TargetProfile.from_flat("t", **{"threads": 1, "warmup_runs": 2, "min_runs": 5, "min_duration_s": 0.0, **target})
    request = build_request(model, profile, sample, eval_path, CLASSES, 255, tmp_path / f"pred_{backend}.npy",
                            serving, output_shape=(CLASSES, *hw))
    return LocalRunner().run(dataclasses.replace(request, backend=backend, precision=precision))


def test_openvino_measures_the_same_file_and_agrees_with_onnxruntime(files, tmp_path):
    ort_reply, ov_reply = _measure(files, tmp_path, "onnxruntime"), _measure(files, tmp_path, "openvino", "f32")
    assert ort_reply.ok and ov_reply.ok, (ort_reply.error, ov_reply.error)
    import onnxruntime

    assert ort_reply.backend_version == onnxruntime.__version__ and ort_reply.precision == "as in the file"
    assert ov_reply.backend_version == openvino.get_version().split("-")[0]
    assert ov_reply.precision == "f32 (3 of 3 compute layers)"  # from OpenVINO's own runtime graph
    assert len(ov_reply.latencies_ms) >= 5 and ov_reply.load_ms > 0 and ov_reply.first_call_ms > 0
    assert ov_reply.cpu_affinity == ort_reply.cpu_affinity  # the child pins itself; OpenVINO's pinning is off
    # f32 both ways on the same file: the same classes pixel for pixel, so the same confusion matrix
    agree = (np.load(tmp_path / "pred_openvino.npy") == np.load(tmp_path / "pred_onnxruntime.npy")).mean()
    assert agree > 0.999 and np.abs(np.array(ov_reply.confusion) - np.array(ort_reply.confusion)).sum() <= 4


def test_a_targets_openvino_table_reaches_the_compiled_model(files, tmp_path):
    import dataclasses

    from harness.measure.backends.openvino_cpu import load

    request = build_request(files[0], TargetProfile.from_flat("t", threads=2), files[1])
    default = load(dataclasses.replace(request, backend="openvino", precision="f32"))
    tuned = load(dataclasses.replace(request, backend="openvino", precision="f32",
                                     backend_options={"performance_hint": "THROUGHPUT", "num_streams": 2}))
    assert default.compiled.get_property("NUM_STREAMS") == 1
    assert tuned.compiled.get_property("NUM_STREAMS") == 2
    assert str(tuned.compiled.get_property("PERFORMANCE_HINT")).endswith("THROUGHPUT")


def test_openvino_serves_a_batch_in_one_call_and_requests_in_flight(files, tmp_path):
    batched = _measure(files, tmp_path, "openvino", images_at_once=4)
    assert batched.ok and batched.images_per_s > 0, batched.error
    # a few ms per call, so calls overlap even on one busy CPU (at 0.3 ms a call ended before the OS ran the
    # next client thread: CI once saw one in flight)
    slower = _files(tmp_path / "slower", (192, 192))
    in_flight = _measure(slower, tmp_path, "openvino", serving="concurrent", images_at_once=4, min_runs=40)
    assert in_flight.ok and 2 <= in_flight.max_in_flight <= 4, in_flight.error  # one infer request per client thread


def test_bf16_runs_only_where_the_cpu_has_it_and_says_so_where_not(files, tmp_path):
    reply = _measure(files, tmp_path, "openvino", "bf16")
    has_bf16 = "BF16" in openvino.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    if has_bf16:
        assert reply.ok and "bf16" in reply.precision, reply
    else:
        assert not reply.ok and reply.error.startswith(NOT_ON_THIS_CPU), reply.error
        assert "no BF16" in reply.error and "silently" in reply.error


def test_a_missing_or_unknown_backend_is_one_line_naming_the_extra(tmp_path, tiny_suite):
    assert missing_extra("openvino") is None
    assert "is not one of onnxruntime, openvino" in missing_extra("tensorrt")
    with pytest.raises(HarnessError, match="list onnxruntime"):
        TargetProfile.from_flat("t", threads=1, backends=("openvino",))
    # an environment without the openvino package: a finder that refuses the name, as an absent install does
    hide = tmp_path / "hide"
    hide.mkdir()
    (hide / "sitecustomize.py").write_text(
        "import sys\nclass _Hide:\n    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] == 'openvino':\n            raise ModuleNotFoundError(name)\n"
        "sys.meta_path.insert(0, _Hide())\n")
    target = tmp_path / "ov.toml"
    target.write_text(FAST_TARGET + 'backends = ["onnxruntime", "openvino"]\n')
    import os
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "harness", "bench", "--target", str(target), "--suite", str(tiny_suite),
                           "--no-gate", "--results-dir", str(tmp_path / "r")], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": f"{hide}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"})
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines() == [
        f"error: target 'ov' ({target}): backend 'openvino' needs the openvino extra: pip install 'harness[openvino]' "
        f"(or drop it from backends)"]


def test_a_variant_no_listed_backend_runs_is_refused(tmp_path, tiny_suite):
    target = tmp_path / "t.toml"
    target.write_text(FAST_TARGET + 'variants = ["fp32", "bf16"]\n')
    proc = run_cli("bench", "--target", str(target), "--suite", str(tiny_suite), "--no-gate")
    assert proc.returncode == 2 and "variant bf16 runs under openvino only" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.slow
def test_a_bench_puts_openvino_rows_beside_onnxruntime_in_one_lockstep_run(tmp_path, tiny_suite):
    target = tmp_path / "both.toml"
    target.write_text(FAST_TARGET.replace("min_runs = 5", "min_runs = 10") +
                      'variants = ["fp32", "int8-static", "int8-nncf", "bf16"]\nbackends = ["onnxruntime", "openvino"]\n'
                      'processes = 2\n[openvino]\nnum_streams = 1\n')
    proc = run_cli("bench", "--target", str(target), "--suite", str(tiny_suite), "--no-gate",
                   "--calibration-data", str(ASSETS_DIR / "camvid_train32"), "--calibration-images", "8",
                   "--results-dir", str(tmp_path / "results"))
    assert proc.returncode == 0, proc.stderr
    with open(tmp_path / "results" / "both.csv", newline="") as f:
        rows = {(r["variant"], r["backend"]): r for r in csv.DictReader(f)}
    assert set(rows) == {("fp32", "onnxruntime"), ("int8-static", "onnxruntime"), ("fp32", "openvino"),
                         ("int8-static", "openvino"), ("int8-nncf", "openvino"), ("bf16", "openvino")}
    assert {r["schema_version"] for r in rows.values()} == {str(SCHEMA_VERSION)}
    reference, ov_fp32 = rows[("fp32", "onnxruntime")], rows[("fp32", "openvino")]
    assert ov_fp32["status"] == "ok" and ov_fp32["precision"].startswith("f32")
    assert ov_fp32["backend_options"] == '{"num_streams":1}' and reference["backend_options"] == ""  # ORT's: own columns
    assert float(ov_fp32["agreement_with_fp32_pct"]) > 99.9  # against ONNX Runtime's fp32, same images
    assert abs(float(ov_fp32["quality_pct"]) - float(reference["quality_pct"])) < 0.05
    for key in (("int8-static", "openvino"), ("int8-nncf", "openvino")):
        row = rows[key]
        assert row["status"] == "ok" and row["precision"].startswith(("u8", "i8")), row["precision"]
        assert float(row["speedup_vs_fp32"]) > 0 and row["onnx_sha256"] and float(row["load_ms"]) > 0
        assert float(row["floor_rss_mb"]) != float(reference["floor_rss_mb"])  # OpenVINO's own floor, not ORT's
    assert rows[("int8-static", "openvino")]["onnx_sha256"] == rows[("int8-static", "onnxruntime")]["onnx_sha256"]
    assert "NNCF" in rows[("int8-nncf", "openvino")]["recipe"]
    bf16 = rows[("bf16", "openvino")]
    assert bf16["status"] == "ok" or (bf16["status"].startswith(NOT_ON_THIS_CPU) and bf16["verdict"] == NOT_ON_THIS_CPU)
    assert "backend" in proc.stdout and "openvino" in proc.stdout
    # narrowed to one backend's row: that row and ONNX Runtime's fp32 (its reference) are measured and gated
    import json

    narrowed = run_cli("bench", "--target", str(target), "--suite", str(tiny_suite), "--backend", "openvino",
                       "--variant", "int8-static", "--json", "--calibration-data", str(ASSETS_DIR / "camvid_train32"),
                       "--calibration-images", "8", "--results-dir", str(tmp_path / "results"))
    assert narrowed.returncode == 0, narrowed.stderr
    answer = json.loads(narrowed.stdout)
    assert sorted((r["variant"], r["backend"]) for r in answer["rows"]) == [("fp32", "onnxruntime"),
                                                                           ("int8-static", "openvino")]
    assert answer["gate"]["passed"] and answer["gate"]["narrowed"] == "--variant int8-static, --backend openvino"
    assert sorted(k[1:] for k in map(tuple, answer["gate"]["not_looked_at"])) == [
        ("bf16", "1 per call", "openvino"), ("fp32", "1 per call", "openvino"), ("int8-nncf", "1 per call", "openvino"),
        ("int8-static", "1 per call", "onnxruntime")]


def test_narrowing_to_a_backend_the_target_lacks_or_a_variant_it_cannot_run_is_one_line(tmp_path, tiny_suite):
    from harness.bench.narrow import Narrowing
    from harness.bench.plan import plan_runs
    from harness.spec import load_suite

    both = TargetProfile.from_flat("t", threads=1, variants=("fp32", "int8-dynamic", "int8-static"),
                                   backends=("onnxruntime", "openvino"))
    suite = load_suite(tiny_suite)
    with pytest.raises(HarnessError, match="--backend tensorrt: target 't' measures under onnxruntime, openvino; choose"):
        Narrowing(backends=("tensorrt",)).apply(suite, both)
    with pytest.raises(HarnessError, match="--variant int8-dynamic runs under onnxruntime only, not under --backend openvino"):
        Narrowing(variants=("int8-dynamic",), backends=("openvino",)).apply(suite, both)
    runs, _ = plan_runs(both, ("fp32", "int8-dynamic", "int8-static"), backends_only=("openvino",))
    assert runs == ("fp32", "openvino:fp32", "openvino:int8-static")  # ORT's fp32 stays: the reference
    assert plan_runs(both, ("fp32", "int8-dynamic", "int8-static"))[0] == (
        "fp32", "int8-dynamic", "int8-static", "openvino:fp32", "openvino:int8-static")
    target = tmp_path / "t.toml"
    target.write_text(FAST_TARGET + 'backends = ["onnxruntime", "openvino"]\n')
    proc = run_cli("bench", "--target", str(target), "--suite", str(tiny_suite), "--backend", "litert")
    assert proc.returncode == 2 and proc.stderr.startswith("error: --backend litert: ") and len(proc.stderr.splitlines()) == 1


@pytest.mark.slow
def test_litert_rows_convert_check_and_count_the_ops_off_xnnpack(tmp_path, tiny_suite):
    pytest.importorskip("ai_edge_litert", reason="the litert extra is not installed: pip install 'harness[litert]'")
    target = tmp_path / "phone_proxy.toml"
    target.write_text(FAST_TARGET + 'variants = ["fp32", "litert-fp32", "litert-int8"]\nbackends_if_installed = ["litert"]\n')
    proc = run_cli("bench", "--target", str(target), "--suite", str(tiny_suite), "--no-gate",
                   "--calibration-data", str(ASSETS_DIR / "camvid_train32"), "--calibration-images", "8",
                   "--results-dir", str(tmp_path / "results"))
    assert proc.returncode == 0, proc.stderr
    with open(tmp_path / "results" / "phone_proxy.csv", newline="") as f:
        rows = {r["variant"]: r for r in csv.DictReader(f)}
    fp32, lite, lite8 = rows["fp32"], rows["litert-fp32"], rows["litert-int8"]
    assert lite["backend"] == lite8["backend"] == "litert" and lite["status"] == lite8["status"] == "ok"
    assert "classes agree on" in lite["recipe"] and float(lite["agreement_with_fp32_pct"]) > 99.9
    assert lite["precision"].startswith("f32;") and lite8["precision"].startswith("int8 in/out;")
    assert "XNNPACK" in lite["precision"] and float(lite8["file_mb"]) < float(lite["file_mb"]) / 2
    assert float(lite["floor_rss_mb"]) != float(fp32["floor_rss_mb"])  # LiteRT's own floor
    assert float(lite8["quality_drop_pts"]) < 5


def test_off_xnnpack_counts_ops_outside_the_delegate(tmp_path):
    """A real .tflite: one op XNNPACK takes (multiply) and, after it, one it does not (cumulative sum)."""
    pytest.importorskip("litert_torch", reason="the litert extra is not installed: pip install 'harness[litert]'")
    import subprocess
    import sys

    from harness.measure.backends.litert_cpu import off_xnnpack

    # converted in a child: litert-torch imports JAX, whose threads would stay in this test process
    script = ("import torch, litert_torch\n"
              "class Mixed(torch.nn.Module):\n    def forward(self, x):\n        return torch.cumsum(x * 2.0, dim=1)\n"
              f"litert_torch.convert(Mixed().eval(), (torch.zeros(1, 8),)).export({str(tmp_path / 'm.tflite')!r})\n")
    subprocess.run([sys.executable, "-c", script], check=True, capture_output=True, timeout=600)
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(tmp_path / "m.tflite"), num_threads=1)
    interpreter.allocate_tensors()
    assert off_xnnpack(interpreter) == {"CUMSUM": 1}
    plain = Interpreter(model_path=str(tmp_path / "m.tflite"), experimental_op_resolver_type=
                        __import__("ai_edge_litert.interpreter", fromlist=["OpResolverType"]).OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    plain.allocate_tensors()
    assert off_xnnpack(plain) is None  # no delegate applied: nothing to count, said as such


def test_an_optional_backend_that_is_not_installed_is_left_out_with_a_note(tmp_path):
    hide = tmp_path / "hide"
    hide.mkdir()
    (hide / "sitecustomize.py").write_text(
        "import sys\nclass _Hide:\n    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] == 'ai_edge_litert':\n            raise ModuleNotFoundError(name)\n"
        "sys.meta_path.insert(0, _Hide())\n")
    script = ("from harness.bench.plan import plan_runs\nfrom harness.targets import load_target\n"
              "runs, notes = plan_runs(load_target('phone'), ('fp32', 'int8-static', 'litert-fp32', 'litert-int8'))\n"
              "print(runs); print(notes)\n")
    import os
    import subprocess
    import sys

    env = {**os.environ, "PYTHONPATH": f"{hide}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    hidden = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, check=True)
    runs, notes = hidden.stdout.strip().splitlines()
    assert runs == "('fp32', 'int8-static')"
    assert "adds backend litert where it is installed; not here: backend 'litert' needs the litert extra" in notes
    if missing_extra("litert") is None:  # where it is installed, the same target measures it
        shown = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
        assert shown.stdout.splitlines()[0] == "('fp32', 'int8-static', 'litert:litert-fp32', 'litert:litert-int8')"


def test_onnxruntimes_session_options_reach_the_session_through_the_requests_backend_options(tmp_path):
    import onnxruntime as ort

    from harness.measure.backends.onnxruntime_cpu import session_options

    target = TargetProfile.from_flat("t", threads=1, allow_spinning=False, enable_mem_pattern=False)
    request = build_request(tmp_path / "m.onnx", target, tmp_path / "s.npy")
    assert request.backend_options == {"enable_cpu_mem_arena": True, "enable_mem_pattern": False, "allow_spinning": False}
    made = session_options(ort, request)
    assert (made.enable_cpu_mem_arena, made.enable_mem_pattern) == (True, False)
    assert made.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    default = session_options(ort, build_request(tmp_path / "m.onnx", TargetProfile.from_flat("t", threads=1),
                                                 tmp_path / "s.npy"))
    assert default.enable_mem_pattern and default.get_session_config_entry("session.intra_op.allow_spinning") == "1"


def test_the_reference_workload_runs_under_onnxruntimes_session_options_whatever_backend_the_child_times(
        tmp_path, monkeypatch):
    """The machine's yardstick is one workload: an OpenVINO child times it as an ONNX Runtime child does."""
    import dataclasses

    import harness.measure.backends.onnxruntime_cpu as ort_backend
    from harness.measure.worker import _reference_ms
    from harness.bench.yardsticks import reference_model

    target = TargetProfile.from_flat("t", threads=1, allow_spinning=False)
    request = dataclasses.replace(build_request(tmp_path / "m.onnx", target, tmp_path / "s.npy"), backend="openvino",
                                  backend_options={"num_streams": 1}, reference_path=str(reference_model(tmp_path / "r.onnx")))
    seen = []
    made = ort_backend.session_options
    monkeypatch.setattr(ort_backend, "session_options", lambda ort, settings: seen.append(settings.backend_options) or made(ort, settings))
    assert _reference_ms(request) > 0
    assert seen == [{"enable_cpu_mem_arena": True, "enable_mem_pattern": True, "allow_spinning": False}]
