"""The server process: `python -m harness.serve.server --config FILE [--ready-fd N]`.

It pins itself to the target's CPUs, binds its port before loading anything (a port in use is one line),
makes the session once, and serves with uvicorn: one worker, no reload, no access log. It never imports
torch. On the ready pipe it sends one JSON line: the port, and its resident memory with the whole server
stack imported but no model yet (what the service itself costs), then with the model loaded.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import socket
import sys

from harness.serve.config import ServerConfig
from harness.serve.process import status_mb

EXIT_BAD_INPUT = 2  # as harness.errors: the message says what to fix


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="harness.serve.server")
    parser.add_argument("--config", required=True)
    parser.add_argument("--ready-fd", type=int)
    args = parser.parse_args(argv)
    with open(args.config) as f:
        config = ServerConfig.from_json(f.read())
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(config.threads)
    try:
        sock = bind(config.host, config.port)
    except SystemExit as e:
        print(e.code, file=sys.stderr)
        return EXIT_BAD_INPUT

    import numpy  # noqa: F401  the whole stack, imported before the model, is what the service itself costs
    import onnxruntime  # noqa: F401
    import PIL.Image  # noqa: F401
    import uvicorn

    from harness.serve.app import SegmentApp, SegmentationModel

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
             "ort_version": model.ort_version, "load_ms": model.load_ms, "first_call_ms": model.first_call_ms, "cpu_affinity": sorted(os.sched_getaffinity(0))}

    def on_ready() -> None:
        if args.ready_fd is not None:
            with os.fdopen(args.ready_fd, "w") as pipe:
                pipe.write(json.dumps(ready) + "\n")
        else:
            print(f"serving {config.model or config.onnx_path} {config.variant} on http://{config.host}:{ready['port']} "
                  f"(POST /segment, GET /health); Ctrl-C stops", file=sys.stderr, flush=True)

    app = SegmentApp(model, on_ready=on_ready)
    server = uvicorn.Server(uvicorn.Config(app, lifespan="on", workers=1, access_log=False, log_level="warning",
                                           timeout_keep_alive=30, backlog=2048))
    server.run(sockets=[sock])
    return 0


if __name__ == "__main__":
    sys.exit(main())
