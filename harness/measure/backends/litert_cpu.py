"""LiteRT (TensorFlow Lite's interpreter) with its default XNNPACK delegate: an x86 proxy of the phone runtime.

The model is a .tflite file made by harness.variants.litert. A full-integer file takes and gives int8: the
float image is quantized with the input's scale and zero point inside the timed call, as an app on the
phone would, and the output dequantized. The ops XNNPACK did not take run in LiteRT's reference kernels;
their count is part of the precision the row reports.
"""

from __future__ import annotations

import collections
import time

import numpy as np

from harness.measure.backends import BackendRefused

PACKAGE = "ai-edge-litert"  # the distribution that installs the runtime: what a side environment pins for a runtime A/B
FILE_SUFFIX = ".tflite"  # the files it runs as they are


class LiteRtModel:
    """One interpreter sized to the batch it is called with; one call at a time (it is not thread-safe)."""

    def __init__(self, request, litert, batch_size: int):
        if request.serving == "concurrent":
            raise BackendRefused("LiteRT's interpreter runs one call at a time: requests in flight are not measured "
                                 "(serving \"concurrent\"); use batched serving for this backend")
        self.request, self.litert = request, litert
        from ai_edge_litert import __version__

        self.version = __version__
        started = time.perf_counter_ns()
        self.interpreter = _sized(litert, request, batch_size)
        self.load_ms = (time.perf_counter_ns() - started) / 1e6
        self._in, self._out = self.interpreter.get_input_details()[0], self.interpreter.get_output_details()[0]
        self.input_name = self._in["name"]
        off = off_xnnpack(self.interpreter)
        kind = "int8 in/out" if self._in["dtype"] == np.int8 else "f32"
        fallback = "every op on XNNPACK" if not off else \
            f"{sum(off.values())} op(s) off XNNPACK ({', '.join(f'{k} x{v}' for k, v in sorted(off.items()))})"
        self.precision = f"{kind}; {fallback}" if off is not None else f"{kind}; XNNPACK not applied"

    def run(self, batch):
        scale, zero = self._in["quantization"]
        if self._in["dtype"] == np.int8:
            batch = np.clip(np.round(batch / scale + zero), -128, 127).astype(np.int8)
        self.interpreter.set_tensor(self._in["index"], batch)
        self.interpreter.invoke()
        out = self.interpreter.get_tensor(self._out["index"])
        if self._out["dtype"] == np.int8:
            out_scale, out_zero = self._out["quantization"]
            out = (out.astype(np.float32) - out_zero) * out_scale
        return out

    def feed_for(self, batch):
        return self.run, (batch,)

    def reload(self, batch_size: int):
        if self._in["shape"][0] == batch_size:
            return self
        return LiteRtModel(self.request, self.litert, batch_size)


def _sized(litert, request, batch_size: int):
    interpreter = litert.Interpreter(model_path=request.onnx_path, num_threads=request.threads)
    shape = list(interpreter.get_input_details()[0]["shape"])
    if shape[0] != batch_size:
        interpreter.resize_tensor_input(interpreter.get_input_details()[0]["index"], [batch_size, *shape[1:]])
    interpreter.allocate_tensors()
    return interpreter


def off_xnnpack(interpreter) -> collections.Counter | None:
    """The ops XNNPACK left to LiteRT's own kernels, by op name; None when no delegate was applied.

    The interpreter lists the model's ops and, after them, one DELEGATE node per partition XNNPACK took.
    An op ran outside the delegate when no partition produces its outputs and they feed a partition, the
    graph's output, or another such op."""
    ops = interpreter._get_ops_details()
    partitions = [o for o in ops if o["op_name"] == "DELEGATE"]
    if not partitions:
        return None
    fed = {t for p in partitions for t in p["inputs"]} | {o["index"] for o in interpreter.get_output_details()}
    produced = {t for p in partitions for t in p["outputs"]}
    plain = [o for o in ops if o["op_name"] != "DELEGATE"]
    consumers = collections.defaultdict(set)
    for op in plain:
        for tensor in op["inputs"]:
            consumers[tensor].add(op["index"])
    outside: set[int] = set()
    changed = True
    while changed:  # from the partitions' inputs backwards through chains of ops outside them
        changed = False
        for op in plain:
            if op["index"] in outside or any(t in produced for t in op["outputs"]):
                continue
            if any(t in fed or consumers[t] & outside for t in op["outputs"]):
                outside.add(op["index"])
                changed = True
    return collections.Counter(op["op_name"] for op in plain if op["index"] in outside)


def load(request) -> LiteRtModel:
    from ai_edge_litert import interpreter as litert

    return LiteRtModel(request, litert, request.images_at_once)
