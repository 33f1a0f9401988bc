"""Two models the harness measures beside every run: the runtime floor and the reference workload."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from harness.measure.backends import DEFAULT_BACKEND
from harness.onnx_graph import save_graph

FLOOR = "floor"


def trivial_model(path: Path, input_hw: tuple[int, int]) -> Path:
    """A one-node (Identity) model with the same input: its peak is the runtime's floor."""
    from onnx import TensorProto, helper

    shape = ["batch", 3, *input_hw]
    return save_graph(path, "floor", [helper.make_node("Identity", ["image"], ["logits"])],
                      [helper.make_tensor_value_info("image", TensorProto.FLOAT, shape)],
                      [helper.make_tensor_value_info("logits", TensorProto.FLOAT, shape)])


def reference_model(path: Path) -> Path:
    """A fixed small workload (three 3x3 convolutions, 32 channels, 64x64): the machine's yardstick.

    Measured beside every run, it lets latency recorded on another machine be compared as a ratio.
    """
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    nodes, weights, previous, in_ch = [], [], "x", 3
    for i in range(3):
        weights.append(numpy_helper.from_array((rng.standard_normal((32, in_ch, 3, 3)) * 0.1).astype(np.float32), f"w{i}"))
        nodes.append(helper.make_node("Conv", [previous, f"w{i}"], [f"y{i}"], pads=[1, 1, 1, 1]))
        previous, in_ch = f"y{i}", 32
    return save_graph(path, "reference", nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 64, 64])],
                      [helper.make_tensor_value_info(previous, TensorProto.FLOAT, [1, 32, 64, 64])], weights)


def floor_key(input_hw: tuple[int, int], backend: str) -> tuple:
    """The measurement key of a runtime floor: ONNX Runtime's as it always was, another backend's by its name."""
    return (FLOOR, input_hw, "" if backend == DEFAULT_BACKEND else backend)
