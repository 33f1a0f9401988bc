"""The service: `POST /segment` (a PNG or JPEG in, the class-index mask as PNG out) and `GET /health`.

A plain ASGI callable on uvicorn, no framework: two routes do not need one, and every megabyte the server
stack takes is a megabyte the 512 MB cloud service cannot give the model. Decoding and encoding run on one
thread, inference on another (ONNX Runtime's own pool uses the target's cores), never on the event loop, so
requests that arrive together queue for them; each answer says in a `Server-Timing` header how long it spent
decoding, queueing (for either thread), inferring and encoding.
"""

from __future__ import annotations

import asyncio
import io
import json
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from harness.measure.backends import DEFAULT_BACKEND  # the service runs the reference runtime
from harness.serve import codec
from harness.serve.codec import BadImage
from harness.serve.config import ServerConfig

TIMING_PARTS = ("decode", "queue", "infer", "encode")


class SegmentationModel:
    """An ONNX Runtime session made once, with the target's threads and options, and the image codec around it."""

    def __init__(self, config: ServerConfig):
        import onnxruntime as ort

        from harness.measure.backends.onnxruntime_cpu import session_options

        self.config = config
        started = time.perf_counter()
        self.session = ort.InferenceSession(config.onnx_path, session_options(ort, config),
                                            providers=["CPUExecutionProvider"])
        self.load_ms = (time.perf_counter() - started) * 1000
        first = self.session.get_inputs()[0]
        self.input_name, self.ort_version = first.name, ort.__version__
        fixed_hw = tuple(first.shape[2:4]) if len(first.shape) == 4 else ()
        if len(fixed_hw) == 2 and all(isinstance(d, int) for d in fixed_hw) and fixed_hw != tuple(config.input_hw):
            raise ValueError(f"the model takes {fixed_hw[0]}x{fixed_hw[1]} images, not the "
                             f"{config.input_hw[0]}x{config.input_hw[1]} it was given; pass --input-size {fixed_hw[0]}x{fixed_hw[1]}")
        self.memory_mb, self.max_pixels = config.memory_mb, config.input_hw[0] * config.input_hw[1]
        started = time.perf_counter()
        self._warm_up()
        self.first_call_ms = (time.perf_counter() - started) * 1000  # the first request's whole path
        self._size_images()

    def _warm_up(self) -> None:
        """One request's whole path before the service says it is ready (the first run of a session is slow)."""
        from PIL import Image

        blank = io.BytesIO()
        Image.new("RGB", (self.config.input_hw[1], self.config.input_hw[0])).save(blank, format="PNG")
        x, image_hw, fitted_hw = self.decode(blank.getvalue())
        self.encode(self.session.run(None, {self.input_name: x})[0][0].argmax(0).astype(np.uint8), image_hw, fitted_hw)

    def _size_images(self) -> None:
        """The largest image, from the memory left once the model has answered (codec.max_image_pixels)."""
        from harness.serve.process import status_mb

        used_mb = status_mb("self", "VmHWM") or 0.0  # the peak, not the resident: ORT without its arena frees between runs
        self.memory_mb = self.config.memory_mb or used_mb + codec.available_mb()
        self.max_pixels = codec.max_image_pixels(self.memory_mb, used_mb, self.config.max_bodies_mb, self.config.input_hw)

    def decode(self, body: bytes) -> tuple[np.ndarray, tuple[int, int], tuple[int, int]]:
        """Normalised (1,3,H,W) input, the image's own size, and the size it was fitted to before padding."""
        from harness.data import fit_to_input, normalize

        fitted, image_hw = codec.decode(body, self.config.input_hw, self.max_pixels, self.memory_mb)
        padded, _ = fit_to_input(fitted, None, self.config.input_hw, 0)  # fits already: only padded
        return normalize(padded[None]), image_hw, fitted.shape[:2]

    def infer(self, x: np.ndarray) -> np.ndarray:
        if self.config.handler_delay_ms:
            time.sleep(self.config.handler_delay_ms / 1000)
        logits = self.session.run(None, {self.input_name: x})[0]
        return logits[0].argmax(0).astype(np.uint8)

    encode = staticmethod(codec.encode)


def server_timing(ms: dict[str, float]) -> str:
    return ", ".join(f"{name};dur={ms[name]:.3f}" for name in TIMING_PARTS if name in ms)


def parse_server_timing(header: str) -> dict[str, float]:
    parts = {}
    for item in header.split(","):
        name, _, rest = item.strip().partition(";")
        if rest.startswith("dur="):
            try:
                parts[name] = float(rest[4:])
            except ValueError:
                continue
    return parts


@dataclass
class _Held:
    """One request's body bytes counted in SegmentApp.bodies_held, until it is decoded or the request ends."""

    bytes: int = 0


class SegmentApp:
    """The ASGI application."""

    def __init__(self, model: SegmentationModel, on_ready=None):
        self.model, self.on_ready = model, on_ready
        self.inference = ThreadPoolExecutor(max_workers=1, thread_name_prefix="infer")
        # One image decoded or encoded at a time, off the event loop: /health and other clients are answered
        # meanwhile, and one image's worst case is all the memory arithmetic (codec.max_image_pixels) has to hold.
        self.codec = ThreadPoolExecutor(max_workers=1, thread_name_prefix="codec")
        self.max_body_bytes = int(model.config.max_body_mb * 1e6)
        self.max_bodies_bytes = int(model.config.max_bodies_mb * 2**20)
        self.bodies_held = 0  # bytes of request bodies held now, all connections together
        self.answered = 0

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        path, method = scope["path"], scope["method"]
        if path == "/health":
            if method != "GET":
                await _send(send, 405, b"use GET /health\n", [(b"allow", b"GET")])
                return
            await _send(send, 200, self._health(), [(b"content-type", b"application/json")])
        elif path == "/segment":
            if method != "POST":
                await _send(send, 405, b"use POST /segment with a PNG or JPEG body\n", [(b"allow", b"POST")])
                return
            held = _Held()
            try:
                await self._segment(receive, send, held)
            finally:
                self.bodies_held -= held.bytes
        else:
            await _send(send, 404, f"no route {path}; use POST /segment or GET /health\n".encode())

    def _health(self) -> bytes:
        config, model = self.model.config, self.model
        return json.dumps({"status": "ok", "model": config.model, "variant": config.variant,
                           "input_hw": list(config.input_hw), "threads": config.threads,
                           DEFAULT_BACKEND: model.ort_version, "answered": self.answered,
                           "memory_mb": round(model.memory_mb), "max_image_pixels": model.max_pixels}).encode()

    async def _read_body(self, receive, send, held: _Held) -> bytes | None:
        """The whole body, or None once the client has its 408/413/503 (or left); its bytes are counted as they come."""
        chunks, config = [], self.model.config
        try:
            async with asyncio.timeout(config.body_timeout_s):
                while True:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        return None
                    chunk = message.get("body", b"")
                    if held.bytes + len(chunk) > self.max_body_bytes:
                        await _send(send, 413, f"the image is over {config.max_body_mb:g} MB\n".encode())
                        return None
                    if self.bodies_held + len(chunk) > self.max_bodies_bytes:
                        await _send(send, 503, f"the service holds {config.max_bodies_mb:g} MB of request bodies "
                                               f"already; retry in a moment\n".encode(), [(b"retry-after", b"1")])
                        return None
                    chunks.append(chunk)
                    held.bytes += len(chunk)
                    self.bodies_held += len(chunk)
                    if not message.get("more_body", False):
                        return b"".join(chunks)
        except TimeoutError:
            await _send(send, 408, f"the body did not arrive within {config.body_timeout_s:g} s\n".encode(),
                        [(b"connection", b"close")])
            return None

    async def _segment(self, receive, send, held: _Held) -> None:
        body = await self._read_body(receive, send, held)
        if body is None:
            return
        waits = []
        try:
            (x, image_hw, fitted_hw), decode_ms = await _on(self.codec, waits, self.model.decode, body)
        except BadImage as e:
            await _send(send, e.status, f"{e}\n".encode())
            return
        del body  # its bytes stop counting once decoded
        self.bodies_held -= held.bytes
        held.bytes = 0
        try:
            mask, infer_ms = await _on(self.inference, waits, self.model.infer, x)
        except Exception as e:  # the runtime's own failure: the client gets it as a 500, the service stays up
            said = (str(e).strip().splitlines() or [""])[0][:300]
            await _send(send, 500, f"inference failed: {type(e).__name__}: {said}\n".encode())
            return
        png, encode_ms = await _on(self.codec, waits, self.model.encode, mask, image_hw, fitted_hw)
        ms = {"decode": decode_ms, "queue": sum(waits), "infer": infer_ms, "encode": encode_ms}
        self.answered += 1
        await _send(send, 200, png, [(b"content-type", b"image/png"), (b"server-timing", server_timing(ms).encode())])

    async def _lifespan(self, receive, send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
                if self.on_ready is not None:
                    self.on_ready()
            elif message["type"] == "lifespan.shutdown":
                for pool in (self.inference, self.codec):
                    pool.shutdown(wait=False, cancel_futures=True)
                await send({"type": "lifespan.shutdown.complete"})
                return


async def _on(pool: ThreadPoolExecutor, waits: list[float], work, *args):
    """work(*args) on a thread of `pool`: its result and run time (ms); the time it waited is appended to `waits`."""
    submitted = time.perf_counter()

    def timed():
        began = time.perf_counter()
        return work(*args), began, time.perf_counter()

    result, began, ended = await asyncio.get_running_loop().run_in_executor(pool, timed)
    waits.append((began - submitted) * 1000)
    return result, (ended - began) * 1000


async def _send(send, status: int, body: bytes, headers: list[tuple[bytes, bytes]] | None = None) -> None:
    headers = list(headers or [(b"content-type", b"text/plain; charset=utf-8")])
    if not any(name == b"content-type" for name, _ in headers):
        headers.append((b"content-type", b"text/plain; charset=utf-8"))
    headers.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
