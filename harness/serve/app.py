"""The service: `POST /segment` (a PNG or JPEG in, the class-index mask as PNG out) and `GET /health`.

A plain ASGI callable on uvicorn, no framework: two routes do not need one, and every megabyte the server
stack takes is a megabyte the 512 MB cloud service cannot give the model. Inference runs on one thread
beside the event loop (ONNX Runtime's own pool uses the target's cores), so requests that arrive together
queue for it; each answer says in a `Server-Timing` header how long it spent decoding, queueing,
inferring and encoding.
"""

from __future__ import annotations

import asyncio
import io
import json
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from harness.serve.config import ServerConfig

TIMING_PARTS = ("decode", "queue", "infer", "encode")


class BadImage(ValueError):
    """The request body is not an image the service can read."""


class SegmentationModel:
    """An ONNX Runtime session made once, with the target's threads and options, and the image codec around it."""

    def __init__(self, config: ServerConfig):
        import onnxruntime as ort

        from harness.measure.session import session_options

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
        started = time.perf_counter()
        self._warm_up()
        self.first_call_ms = (time.perf_counter() - started) * 1000  # the first request's whole path

    def _warm_up(self) -> None:
        """One request's whole path before the service says it is ready (the first run of a session is slow)."""
        from PIL import Image

        blank = io.BytesIO()
        Image.new("RGB", (self.config.input_hw[1], self.config.input_hw[0])).save(blank, format="PNG")
        x, image_hw, fitted_hw = self.decode(blank.getvalue())
        self.encode(self.session.run(None, {self.input_name: x})[0][0].argmax(0).astype(np.uint8), image_hw, fitted_hw)

    def decode(self, body: bytes) -> tuple[np.ndarray, tuple[int, int], tuple[int, int]]:
        """Normalised (1,3,H,W) input, the image's own size, and the size it was fitted to before padding."""
        from PIL import Image, UnidentifiedImageError

        from harness.data import fit_to_input, normalize

        if not body:
            raise BadImage("the request has no body; send a PNG or JPEG image as the body")
        try:
            with Image.open(io.BytesIO(body)) as image:
                if image.format not in ("PNG", "JPEG"):
                    raise BadImage(f"the body is a {image.format} image; send a PNG or JPEG")
                rgb = np.asarray(image.convert("RGB"))
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
            if isinstance(e, BadImage):
                raise
            raise BadImage(f"the body cannot be decoded as PNG or JPEG ({type(e).__name__}: {e})") from None
        h, w = rgb.shape[:2]
        th, tw = self.config.input_hw
        scale = min(th / h, tw / w, 1.0)
        fitted_hw = (max(1, int(h * scale)), max(1, int(w * scale)))
        padded, _ = fit_to_input(rgb, None, self.config.input_hw, 0)
        return normalize(padded[None]), (h, w), fitted_hw

    def infer(self, x: np.ndarray) -> np.ndarray:
        if self.config.handler_delay_ms:
            time.sleep(self.config.handler_delay_ms / 1000)
        logits = self.session.run(None, {self.input_name: x})[0]
        return logits[0].argmax(0).astype(np.uint8)

    @staticmethod
    def encode(mask: np.ndarray, image_hw: tuple[int, int], fitted_hw: tuple[int, int]) -> bytes:
        """The mask at the image's own size (padding cut off, then scaled back with nearest neighbour), as PNG."""
        from PIL import Image

        picture = Image.fromarray(np.ascontiguousarray(mask[: fitted_hw[0], : fitted_hw[1]]), mode="L")
        if fitted_hw != image_hw:
            picture = picture.resize((image_hw[1], image_hw[0]), Image.NEAREST)
        out = io.BytesIO()
        picture.save(out, format="PNG", compress_level=1)  # fast: the mask is small and mostly runs of one value
        return out.getvalue()


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


class SegmentApp:
    """The ASGI application."""

    def __init__(self, model: SegmentationModel, on_ready=None):
        self.model, self.on_ready = model, on_ready
        self.inference = ThreadPoolExecutor(max_workers=1, thread_name_prefix="infer")
        self.max_body_bytes = int(model.config.max_body_mb * 1e6)
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
            config = self.model.config
            body = json.dumps({"status": "ok", "model": config.model, "variant": config.variant,
                               "input_hw": list(config.input_hw), "threads": config.threads,
                               "onnxruntime": self.model.ort_version, "answered": self.answered}).encode()
            await _send(send, 200, body, [(b"content-type", b"application/json")])
        elif path == "/segment":
            if method != "POST":
                await _send(send, 405, b"use POST /segment with a PNG or JPEG body\n", [(b"allow", b"POST")])
                return
            await self._segment(receive, send)
        else:
            await _send(send, 404, f"no route {path}; use POST /segment or GET /health\n".encode())

    async def _segment(self, receive, send) -> None:
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            if len(body) > self.max_body_bytes:
                await _send(send, 413, f"the image is over {self.model.config.max_body_mb:g} MB\n".encode())
                return
            if not message.get("more_body", False):
                break
        ms = {}
        start = time.perf_counter()
        try:
            x, image_hw, fitted_hw = self.model.decode(bytes(body))
        except BadImage as e:
            await _send(send, 400, f"{e}\n".encode())
            return
        ms["decode"] = (time.perf_counter() - start) * 1000
        queued = time.perf_counter()

        def infer():
            began = time.perf_counter()
            mask = self.model.infer(x)
            return mask, began, time.perf_counter()

        try:
            mask, began, ended = await asyncio.get_running_loop().run_in_executor(self.inference, infer)
        except Exception as e:  # the runtime's own failure: the client gets it as a 500, the service stays up
            await _send(send, 500, f"inference failed: {type(e).__name__}: {e}\n".encode())
            return
        ms["queue"], ms["infer"] = (began - queued) * 1000, (ended - began) * 1000
        start = time.perf_counter()
        png = self.model.encode(mask, image_hw, fitted_hw)
        ms["encode"] = (time.perf_counter() - start) * 1000
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
                self.inference.shutdown(wait=False, cancel_futures=True)
                await send({"type": "lifespan.shutdown.complete"})
                return


async def _send(send, status: int, body: bytes, headers: list[tuple[bytes, bytes]] | None = None) -> None:
    headers = list(headers or [(b"content-type", b"text/plain; charset=utf-8")])
    if not any(name == b"content-type" for name, _ in headers):
        headers.append((b"content-type", b"text/plain; charset=utf-8"))
    headers.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
