"""`harness profile MODEL --target T [--variant V ...] [--backend B]`: where a variant's time goes, operator by operator."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from harness.measure.backends import DEFAULT_BACKEND, profiled_backends
from harness.cli.options import add_data_options, add_model_options, resolve_spec, variant_file
from harness.errors import HarnessError

def add_parser(sub) -> None:
    from harness.variants import list_variants

    p = sub.add_parser("profile", help="per-operator time of one or more variants (ORT's profiler, OpenVINO's counters)")
    p.add_argument("model", help="suite entry, registry name, or a .onnx file of your own")
    p.add_argument("--target", default="watch", help="the profile whose threads, affinity and session options are used")
    p.add_argument("--variant", action="append", metavar="NAME",
                   help=f"repeat to compare (default: fp32 and int8-static): "
                        f"{', '.join(v for v in list_variants() if not v.startswith('litert'))}, or a named variant "
                        f"of the target")
    p.add_argument("--backend", default=DEFAULT_BACKEND,
                   help="a backend with a per-operator profiler: onnxruntime (default), openvino, or a plugin's")
    p.add_argument("--runs", type=int, default=20, help="timed calls profiled after the target's warm-up")
    p.add_argument("--top", type=int, default=10, help="operators shown per variant")
    p.add_argument("--out", help="folder for the traces and operators.json (default: results/latest/profile of the project)")
    add_model_options(p)
    add_data_options(p)
    p.set_defaults(run=run)


def run(args) -> int:
    from rich.markup import escape

    from harness.measure.backends import missing_extra
    from harness.files import path_under, project_root
    from harness.report.profile import profile_tables
    from harness.report.render import make_console
    from harness.spec import load_suite
    from harness.targets import load_target

    if args.runs < 1 or args.top < 1:
        raise HarnessError("--runs and --top must be at least 1")
    why = missing_extra(args.backend)
    if why:
        raise HarnessError(why)
    if args.backend not in profiled_backends():  # read here, not at import: every command would scan the plugins
        raise HarnessError(f"--backend {args.backend} has no per-operator profiler; use one of "
                           f"{', '.join(profiled_backends())}")
    variants = args.variant or ["fp32", "int8-static"]
    target, suite = load_target(args.target), load_suite(args.suite)
    for variant in variants:
        if target.scenario.variant(variant).suffix != ".onnx":
            raise HarnessError(f"--variant {variant}: only ONNX files are profiled here; profile an ONNX variant")
        runs_under = target.scenario.variant(variant).backends
        if args.backend not in runs_under:
            raise HarnessError(f"variant {variant} runs under {' or '.join(runs_under)}, not "
                               f"{args.backend}: pass --backend {runs_under[0]}")
    spec = resolve_spec(args, suite)
    out = path_under(Path(args.out or project_root() / "results" / "latest" / "profile"), f"{spec.name}_{args.backend}")
    out.mkdir(parents=True, exist_ok=True)
    sample = out / "sample.npy"
    _write_sample(suite, spec, args.data, sample)
    console, profiles = make_console(), {}
    for variant in variants:
        path = variant_file(args, suite, spec, variant, target)
        request = _profile_request(path, target, sample, args.backend, variant)
        folder = path_under(out, variant)
        folder.mkdir(exist_ok=True)
        with console.status(f"profiling {escape(spec.name)} {variant} under {args.backend} ({args.runs} calls)"):
            profiles[variant] = _profile_in_child(request, folder, args.runs)
    (out / "operators.json").write_text(json.dumps(profiles, indent=1))
    for table in profile_tables(spec.name, args.backend, target, profiles, args.top):
        console.print(table)
    console.print(f"traces and operators.json in {escape(str(out))}")
    return 0


def profile_bench_run(console, target, suite, run, args) -> None:
    """bench --profile: every variant the run measured under ORT or OpenVINO, per model, its slowest operators."""

    from rich.markup import escape

    from harness.bench.plan import split_run
    from harness.files import path_under
    from harness.report.profile import profile_tables

    root = Path(args.results_dir) / "latest" / "profile"
    for spec in suite.models:
        by_backend: dict[str, dict] = {}
        for (model, name), path in run.files.items():
            backend, variant = split_run(name)
            if model == spec.name and backend in profiled_backends():
                by_backend.setdefault(backend, {})[variant] = path
        for backend, files in by_backend.items():
            out = path_under(root, f"{spec.name}_{backend}")  # a name must not climb out of root
            out.mkdir(parents=True, exist_ok=True)
            _write_sample(suite, spec, args.data, out / "sample.npy")
            profiles = {}
            for variant, path in files.items():
                request = _profile_request(path, target, out / "sample.npy", backend, variant)
                path_under(out, variant).mkdir(exist_ok=True)
                with console.status(f"profiling {escape(spec.name)} {variant} under {backend}"):
                    try:
                        profiles[variant] = _profile_in_child(request, out / variant, 20)
                    except HarnessError as e:  # bf16 on a CPU without it: said, the others profiled
                        console.print(escape(f"{spec.name} {variant} under {backend}: {e}"))
            (out / "operators.json").write_text(json.dumps(profiles, indent=1))
            for table in profile_tables(spec.name, backend, target, profiles, 5) if profiles else ():
                console.print(table)
    console.print(f"profiles in {escape(str(root))}")


def _profile_request(path: Path, target, sample: Path, backend: str, variant: str):
    """The Request a measuring child would get for this file, pinned to the target's first CPUs here."""
    import dataclasses

    from harness.results.measurement import build_request
    from harness.bench.plan import run_options
    from harness.measure.backends import requested_precision

    request = build_request(path, target, sample)
    affinity = request.cpu_affinity or tuple(sorted(os.sched_getaffinity(0))[: request.threads])
    return dataclasses.replace(request, backend=backend, cpu_affinity=affinity,
                               precision=requested_precision(backend, target.scenario.variant(variant).precision),
                               backend_options=run_options(target, variant, backend))


def _write_sample(suite, spec, data_arg, path: Path) -> None:
    import numpy as np

    from harness.cli.options import parity_images
    from harness.data import normalize

    np.save(path, normalize(parity_images(suite, spec, data_arg)[:1])[0])  # one real evaluation image


def _profile_in_child(request, folder: Path, runs: int) -> dict:
    """The profiler in its own process, like a measuring child: pinned, the target's threads, no torch."""
    proc = subprocess.run([sys.executable, "-m", "harness.measure.profile", "--out", str(folder), "--runs", str(runs)],
                          input=request.to_json(), capture_output=True, text=True, timeout=900)
    if proc.returncode != 0 or not proc.stdout.strip():
        lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
        raise HarnessError(f"profiling failed: {lines[-1] if lines else f'exit code {proc.returncode}'}")
    return json.loads(proc.stdout)
