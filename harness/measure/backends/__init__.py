"""Runtimes the measuring child can time a model under: ONNX Runtime's CPU EP (the default), OpenVINO's CPU plugin
and LiteRT with XNNPACK.

Standard library only here: a backend module imports its runtime when it loads a model, so a child imports
only the runtime it measures. Every backend offers the same three things: load a model file with the
request's threads and options, run one call, and say its version and the precision it actually ran.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util

DEFAULT_BACKEND = "onnxruntime"
# backend -> (its module under harness.measure.backends, the Python module it needs, the extra that installs it)
BACKENDS = {
    "onnxruntime": ("harness.measure.backends.onnxruntime_cpu", "onnxruntime", ""),
    "openvino": ("harness.measure.backends.openvino_cpu", "openvino", "openvino"),
    "litert": ("harness.measure.backends.litert_cpu", "ai_edge_litert", "litert"),
}
# Another package adds a backend as an entry point of this group: `name = "module"`, where the module offers
# what the built-in ones do (load, FILE_SUFFIX; optionally RUNTIME, INSTALL, PACKAGE, VARIANTS, profile). See docs/backends.md.
ENTRY_POINT_GROUP = "harness.backends"


@functools.cache
def _plugins() -> dict[str, str]:
    """The backends other packages registered (read once per process: scanning the installed packages took 22 ms here)."""
    from importlib.metadata import entry_points

    found = {}
    for point in entry_points(group=ENTRY_POINT_GROUP):
        if point.name in BACKENDS:
            continue  # a built-in name is never taken over by a plugin
        found[point.name] = point.module
    return found


def known_backends() -> tuple[str, ...]:
    """The built-in backends, then the ones other packages registered."""
    return (*BACKENDS, *_plugins())


def _entry(backend: str) -> tuple[str, str, str]:
    """(module, the runtime module it needs, how to install it) of a known backend."""
    if backend in BACKENDS:
        return BACKENDS[backend]
    if backend not in _plugins():  # e.g. a child on a device where the plugin's package is not installed
        raise LookupError(f"backend '{backend}' is not registered where this runs (no entry point '{backend}' in "
                          f"group {ENTRY_POINT_GROUP}): install the package that provides it there")
    module = _plugins()[backend]
    found = importlib.import_module(module)
    return module, getattr(found, "RUNTIME", ""), getattr(found, "INSTALL", "")


def backend_module(backend: str):
    """The module implementing `backend` (load, FILE_SUFFIX, optionally profile)."""
    return importlib.import_module(_entry(backend)[0])


def import_runtime(backend: str) -> None:
    """Import the backend's runtime (a child does so before it pins its CPUs: siblings import on every core)."""
    if runtime := _entry(backend)[1]:
        importlib.import_module(runtime)


NOT_ON_THIS_CPU = "not on this CPU"  # a refused row's status starts so: a fact of the machine, never a failure


class BackendRefused(RuntimeError):
    """The backend cannot run this request as asked (a precision the CPU lacks): the row says why, nothing runs."""


def load_model(request):
    """The request's model loaded by its backend: an object with `input_name`, `run(batch)`, `version`, `precision`,
    `load_ms` (and `reload(batch)`: the same model for another batch size)."""
    return backend_module(request.backend).load(request)


def missing_extra(backend: str) -> str | None:
    """Why `backend` cannot run here (unknown, or its extra not installed), in one line; None when it can."""
    if backend not in known_backends():
        return f"backend '{backend}' is not one of {', '.join(known_backends())}"
    try:
        _, needs, extra = _entry(backend)
    except Exception as e:  # noqa: BLE001 - a plugin whose module is gone or broken: named, never a traceback
        return f"backend '{backend}' is registered but its module cannot be imported ({e}); reinstall the package " \
               f"that provides it"
    if not needs:
        return None
    try:
        found = importlib.util.find_spec(needs)
    except (ImportError, ValueError):  # a broken install, or a finder that refuses the name
        found = None
    if found is None:
        if backend in BACKENDS:
            return f"backend '{backend}' needs the {extra} extra: pip install 'harness[{extra}]'"
        return f"backend '{backend}' needs {needs}: {extra or 'install ' + needs}"
    return None


def checked_options(backend: str, table: dict) -> dict:
    """A target's [backend] table, checked against the options the backend's module declares (OPTIONS: name ->
    default, whose type the value must have); ValueError names the first one that is not."""
    allowed = getattr(backend_module(backend), "OPTIONS", {})
    for name, value in table.items():
        if name not in allowed:
            raise ValueError(f"[{backend}] has no option '{name}'; its options: {', '.join(allowed) or 'none'}")
        if type(value) is not type(allowed[name]):
            raise ValueError(f"[{backend}] {name} must be {type(allowed[name]).__name__}, got {value!r}")
    return dict(table)


def options_from_tables(tables: dict[str, dict]) -> tuple[dict, tuple]:
    """A target's [backend] tables, checked: the reference runtime's options (its flat keys), and the others' as
    sorted pairs ((backend, ((option, value), ...)), ...)."""
    checked = {backend: checked_options(backend, table) for backend, table in tables.items()}
    reference = checked.pop(DEFAULT_BACKEND, {})
    return reference, tuple(sorted((b, tuple(sorted(o.items()))) for b, o in checked.items() if o))


def options_text(options: dict) -> str:
    """A backend's options as a row records them: compact JSON, sorted ("{}": none; an empty cell: not recorded)."""
    import json

    return json.dumps(options, sort_keys=True, separators=(",", ":"))


def plugin_module(backend: str) -> str | None:
    """The module a plugin backend's entry point names; None for a built-in backend."""
    return None if backend in BACKENDS else _plugins().get(backend)


def same_release(recorded: str, installed: str) -> bool:
    """Whether a row's backend_version (as the runtime says it) and an installed distribution's version are one
    release: "2026.4.1" is "2026.4.1.dev20260101" (a build's suffix is not a release)."""
    import re

    release = [re.match(r"\d+(\.\d+)*", v) for v in (recorded, installed)]
    if not all(release):
        return recorded == installed
    return release[0].group(0) == release[1].group(0)


def installed_version(backend: str) -> str | None:
    """The installed release of the backend's runtime (its module's PACKAGE), as its rows' backend_version reads."""
    from importlib.metadata import PackageNotFoundError, version

    package = getattr(backend_module(backend), "PACKAGE", "")
    try:
        return version(package) if package else None
    except PackageNotFoundError:
        return None


def requested_precision(backend: str, variant_precision: str) -> str:
    """The precision a child asks its backend for: the reference runtime runs the file as it is, the others are told
    the variant's (OpenVINO's CPU plugin otherwise picks bf16 on a CPU that has it)."""
    return "" if backend == DEFAULT_BACKEND else variant_precision


def profiled_backends() -> tuple[str, ...]:
    """The backends whose module offers a per-operator profiler (`profile(request, out, runs, batch)`)."""
    return tuple(name for name, module in _importable() if hasattr(module, "profile"))


def _importable():
    """(name, module) of each known backend whose module imports (a broken plugin is left to missing_extra to name)."""
    for name in known_backends():
        try:
            yield name, backend_module(name)
        except Exception:  # noqa: BLE001 - a broken plugin: missing_extra names it when a target asks for it
            continue


def backends_reading(suffix: str, variant: str) -> tuple[str, ...]:
    """The backends whose module runs `variant`'s files as they are (FILE_SUFFIX: ".onnx", ".tflite"); a plugin may
    narrow that to the variants it names (VARIANTS)."""
    names = []
    for name, module in _importable():
        if getattr(module, "FILE_SUFFIX", "") == suffix and variant in getattr(module, "VARIANTS", (variant,)):
            names.append(name)
    return tuple(names)


def tunable_options(backend: str, threads: int) -> dict[str, tuple] | None:
    """The session options `harness tune` may choose among for `backend` (option -> choices, within `threads`);
    None: the backend declares none (TUNABLE), and is searched only when asked for by name."""
    tunable = getattr(backend_module(backend), "TUNABLE", None)
    return tunable(threads) if callable(tunable) else dict(tunable) if tunable is not None else None


def run_name(backend: str, variant: str) -> str:
    """The name a measurement goes by inside a run: the variant for ONNX Runtime, "openvino:int8-static" otherwise."""
    return variant if backend == DEFAULT_BACKEND else f"{backend}:{variant}"


def split_run(name: str) -> tuple[str, str]:
    """(backend, variant) of a run_name."""
    backend, _, variant = name.rpartition(":")
    return backend or DEFAULT_BACKEND, variant
