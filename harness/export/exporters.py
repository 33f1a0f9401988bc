"""The ways torch can write an ONNX file, tried in order: dynamo with a dynamic batch, then what works.

Outside models break the first way in many ways (smp UPerNet violates an explicit batch range, data-dependent
branches defeat torch.export); each way's own output (torch's guard errors, tracebacks) goes to a log file.
"""

from __future__ import annotations

import contextlib
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from harness.spec import ModelSpec

INPUT_NAME, OUTPUT_NAME = "image", "logits"


@dataclass(frozen=True)
class ExportPath:
    """One way to get an ONNX file out of torch; tried in EXPORT_PATHS order until one gives a faithful file."""

    label: str
    dynamo: bool
    batch: str  # "dim": Dim("batch", 1..1024); "torch": Dim.DYNAMIC, torch picks the range; "static": batch 1


EXPORT_PATHS = (
    ExportPath("torch.export (dynamo), dynamic batch", True, "dim"),
    # Some models (smp UPerNet) violate an explicit batch range but export when torch derives the range itself.
    ExportPath("torch.export (dynamo), dynamic batch with torch's own range", True, "torch"),
    ExportPath("torch.export (dynamo), static batch 1", True, "static"),
    ExportPath("TorchScript exporter, dynamic batch", False, "dim"),
    ExportPath("TorchScript exporter, static batch 1", False, "static"),
)


def export_log_path(spec: ModelSpec) -> Path:
    from harness.cache import cache_dir

    slug = "".join(c if c.isalnum() or c in "-_." else "_" for c in spec.name)
    return cache_dir() / "logs" / f"export-{slug}.log"


def root_cause(error: BaseException) -> str:
    """The innermost error's first lines, without terminal colours: torch wraps the real reason in layers."""
    import re

    chain, seen = [error], {id(error)}
    while (nxt := chain[-1].__cause__ or chain[-1].__context__) is not None and id(nxt) not in seen:
        chain.append(nxt)
        seen.add(id(nxt))
    inner = chain[-1]
    lines = [line.strip() for line in re.sub(r"\x1b\[[0-9;]*m", "", str(inner)).splitlines() if line.strip()]
    text = " ".join(lines[:2]) if lines else ""
    return f"{type(inner).__name__}: {text[:240]}" if text else type(inner).__name__


@contextlib.contextmanager
def output_to(log_file):
    """Everything written to stdout or stderr, by Python or by C++ (torch's logging holds its own stderr
    stream, so a Python-level redirect alone misses it), goes to `log_file`."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = {fd: os.dup(fd) for fd in (1, 2)}
    try:
        for fd in saved:
            os.dup2(log_file.fileno(), fd)
        with contextlib.redirect_stdout(log_file), contextlib.redirect_stderr(log_file):
            yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        log_file.flush()
        for fd, copy in saved.items():
            os.dup2(copy, fd)
            os.close(copy)


def export_to_file(model, spec: ModelSpec, onnx_path: Path, path: ExportPath) -> None:
    import warnings

    import onnx
    import torch

    example = torch.zeros(1, 3, *spec.input_hw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if path.dynamo:
            # The dynamo exporter handles PSPNet's adaptive pooling, which the TorchScript exporter refuses.
            batch = {"dim": torch.export.Dim("batch", min=1, max=1024), "torch": torch.export.Dim.DYNAMIC}.get(path.batch)
            program = torch.onnx.export(
                model, (example,), dynamo=True, input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                dynamic_shapes=({0: batch},) if batch is not None else None, optimize=True, verbose=False,
            )
            program.save(str(onnx_path), external_data=False)  # weights inlined: the .onnx travels alone
            strip_source_locations(onnx_path)
        else:
            axes = {INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}} if path.batch != "static" else None
            torch.onnx.export(model, (example,), str(onnx_path), dynamo=False, input_names=[INPUT_NAME],
                              output_names=[OUTPUT_NAME], dynamic_axes=axes, opset_version=17)
    proto = onnx.load(str(onnx_path))
    onnx.checker.check_model(proto, full_check=True)
    onnx.shape_inference.infer_shapes(proto, check_type=True, strict_mode=True)
    if path.batch != "static" and onnx_batch_dim(onnx_path) is None:
        _check_batch_of_two(onnx_path, spec)


# torch's dynamo exporter writes where each node came from into the file: its Python stack trace (absolute
# paths and line numbers) and the modules' qualified class names (a user's factory module is imported under a
# name made from its path). The same model exported from another clone or venv, or after an edit that moves
# a line, would hash differently, and the gate would take it for a changed model.
SOURCE_LOCATION_KEYS = ("pkg.torch.onnx.stack_trace", "pkg.torch.onnx.class_hierarchy", "namespace")


def strip_source_locations(onnx_path: Path) -> bool:
    """Removes the exporter's per-node stack traces from the file in place; True when there were any."""
    import onnx

    proto = onnx.load(str(onnx_path))
    if not _strip_graph(proto.graph) + sum(_strip_nodes(f.node) for f in proto.functions):
        return False
    onnx.save(proto, str(onnx_path))
    return True


def _strip_graph(graph) -> int:
    return _strip_nodes(graph.node)


def _strip_nodes(nodes) -> int:
    import onnx

    removed = 0
    for node in nodes:
        kept = [p for p in node.metadata_props if p.key not in SOURCE_LOCATION_KEYS]
        if len(kept) != len(node.metadata_props):
            removed += len(node.metadata_props) - len(kept)
            del node.metadata_props[:]
            node.metadata_props.extend(kept)
        for attribute in node.attribute:
            if attribute.type == onnx.AttributeProto.GRAPH:
                removed += _strip_graph(attribute.g)
            elif attribute.type == onnx.AttributeProto.GRAPHS:
                removed += sum(_strip_graph(g) for g in attribute.graphs)
    return removed


def _check_batch_of_two(onnx_path: Path, spec: ModelSpec) -> None:
    """A file that says its batch is dynamic must run a batch of two (torch can specialise a model it traced)."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    session.run(None, {session.get_inputs()[0].name: np.zeros((2, 3, *spec.input_hw), np.float32)})


def onnx_batch_dim(onnx_path: Path) -> int | None:
    """The input's fixed batch size, or None when the batch axis is dynamic."""
    import onnx

    proto = onnx.load(str(onnx_path), load_external_data=False)
    inputs = [i for i in proto.graph.input if i.name not in {t.name for t in proto.graph.initializer}]
    first = inputs[0].type.tensor_type.shape.dim[0]
    return first.dim_value if first.HasField("dim_value") else None
