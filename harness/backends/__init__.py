"""Runtimes the measuring child can time a model under: ONNX Runtime's CPU EP (the default), OpenVINO's CPU plugin
and LiteRT with XNNPACK.

Standard library only here: a backend module imports its runtime when it loads a model, so a child imports
only the runtime it measures. Every backend offers the same three things: load a model file with the
request's threads and options, run one call, and say its version and the precision it actually ran.
"""

from __future__ import annotations

import importlib
import importlib.util

DEFAULT_BACKEND = "onnxruntime"
# backend -> (its module under harness.backends, the Python module it needs, the extra that installs it)
BACKENDS = {
    "onnxruntime": ("harness.backends.onnxruntime_cpu", "onnxruntime", ""),
    "openvino": ("harness.backends.openvino_cpu", "openvino", "openvino"),
    "litert": ("harness.backends.litert_cpu", "ai_edge_litert", "litert"),
}


NOT_ON_THIS_CPU = "not on this CPU"  # a refused row's status starts so: a fact of the machine, never a failure


class BackendRefused(RuntimeError):
    """The backend cannot run this request as asked (a precision the CPU lacks): the row says why, nothing runs."""


def load_model(request):
    """The request's model loaded by its backend: an object with `input_name`, `run(batch)`, `version`, `precision`,
    `load_ms` (and `reload(batch)`: the same model for another batch size)."""
    module_name = BACKENDS[request.backend][0]
    return importlib.import_module(module_name).load(request)


def missing_extra(backend: str) -> str | None:
    """Why `backend` cannot run here (unknown, or its extra not installed), in one line; None when it can."""
    if backend not in BACKENDS:
        return f"backend '{backend}' is not one of {', '.join(BACKENDS)}"
    _, needs, extra = BACKENDS[backend]
    try:
        found = importlib.util.find_spec(needs)
    except (ImportError, ValueError):  # a broken install, or a finder that refuses the name
        found = None
    if found is None:
        return f"backend '{backend}' needs the {extra} extra: pip install 'harness[{extra}]'"
    return None


def requested_precision(backend: str, variant_precision: str) -> str:
    """The precision a child asks its backend for: the reference runtime runs the file as it is, the others are told
    the variant's (OpenVINO's CPU plugin otherwise picks bf16 on a CPU that has it)."""
    return "" if backend == DEFAULT_BACKEND else variant_precision


def profiled_backends() -> tuple[str, ...]:
    """The backends whose module offers a per-operator profiler (`profile(request, out, runs, batch)`)."""
    return tuple(name for name, (module, _, _) in BACKENDS.items() if hasattr(importlib.import_module(module), "profile"))


def backends_reading(suffix: str) -> tuple[str, ...]:
    """The backends whose module runs files of this kind as they are (FILE_SUFFIX: ".onnx", ".tflite")."""
    return tuple(name for name, (module, _, _) in BACKENDS.items()
                 if getattr(importlib.import_module(module), "FILE_SUFFIX", "") == suffix)


def run_name(backend: str, variant: str) -> str:
    """The name a measurement goes by inside a run: the variant for ONNX Runtime, "openvino:int8-static" otherwise."""
    return variant if backend == DEFAULT_BACKEND else f"{backend}:{variant}"


def split_run(name: str) -> tuple[str, str]:
    """(backend, variant) of a run_name."""
    backend, _, variant = name.rpartition(":")
    return backend or DEFAULT_BACKEND, variant
