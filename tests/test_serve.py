"""The HTTP service on a small real model: real server processes, real sockets, a real load generator."""

from __future__ import annotations

import asyncio
import io
import json
import re
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import numpy as np
import pytest
from PIL import Image

from harness.data import find_split, load_split
from harness.export import export_spec
from harness.serve.config import ServerConfig
from harness.serve.measure import measure_served, write_images
from harness.serve.process import ServerProcess
from harness.spec import ModelSpec
from harness.targets import TargetProfile

from conftest import CAMVID_CLASSES, CAMVID_IGNORE, SAMPLE_DIR, run_cli

pytest.importorskip("uvicorn", reason="the serve extra is not installed (pip install 'harness[serve]')")

HW = (184, 240)


@pytest.fixture(scope="module")
def eval_images():
    images, masks = load_split(find_split(SAMPLE_DIR, "val", CAMVID_IGNORE), HW, CAMVID_CLASSES, limit=4)
    return images, masks


@pytest.fixture(scope="module")
def tiny_onnx(eval_images):
    spec = ModelSpec(name="tiny_served", arch="unet_small", num_classes=CAMVID_CLASSES, input_hw=HW,
                     model_kwargs={"width": 0.125})
    return export_spec(spec, eval_images[0]).path


def _config(onnx_path, **changes) -> ServerConfig:
    fields = dict(onnx_path=str(onnx_path), input_hw=HW, num_classes=CAMVID_CLASSES, threads=1, cpu_affinity=(),
                  port=0, model="tiny_served", variant="fp32")
    fields.update(changes)
    return ServerConfig(**fields)


@pytest.fixture
def server(tiny_onnx, tmp_path):
    started = []

    def start(**changes) -> ServerProcess:
        process = ServerProcess(_config(tiny_onnx, **changes), tmp_path, cap_mb=None)
        started.append(process)
        assert process.wait_ready() == ""
        return process

    yield start
    for process in started:
        process.stop()


def _post(port: int, body: bytes, path: str = "/segment", method: str = "POST"):
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=body if method == "POST" else None, method=method)
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, dict(answer.headers), answer.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def _encoded(image: np.ndarray, kind: str = "PNG") -> bytes:
    out = io.BytesIO()
    Image.fromarray(image).save(out, format=kind)
    return out.getvalue()


def test_the_service_answers_a_mask_of_the_image_size_with_its_timing(server, eval_images, tiny_onnx):
    import onnxruntime as ort

    from harness.data import normalize

    port = server().ready["port"]
    status, headers, body = _post(port, _encoded(eval_images[0][0]))
    assert status == 200 and headers["content-type"] == "image/png"
    mask = np.asarray(Image.open(io.BytesIO(body)))
    session = ort.InferenceSession(str(tiny_onnx), providers=["CPUExecutionProvider"])
    expected = session.run(None, {"image": normalize(eval_images[0][:1])})[0][0].argmax(0)
    assert mask.shape == HW and (mask == expected).mean() == 1.0  # the mask survived PNG both ways unchanged
    timing = {part.split(";")[0] for part in headers["server-timing"].split(", ")}
    assert timing == {"decode", "queue", "infer", "encode"}
    # A JPEG of another size: the mask comes back at that size.
    big = np.asarray(Image.fromarray(eval_images[0][0]).resize((480, 368)))
    status, _, body = _post(port, _encoded(big, "JPEG"))
    assert status == 200 and Image.open(io.BytesIO(body)).size == (480, 368)
    health = json.loads(_post(port, b"", "/health", "GET")[2])
    assert health["status"] == "ok" and health["answered"] == 2 and health["model"] == "tiny_served"


def test_bad_requests_get_a_4xx_with_a_message_and_the_service_stays_up(server, eval_images):
    process = server()
    port = process.ready["port"]
    status, _, body = _post(port, b"this is not an image")
    assert status == 400 and b"cannot be decoded as PNG or JPEG" in body
    status, _, body = _post(port, b"")
    assert status == 400 and b"no body" in body
    gif = io.BytesIO()
    Image.new("RGB", (8, 8)).save(gif, format="GIF")
    assert _post(port, gif.getvalue())[0] == 400
    assert _post(port, b"", "/segment", "GET")[0] == 405
    assert _post(port, b"x", "/nowhere")[0] == 404
    assert _post(port, _encoded(eval_images[0][0]))[0] == 200 and process.proc.poll() is None


def _server_cli(config: ServerConfig, tmp_path):
    path = tmp_path / "server.json"
    path.write_text(config.to_json())
    return subprocess.run([sys.executable, "-m", "harness.serve.server", "--config", str(path)], capture_output=True,
                          text=True, timeout=120)


def test_a_port_in_use_and_a_model_the_server_cannot_load_are_one_line_exit_2(tiny_onnx, tmp_path):
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen(1)
    port = holder.getsockname()[1]
    try:
        proc = _server_cli(_config(tiny_onnx, port=port), tmp_path)
        assert proc.returncode == 2 and proc.stderr.strip() == (f"port {port} on 127.0.0.1 is already in use; stop what "
                                                                 f"holds it or choose another with --port")
        cli = run_cli("serve", "unet_small", "--port", str(port))
        assert cli.returncode == 2 and "already in use" in cli.stderr and "Traceback" not in cli.stderr
        assert len(cli.stderr.strip().splitlines()) == 1
    finally:
        holder.close()
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not a model")
    proc = _server_cli(_config(broken), tmp_path)
    assert proc.returncode == 2 and proc.stderr.startswith(f"cannot load {broken} into ONNX Runtime: ")
    assert len(proc.stderr.strip().splitlines()) == 1
    wrong_size = _server_cli(_config(tiny_onnx, input_hw=(96, 128)), tmp_path)
    assert wrong_size.returncode == 2 and wrong_size.stderr.strip().endswith(
        "the model takes 184x240 images, not the 96x128 it was given; pass --input-size 184x240")


def _target(**flat) -> TargetProfile:
    base = dict(threads=1, images_at_once=3, serving=("http",), p95_budget_ms=2000, http_bursts=3,
                http_burst_idle_s=0.05, http_closed_s=1.0, http_open_s=1.0, memory_quantity="process")
    base.update(flat)
    return TargetProfile.from_flat("served", **base)


def _eval_files(tmp_path, eval_images):
    images, masks = eval_images
    np.savez(tmp_path / "eval.npz", images=images, masks=masks.astype(np.int16))
    return write_images(images, tmp_path / "png"), tmp_path / "eval.npz"


def test_a_served_variant_gives_burst_closed_and_open_figures_and_quality_from_its_masks(tiny_onnx, tmp_path, eval_images):
    import onnxruntime as ort

    from harness.measure.evaluate import evaluate_session

    image_dir, eval_path = _eval_files(tmp_path, eval_images)
    masks = tmp_path / "masks.npy"
    loads = measure_served(_config(tiny_onnx), _target(), image_dir, eval_path, tmp_path, CAMVID_IGNORE, masks)
    assert set(loads) == {"http-burst", "http-closed", "http-open"}
    assert all(m.error is None for m in loads.values()), {k: m.error for k, m in loads.items()}
    burst, closed, opened = loads["http-burst"], loads["http-closed"], loads["http-open"]
    assert burst.latency.runs == 3 and burst.served.load.startswith("3 bursts of 3")
    assert closed.latency.runs > 3 and closed.images_per_s > 0 and closed.served.errors == 0
    assert opened.served.held_rate_per_s > 0 and "Poisson arrivals" in opened.served.load
    assert all(part in burst.served.server_split_ms for part in ("decode", "queue", "infer", "encode"))
    assert burst.peak_rss_mb > burst.served.server_rss_mb > 20  # VmHWM of the real server process
    assert burst.load_ms > 0 and burst.first_call_ms > 0  # the server's cold start: session, then a first request
    session = ort.InferenceSession(str(tiny_onnx), providers=["CPUExecutionProvider"])
    from harness.data import normalize

    expected, _ = evaluate_session(session, normalize(eval_images[0]), eval_images[1], CAMVID_CLASSES, CAMVID_IGNORE,
                                   (CAMVID_CLASSES, *HW))
    assert np.array_equal(burst.confusion, expected)  # quality from the masks the service sent back


def test_a_server_over_its_memory_cap_is_stopped_and_the_rows_say_so(tiny_onnx, tmp_path, eval_images):
    image_dir, eval_path = _eval_files(tmp_path, eval_images)
    loads = measure_served(_config(tiny_onnx), _target(memory_cap_mb=30), image_dir, eval_path, tmp_path, CAMVID_IGNORE,
                           tmp_path / "masks.npy")
    for measurement in loads.values():
        assert measurement.error.startswith("the server passed the memory cap (") and "> 30 MB) and was stopped" in measurement.error


def test_a_server_killed_mid_run_fails_its_rows_with_the_reason_and_never_hangs(tiny_onnx, tmp_path, eval_images):
    import psutil

    image_dir, eval_path = _eval_files(tmp_path, eval_images)

    def kill_the_server():
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            servers = [c for c in psutil.Process().children(recursive=True) if "harness.serve.server" in " ".join(c.cmdline())]
            loadgens = [c for c in psutil.Process().children() if "harness.serve.loadgen" in " ".join(c.cmdline())]
            if servers and loadgens:
                time.sleep(0.5)  # in the middle of the load
                servers[0].kill()
                return
            time.sleep(0.05)

    killer = threading.Thread(target=kill_the_server)
    killer.start()
    started = time.monotonic()
    loads = measure_served(_config(tiny_onnx), _target(http_closed_s=30.0, http_bursts=50), image_dir, eval_path,
                           tmp_path, CAMVID_IGNORE, tmp_path / "masks.npy")
    killer.join()
    assert time.monotonic() - started < 60
    for measurement in loads.values():
        assert measurement.error == "the server process ended (killed by signal 9)"


def test_open_loop_latency_counts_the_queue_a_waiting_client_would_hide(tiny_onnx, server, tmp_path, eval_images):
    """A server slowed to ~50 ms a request, offered 40 requests/s through one connection: timed from the scheduled
    send, latency grows with the queue; timed from when the request was finally sent, it would not."""
    from harness.serve.loadgen import Client, open_load

    port = server(handler_delay_ms=50.0).ready["port"]
    bodies = [_encoded(image) for image in eval_images[0]]

    async def run():
        client = Client("127.0.0.1", port, timeout_s=30)
        try:
            return await open_load(client, bodies, rate_per_s=40.0, duration_s=3.0, max_connections=1, seed=0)
        finally:
            client.close()

    rows = asyncio.run(run())["answers"]
    assert all(r[4] == 200 for r in rows) and len(rows) > 60
    scheduled = [r[3] - r[1] for r in rows]
    sent = [r[3] - r[2] for r in rows]
    quarter = len(rows) // 4
    assert np.median(scheduled[-quarter:]) > 4 * np.median(scheduled[:quarter])  # the queue, growing
    assert np.median(scheduled[-quarter:]) > 1000
    assert np.median(sent[-quarter:]) < 2 * np.median(sent[:quarter]) + 20  # what a waiting client would report
    assert np.median(sent) < 200


def test_an_open_loop_rate_holds_only_when_answers_keep_up_within_budget():
    from harness.serve.loadgen import rate_held

    steady = [[0, i * 100.0, i * 100.0, i * 100.0 + 50, 200, "", ""] for i in range(20)]
    assert rate_held(steady, budget_ms=500)
    assert not rate_held(steady, budget_ms=40)  # p95 over the budget
    falling_behind = [[0, i * 100.0, i * 100.0, i * 100.0 + 50 + 12 * i, 200, "", ""] for i in range(20)]
    assert max(r[3] - r[1] for r in falling_behind) < 500 and not rate_held(falling_behind, budget_ms=500)
    lost = steady[:-1] + [[0, 1900.0, 1900.0, 1950.0, 0, "ConnectionResetError", ""]]
    assert not rate_held(lost, budget_ms=500)
    # CI's case: 17 req/s for 1 s, answers in ~30 ms, the last one caught in a slow phase of the host (132 ms);
    # the server kept up, so the rate holds (the old rule, answers per second to the last answer, said no)
    arrivals = np.cumsum(np.random.default_rng(3).exponential(1000 / 17, 17))
    slow_end = [[0, t, t, t + 30 + (5 if i % 3 else -5), 200, "", ""] for i, t in enumerate(arrivals)]
    slow_end[-1][3] = arrivals[-1] + 132
    assert rate_held(slow_end, budget_ms=2000)
    # and a short run falling behind still does not: 17 arrivals, answers at 80% of the rate
    behind = [[0, t, t, t + 30 + 0.25 * (t - arrivals[0]), 200, "", ""] for t in arrivals]
    assert not rate_held(behind, budget_ms=2000)


@pytest.mark.slow
def test_bench_serves_every_variant_end_to_end_and_the_gate_compares_served_rows(tmp_path, tiny_suite):
    import csv

    tiny_suite.write_text(tiny_suite.read_text().replace(
        "[[model]]", f'[calibration]\ndir = "{SAMPLE_DIR.parent / "camvid_train32"}"\nimages = 8\n\n[[model]]'))
    target = tmp_path / "served.toml"
    target.write_text('threads = 1\nimages_at_once = 3\nserving = ["batched", "http"]\nvariants = ["fp32", "int8-static"]\n'
                      'memory_quantity = "process"\nmemory_budget_mb = 512\nmemory_cap_mb = 512\np95_budget_ms = 2000\n'
                      'min_runs = 5\nmin_duration_s = 0.0\nwarmup_runs = 1\nprocesses = 1\nhttp_bursts = 3\n'
                      'http_closed_s = 0.5\nhttp_open_s = 0.5\n')
    results = tmp_path / "results"
    proc = run_cli("bench", "--target", str(target), "--suite", str(tiny_suite), "--results-dir", str(results))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = list(csv.DictReader(open(results / "served.csv")))
    assert sorted((r["variant"], r["serving"]) for r in rows) == sorted(
        (v, s) for v in ("fp32", "int8-static")
        for s in ("batch of 3", "http: bursts of 3", "http: 3 clients", "http: open loop"))
    served = [r for r in rows if r["serving"].startswith("http")]
    assert all(r["status"] == "ok" and r["verdict"] == "fits" and float(r["quality_pct"]) >= 0 for r in served)
    assert all(float(r["server_rss_mb"]) > 0 and r["memory_cap_by"] and r["server_split_ms"] for r in served)
    # what the service ran (its pool never spins) and how much CPU its client took, in each served row
    assert {r["allow_spinning"] for r in served} == {"False"} and {r["allow_spinning"] for r in rows} == {"False", "True"}
    assert all(re.search(r"load generator \d+\.\d % of a CPU", r["load"]) for r in served), [r["load"] for r in served]
    assert "served over HTTP" in proc.stdout
    again = run_cli("bench", "--target", str(target), "--suite", str(tiny_suite), "--results-dir", str(results))
    assert again.returncode == 0, again.stdout + again.stderr
    assert "gate served: passed — 0 of 8 rows failed" in again.stdout
    # A changed session option is A/B'd against the recorded one in the children; the served rows are judged by their
    # budgets (an A/B partner once had served rows looked up that were never measured: an internal error).
    target.write_text(target.read_text() + "enable_mem_pattern = false\n")
    changed = run_cli("bench", "--target", str(target), "--suite", str(tiny_suite), "--results-dir", str(results),
                      "--verbose")  # the gate's notes for every row
    assert changed.returncode in (0, 1) and "internal error" not in changed.stderr, changed.stdout + changed.stderr
    assert "session options changed since the record" in changed.stdout
