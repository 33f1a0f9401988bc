"""Small ONNX graphs the harness writes itself (the runtime floor, the reference workload), one opset."""

from __future__ import annotations

from pathlib import Path

OPSET = 17
IR_VERSION = 8  # readable by every ONNX Runtime the harness supports


def save_graph(path: Path, name: str, nodes, inputs, outputs, initializers=()) -> Path:
    """Write a graph of `nodes` as a self-contained model at the harness's opset and IR version."""
    import onnx
    from onnx import helper

    graph = helper.make_graph(nodes, name, inputs, outputs, list(initializers))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = IR_VERSION
    onnx.save(model, str(path))
    return path
