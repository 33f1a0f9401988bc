"""`harness serve` against hostile clients: decompression bombs, slow and idle connections, stop signals.

Each case both ways: the hostile request refused with its status and one line, the ordinary one answered as before.
"""

from __future__ import annotations

import io
import json
import os
import queue
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import zlib

import numpy as np
import pytest
from PIL import Image, ImageFile

from harness.serve import codec
from harness.serve.process import status_mb

from conftest import SAMPLE_DIR, TINY_SUITE
from test_serve import _encoded, _post, eval_images, server, tiny_onnx  # noqa: F401  the fixtures, with theirs

pytest.importorskip("uvicorn", reason="the serve extra is not installed (pip install 'harness[serve]')")

INPUT_HW = (184, 240)


def bomb_png(width: int, height: int | None = None) -> bytes:
    """A real single-colour RGB PNG, about 0.5 MB for 13000x13000, written row by row (no 0.5 GB image here)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    height = height or width
    z, row = zlib.compressobj(9), bytes(1 + 3 * width)  # filter byte 0, then black pixels
    idat = b"".join(z.compress(row) for _ in range(height)) + z.flush()
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", idat) + chunk(b"IEND", b""))


def _saved(image: Image.Image, kind: str, **options) -> bytes:
    out, block = io.BytesIO(), ImageFile.MAXBLOCK
    ImageFile.MAXBLOCK = max(block, 2**26)  # a progressive JPEG of a large image needs a larger buffer
    try:
        image.save(out, format=kind, **options)
    finally:
        ImageFile.MAXBLOCK = block
    return out.getvalue()


def test_the_largest_image_is_derived_from_the_memory_left():
    # cloud: 512 MB, 98 MB used by the server, 64 MB of bodies, 32 MB slack, the 184x240 input's tensor: 12 B/px
    expected = int((512 - 98 - 64 - codec.SLACK_MB - 184 * 240 * 36 / 2**20) * 2**20 / 12)
    assert codec.max_image_pixels(512, 98, 64, INPUT_HW) == expected and 27e6 < expected < 28e6
    assert codec.max_image_pixels(512, 198, 64, INPUT_HW) < expected - 8e6  # 100 MB more used: 8.7 Mpx fewer
    assert codec.max_image_pixels(4000, 98, 64, INPUT_HW) > 300e6
    assert codec.max_image_pixels(64, 98, 64, INPUT_HW) == 184 * 240  # no memory left: the model's own size still

    class Budgets:
        memory_cap_mb, memory_budget_mb, memory_quantity = 0.0, 15.0, "model"

    assert codec.target_memory_mb(Budgets()) == 0.0  # a model's budget is not the process's memory
    Budgets.memory_quantity = "process"
    assert codec.target_memory_mb(Budgets()) == 15.0
    Budgets.memory_cap_mb = 512.0
    assert codec.target_memory_mb(Budgets()) == 512.0


def _decode_peak_bytes_per_pixel(body: bytes, tmp_path) -> float:
    """Decode `body` as the service does, in a fresh process: its peak resident memory growth per image pixel."""
    path = tmp_path / "body"
    path.write_bytes(body)
    script = ("import sys; from PIL import Image; Image.MAX_IMAGE_PIXELS = None\n"
              "from harness.serve import codec; from harness.serve.process import status_mb\n"
              f"body = open({str(path)!r}, 'rb').read(); before = status_mb('self', 'VmRSS')\n"
              "x, hw = codec.decode(body, (184, 240), 10**9, 0)\n"
              "print((status_mb('self', 'VmHWM') - before) * 2**20 / (hw[0] * hw[1]))")
    return float(subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout)


def test_the_worst_case_bytes_per_pixel_is_measured_not_guessed(tmp_path):
    """Every kind the service decodes stays within BYTES_PER_PIXEL, and the worst one reaches it (not a loose bound)."""
    w, h = 3000, 2000
    noise = np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8)
    kinds = {
        "progressive CMYK JPEG": _saved(Image.fromarray(noise).convert("CMYK"), "JPEG", progressive=True, subsampling=0),
        "progressive RGB JPEG": _saved(Image.fromarray(noise), "JPEG", progressive=True, subsampling=0),
        "RGB PNG": _saved(Image.fromarray(noise), "PNG", compress_level=1),
        "RGBA PNG": _saved(Image.new("RGBA", (w, h), (9, 8, 7, 128)), "PNG"),
        "16-bit grey PNG": _saved(Image.fromarray(np.full((h, w), 40000, np.uint16)), "PNG"),
    }
    per_pixel = {kind: _decode_peak_bytes_per_pixel(body, tmp_path) for kind, body in kinds.items()}
    fixed = 4 * 2**20 / (w * h)  # libjpeg's and zlib's own buffers, whatever the size: inside codec.SLACK_MB
    assert all(b <= codec.BYTES_PER_PIXEL + fixed for b in per_pixel.values()), per_pixel
    assert per_pixel["progressive CMYK JPEG"] > codec.BYTES_PER_PIXEL - 1, per_pixel
    assert per_pixel["RGB PNG"] < 5, per_pixel  # no full-size numpy copy: Pillow's own image only


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")  # Pillow's own 89 Mpx warning, left set here
def test_a_body_is_refused_by_its_header_in_one_line_without_object_reprs():
    def refused(body: bytes) -> codec.BadImage:
        with pytest.raises(codec.BadImage) as caught:
            codec.decode(body, INPUT_HW, 27_000_000, 512)
        assert "\n" not in str(caught.value) and " at 0x" not in str(caught.value)
        return caught.value

    bomb = refused(bomb_png(13000))
    assert bomb.status == 413 and str(bomb) == ("image is 13000x13000 = 169 Mpx; this service decodes at most 27 Mpx "
                                                "within its 512 MB")
    big = refused(bomb_png(20000))  # over Pillow's own limit too, where it is left set (in this process it is)
    assert big.status == 413 and str(big).startswith("image is 400 Mpx; this service decodes at most 27 Mpx")
    jpeg = bytearray(_saved(Image.new("RGB", (64, 48)), "JPEG"))
    sof = jpeg.index(b"\xff\xc0")
    jpeg[sof + 5: sof + 9] = struct.pack(">HH", 60000, 60000)  # the header of a 3.6 Gpx JPEG, 700 bytes long
    assert refused(bytes(jpeg)).status == 413
    garbage = refused(b"this is not an image")
    assert garbage.status == 400 and str(garbage) == ("the body cannot be decoded as PNG or JPEG (it is not an image "
                                                      "Pillow knows)")
    truncated = refused(_saved(Image.new("RGB", (300, 200), (1, 2, 3)), "PNG")[:80])
    assert truncated.status == 400 and str(truncated).startswith("the body cannot be decoded as PNG or JPEG (")
    assert refused(_saved(Image.new("RGB", (8, 8)), "GIF")).status == 400
    # The ordinary case: what evaluation makes of the same image (harness.data.fit_to_input), pixel for pixel.
    from harness.data import fit_to_input

    frame = np.asarray(Image.open(sorted((SAMPLE_DIR / "images").iterdir())[0]).convert("RGB").resize((480, 368)))
    fitted, image_hw = codec.decode(_encoded(frame), INPUT_HW, 27_000_000, 512)
    assert image_hw == (368, 480) and fitted.shape == (184, 240, 3)
    assert np.array_equal(fit_to_input(fitted, None, INPUT_HW, 0)[0], fit_to_input(frame, None, INPUT_HW, 0)[0])


SERVED_SUITE = TINY_SUITE.format(data=SAMPLE_DIR)  # the tiny model on the shipped sample


@pytest.fixture(scope="module")
def served_suite(tmp_path_factory):
    path = tmp_path_factory.mktemp("served") / "suite.toml"
    path.write_text(SERVED_SUITE)
    return path


class Served:
    """A real `harness serve` on the cloud target (the CLI exports, then becomes the server), its stderr read as it comes."""

    def __init__(self, suite):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.proc = subprocess.Popen([sys.executable, "-m", "harness", "serve", "tiny_unet", "--suite", str(suite),
                                      "--target", "cloud", "--port", str(self.port)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.lines: queue.Queue = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        said = []
        while not (said and said[-1].startswith("serving ")):
            line = self.lines.get(timeout=300)
            assert line is not None, "harness serve ended before serving: " + "".join(said)
            said.append(line)

    def _read(self) -> None:
        for line in self.proc.stderr:
            self.lines.put(line)
        self.lines.put(None)

    def stop(self, signum: int) -> tuple[int, list[str]]:
        """The exit code after `signum`, and every line it wrote to stderr after it said it was serving."""
        self.proc.send_signal(signum)
        code = self.proc.wait(timeout=30)
        said = []
        while (line := self.lines.get(timeout=10)) is not None:
            said.append(line)
        return code, said

    def __enter__(self) -> "Served":
        return self

    def __exit__(self, *exc) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def _post_watching_health(port: int, body: bytes):
    """POST /segment with `body`, and GET /health over and over while it is answered: (status, headers, body, health s)."""
    answer = {}
    thread = threading.Thread(target=lambda: answer.update(got=_post(port, body)))
    thread.start()
    health_s = []
    while thread.is_alive():
        started = time.perf_counter()
        assert _post(port, b"", "/health", "GET")[0] == 200
        health_s.append(time.perf_counter() - started)
        time.sleep(0.02)
    thread.join()
    return (*answer["got"], health_s)


def test_a_real_harness_serve_refuses_bombs_by_header_and_decodes_its_largest_image_within_its_memory(
        served_suite, private_cache, eval_images):
    from harness.serve.app import parse_server_timing

    folder = private_cache / "serve"
    folder.mkdir(exist_ok=True)
    stale, alive = folder / "server-999999999.json", folder / f"server-{os.getpid()}.json"
    for path in (stale, alive):
        path.write_text("{}")
    with Served(served_suite) as served:
        port, pid = served.port, served.proc.pid  # the CLI became the server (exec): the same process
        assert sorted(folder.glob("server-*.json")) == [alive]  # its own file read and removed, a dead run's swept
        health = json.loads(_post(port, b"", "/health", "GET")[2])
        limit, memory_mb = health["max_image_pixels"], health["memory_mb"]
        assert memory_mb == 512 and 15e6 < limit < 30e6
        for side in (13000, 20000):
            status, _, body, health_s = _post_watching_health(port, bomb_png(side))
            assert status == 413 and body.decode() == (f"image is {side}x{side} = {side * side / 1e6:.4g} Mpx; this "
                                                       f"service decodes at most {limit / 1e6:.4g} Mpx within its 512 MB\n")
        width = 5000
        assert _post(port, bomb_png(width, limit // width + 1))[0] == 413  # one row over the limit
        largest = _saved(Image.new("CMYK", (width, limit // width), (10, 200, 30, 5)), "JPEG", progressive=True,
                         subsampling=0)  # the worst kind to decode (codec.BYTES_PER_PIXEL), at the limit
        status, headers, body, health_s = _post_watching_health(port, largest)
        assert status == 200 and Image.open(io.BytesIO(body)).size == (width, limit // width)
        decode_s = parse_server_timing(headers["server-timing"])["decode"] / 1000
        assert len(health_s) >= 2 and max(health_s) < min(1.0, decode_s / 2), (health_s, decode_s)
        peak_mb = status_mb(pid, "VmHWM")
        assert 250 < peak_mb < memory_mb, peak_mb  # it did decode the 27 Mpx image, within the 512 MB
        status, _, body = _post(port, _saved(Image.new("RGB", (300, 200), (1, 2, 3)), "PNG")[:80])
        assert status == 400 and body.count(b"\n") == 1 and b" at 0x" not in body
        status, _, body = _post(port, _encoded(eval_images[0][0]))
        assert status == 200 and Image.open(io.BytesIO(body)).size == (INPUT_HW[1], INPUT_HW[0])
        code, said = served.stop(signal.SIGTERM)
    alive.unlink()
    assert code == 143 and said == ["harness serve: terminated (SIGTERM), stopped\n"]
    assert list(folder.glob("server-*.json")) == []
    print(f"peak RSS {peak_mb:.0f} MB of {memory_mb} MB; /health within {max(health_s) * 1000:.0f} ms during a "
          f"{decode_s * 1000:.0f} ms decode; limit {limit / 1e6:.4g} Mpx")


def test_ctrl_c_stops_a_real_harness_serve_in_one_line_with_exit_130(served_suite, private_cache, eval_images):
    with Served(served_suite) as served:
        assert _post(served.port, _encoded(eval_images[0][0]))[0] == 200
        code, said = served.stop(signal.SIGINT)
    assert code == 130 and said == ["harness serve: interrupted (SIGINT), stopped\n"]
    assert list((private_cache / "serve").glob("server-*.json")) == []


def _answer(sock: socket.socket, timeout_s: float = 10) -> tuple[bytes, bool]:
    """One HTTP answer read off `sock` (head and body by content-length), and whether the server closed it after."""
    sock.settimeout(timeout_s)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return data, True
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(next(line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")))
    while len(body) < length:
        body += sock.recv(65536)
    try:
        sock.settimeout(0.3)
        closed = sock.recv(1) == b""
    except TimeoutError:
        closed = False
    return head.split(b"\r\n")[0] + b"\n" + body, closed


HEALTH = b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n"


def test_idle_and_slow_connections_are_closed_and_a_keep_alive_client_is_not(server):
    port = server(keep_alive_s=1.0, header_timeout_s=1.0, body_timeout_s=1.0).ready["port"]
    with socket.create_connection(("127.0.0.1", port)) as kept:  # ordinary: requests 0.5 s apart on one connection
        for _ in range(3):
            kept.sendall(HEALTH)
            answer, closed = _answer(kept)
            assert answer.startswith(b"HTTP/1.1 200") and not closed
            time.sleep(0.5)
    with socket.create_connection(("127.0.0.1", port)) as idle:  # opened, nothing sent: closed after keep_alive_s
        started = time.monotonic()
        idle.settimeout(10)
        assert idle.recv(1) == b"" and 0.8 < time.monotonic() - started < 3
    with socket.create_connection(("127.0.0.1", port)) as slowloris:  # a head a byte at a time: 408, closed
        slowloris.sendall(b"GET /health HTTP/1.1\r\n")

        def trickle():
            try:
                for _ in range(30):
                    slowloris.sendall(b"X")
                    time.sleep(0.2)
            except OSError:
                pass

        threading.Thread(target=trickle, daemon=True).start()
        started = time.monotonic()
        answer, closed = _answer(slowloris)
        assert answer == b"HTTP/1.1 408 Request Timeout\nthe request head did not arrive within 1 s\n" and closed
        assert time.monotonic() - started < 3
    with socket.create_connection(("127.0.0.1", port)) as slow_body:  # a head, then 10 of its 1000 bytes
        slow_body.sendall(b"POST /segment HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n" + bytes(10))
        answer, closed = _answer(slow_body)
        assert answer == b"HTTP/1.1 408 Request Timeout\nthe body did not arrive within 1 s\n" and closed


def test_request_bodies_held_at_once_are_bounded_and_a_later_request_is_answered(server, eval_images):
    port = server(max_body_mb=1.0, max_bodies_mb=1.0).ready["port"]
    image = _encoded(eval_images[0][0])
    assert len(image) > 2**20 - 999_999  # with the held body, over the 1 MB of bodies
    with socket.create_connection(("127.0.0.1", port)) as holder:
        holder.sendall(b"POST /segment HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n" + bytes(999_999))
        time.sleep(0.5)  # the server has read it
        status, headers, body = _post(port, image)
        assert status == 503 and body == b"the service holds 1 MB of request bodies already; retry in a moment\n"
        assert headers.get("retry-after") == "1"
        holder.sendall(b"\0")
        answer, _ = _answer(holder)
        assert answer.startswith(b"HTTP/1.1 400")
    assert _post(port, image)[0] == 200


def test_the_service_reads_16_bit_and_transparent_images_as_evaluation_does(tmp_path):
    """A 16-bit PNG was clipped to white by the service's convert('RGB'); it now decodes like its 8-bit copy."""
    from harness.data import read_rgb

    grey8 = np.asarray(Image.open(sorted((SAMPLE_DIR / "images").iterdir())[0]).convert("L"))
    grey16 = grey8.astype(np.uint16) * 257  # the same picture at 16 bits
    eight, sixteen = _saved(Image.fromarray(grey8), "PNG"), _saved(Image.fromarray(grey16), "PNG")
    assert Image.open(io.BytesIO(sixteen)).mode in ("I;16", "I")
    x8, hw8 = codec.decode(eight, (184, 240), 10**8, 512)
    x16, hw16 = codec.decode(sixteen, (184, 240), 10**8, 512)
    assert hw8 == hw16 and np.array_equal(x8, x16) and x16.std() > 10  # not one uniform value
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[:2] = (10, 20, 30, 255)
    (tmp_path / "a.png").write_bytes(_saved(Image.fromarray(rgba, "RGBA"), "PNG"))
    served, _ = codec.decode((tmp_path / "a.png").read_bytes(), (4, 4), 10**8, 512)
    assert np.array_equal(served, read_rgb(tmp_path / "a.png"))  # transparent rows: the padding colour, alike
    floats = _saved(Image.fromarray(np.ones((4, 4), np.float32)), "TIFF")
    with pytest.raises(codec.BadImage):
        codec.decode(floats, (4, 4), 10**8, 512)
