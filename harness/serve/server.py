"""The server process: `python -m harness.serve.server --config FILE [--ready-fd N]`.

It pins itself to the target's CPUs, binds its port before loading anything (a port in use is one line),
makes the session once, and serves with uvicorn: one worker, no reload, no access log. It never imports
torch. On the ready pipe it sends one JSON line: the port, and its resident memory with the whole server
stack imported but no model yet (what the service itself costs), then with the model loaded. A stop signal
(SIGINT, SIGTERM, SIGHUP) ends it after uvicorn's graceful shutdown: one line, exit 128 + the signal.
"""

from __future__ import annotations

import argparse
import errno
import functools
import json
import os
import signal
import socket
import sys

from harness.measure import runtime_environment
from harness.serve.config import ServerConfig
from harness.serve.process import status_mb

EXIT_BAD_INPUT = 2  # as harness.errors: the message says what to fix
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)  # exit 128 + the signal: 130, 143, 129, as the CLI
GRACEFUL_SHUTDOWN_S = 5  # requests in flight at a stop signal get this long to finish


def bind(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        if e.errno == errno.EADDRINUSE:
            raise SystemExit(f"port {port} on {host} is already in use; stop what holds it or choose another with --port")
        raise SystemExit(f"cannot listen on {host}:{port} ({e.strerror}); choose another --host or --port")
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


class Stopped(BaseException):
    """A stop signal: a BaseException, so no `except Exception` on the way (a model load, a request) takes it."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def _on_signal(serving: dict, signum: int, frame) -> None:
    """While uvicorn serves: its graceful shutdown (it takes SIGINT and SIGTERM itself, SIGHUP comes here), which
    raises the signal again when done; before it serves, or then: stop here."""
    server = serving.get("server")
    if server is not None and not server.should_exit:
        server.handle_exit(signum, frame)
        return
    raise Stopped(signum)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="harness.serve.server")
    parser.add_argument("--config", required=True)
    parser.add_argument("--ready-fd", type=int)
    parser.add_argument("--remove-config", action="store_true", help="the config file is this run's own: remove it once read")
    args = parser.parse_args(argv)
    if args.ready_fd is not None:  # started by a bench (harness serve in the foreground lives on its own)
        from harness.measure import die_with_parent

        die_with_parent()
    serving: dict = {}  # the uvicorn server, once it runs
    for signum in STOP_SIGNALS:
        signal.signal(signum, functools.partial(_on_signal, serving))
    try:
        with open(args.config) as f:
            config = ServerConfig.from_json(f.read())
        if args.remove_config:  # read once, at start: nothing is left behind, even by a kill -9
            os.unlink(args.config)
        return _serve(config, args.ready_fd, serving)
    except Stopped as stop:
        how = {signal.SIGINT: "interrupted (SIGINT)", signal.SIGTERM: "terminated (SIGTERM)"}.get(stop.signum, "hung up (SIGHUP)")
        print(f"harness serve: {how}, stopped", file=sys.stderr, flush=True)
        return 128 + stop.signum


def _serve(config: ServerConfig, ready_fd: int | None, serving: dict) -> int:
    runtime_environment(config.threads)
    try:
        sock = bind(config.host, config.port)
    except SystemExit as e:
        print(e.code, file=sys.stderr)
        return EXIT_BAD_INPUT

    import numpy  # noqa: F401  the whole stack, imported before the model, is what the service itself costs
    import onnxruntime  # noqa: F401
    import uvicorn
    from PIL import Image, PngImagePlugin

    from harness.serve.app import SegmentApp, SegmentationModel
    from harness.serve.connection import deadline_protocol

    # The service refuses images by their header against its own memory (codec.max_image_pixels); Pillow's fixed
    # 89/179 Mpx check would warn on stderr or raise first. Text chunks are not used: 1 MB of them, not 64.
    Image.MAX_IMAGE_PIXELS = None
    PngImagePlugin.MAX_TEXT_MEMORY = 2**20
    if config.cpu_affinity:
        os.sched_setaffinity(0, config.cpu_affinity)  # before the session: ORT's threads inherit it
    server_rss_mb = status_mb("self", "VmRSS")
    try:
        model = SegmentationModel(config)
    except Exception as e:  # ORT says why a file will not load in many types; one line each way
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        print(f"cannot load {config.onnx_path} into ONNX Runtime: {first[:300]}", file=sys.stderr)
        return EXIT_BAD_INPUT
    ready = {"port": sock.getsockname()[1], "server_rss_mb": server_rss_mb, "loaded_rss_mb": status_mb("self", "VmRSS"),
             "ort_version": model.ort_version, "load_ms": model.load_ms, "first_call_ms": model.first_call_ms,
             "cpu_affinity": sorted(os.sched_getaffinity(0)), "max_image_pixels": model.max_pixels}

    def on_ready() -> None:
        if ready_fd is not None:
            with os.fdopen(ready_fd, "w") as pipe:
                pipe.write(json.dumps(ready) + "\n")
        else:
            print(f"serving {config.model or config.onnx_path} {config.variant} on http://{config.host}:{ready['port']} "
                  f"(POST /segment, GET /health; images up to {model.max_pixels / 1e6:.4g} Mpx); Ctrl-C stops",
                  file=sys.stderr, flush=True)

    app = SegmentApp(model, on_ready=on_ready)
    serving["server"] = server = uvicorn.Server(uvicorn.Config(
        app, lifespan="on", workers=1, access_log=False, log_level="warning", backlog=2048,
        http=deadline_protocol(config.header_timeout_s), timeout_keep_alive=config.keep_alive_s,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S))
    server.run(sockets=[sock])
    return 0


if __name__ == "__main__":
    sys.exit(main())
