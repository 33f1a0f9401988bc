"""`harness serve MODEL --target cloud --port 8000`: one variant of a model as an HTTP service, in the foreground."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from harness.cli.options import add_data_options, add_model_options, resolve_spec, variant_file
from harness.measure.backends import DEFAULT_BACKEND
from harness.errors import HarnessError


def add_parser(sub) -> None:
    from harness.variants import list_variants

    p = sub.add_parser("serve", help="serve one variant of a model over HTTP (POST /segment, GET /health)")
    p.add_argument("model", help="suite entry, registry name, or a .onnx file of your own")
    p.add_argument("--target", default="cloud", help="the profile whose threads and session options the service uses")
    p.add_argument("--variant", default="fp32", help=f"which file to serve (made if needed): "
                   f"{', '.join(list_variants(DEFAULT_BACKEND))} or a named variant of the target; the service runs "
                   f"ONNX Runtime")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: every interface)")
    p.add_argument("--port", type=int, default=8000)
    add_model_options(p)
    add_data_options(p)
    p.set_defaults(run=run)


def run(args) -> int:
    import importlib.util

    from harness.serve.codec import target_memory_mb
    from harness.serve.config import ServerConfig
    from harness.serve.server import bind
    from harness.spec import load_suite
    from harness.targets import load_target

    if importlib.util.find_spec("uvicorn") is None:
        raise HarnessError("harness serve needs the serve extra: pip install 'harness[serve]'")
    if not 0 <= args.port <= 65535:
        raise HarnessError(f"--port {args.port} is not a port; use 1-65535 (0: any free port)")
    from harness.bench.plan import run_options

    target = load_target(args.target)
    if DEFAULT_BACKEND not in target.scenario.variant(args.variant).backends:
        raise HarnessError(f"--variant {args.variant} runs under {' or '.join(target.scenario.variant(args.variant).backends)}"
                           f"; the service runs {DEFAULT_BACKEND}: serve a variant it runs")
    suite = load_suite(args.suite)
    spec = resolve_spec(args, suite)
    if suite.task != "segmentation":
        raise HarnessError(f"suite {suite.path} is a {suite.task} suite; the service answers POST /segment with a mask")
    try:  # before any export: a port in use is found in a second, not after minutes of calibration
        bind(args.host, args.port).close()
    except SystemExit as e:
        raise HarnessError(str(e.code)) from None
    path = variant_file(args, suite, spec, args.variant, target)
    device = target.device
    config = ServerConfig(
        onnx_path=str(path), input_hw=spec.input_hw, num_classes=spec.num_classes, threads=device.threads,
        cpu_affinity=tuple(device.cpu_affinity or ()), inter_op_threads=device.inter_op_threads,
        backend_options={**run_options(target, args.variant, DEFAULT_BACKEND), "allow_spinning": target.scenario.http_allow_spinning},
        host=args.host, port=args.port, model=spec.name, variant=args.variant,
        memory_mb=target_memory_mb(target.budgets))
    config_path = _config_file(config)
    sys.stdout.flush()
    sys.stderr.flush()
    # The service is its own interpreter, without torch and the exporter in its memory; it removes the file once read.
    os.execv(sys.executable, [sys.executable, "-m", "harness.serve.server", "--config", str(config_path), "--remove-config"])
    return 0  # not reached


def _config_file(config) -> Path:
    """The server's config under the cache, as server-PID.json; those of servers that are gone (older runs) removed."""
    from harness.cache import cache_dir

    folder = cache_dir() / "serve"
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("server-*.json"):
        pid = old.stem.removeprefix("server-")
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            old.unlink(missing_ok=True)
    path = folder / f"server-{os.getpid()}.json"
    path.write_text(config.to_json())
    return path
