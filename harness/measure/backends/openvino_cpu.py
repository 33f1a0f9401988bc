"""OpenVINO's CPU plugin, reading the exported ONNX file directly (no IR conversion step).

Configured to compare with ONNX Runtime's sequential calls: the target's threads, one stream, the latency
hint, and OpenVINO's own pinning off (the child pins itself before the runtime starts, as for ORT). The
precision is always explicit: OpenVINO's default on a CPU with bf16 is bf16, silently.
"""

from __future__ import annotations

import collections
import threading
import time

from harness.measure.backends import NOT_ON_THIS_CPU, BackendRefused

PACKAGE = "openvino"  # the distribution that installs the runtime: what a side environment pins for a runtime A/B
FILE_SUFFIX = ".onnx"  # the files it runs as they are
# A target's [openvino] table: "" and 0 leave the harness's choice (LATENCY with one stream; THROUGHPUT with one
# stream per thread for requests in flight).
OPTIONS = {"performance_hint": "", "num_streams": 0}


def TUNABLE(threads: int) -> dict:  # noqa: N802 - read like the other backends' TUNABLE table
    """What harness tune may choose among: the hint, and one stream or one per thread the target allows."""
    return {"performance_hint": ("LATENCY", "THROUGHPUT"), "num_streams": tuple(sorted({1, threads}))}

PRECISION_HINTS = {"f32": "f32", "bf16": "bf16"}
# What OpenVINO's CPU plugin lists in OPTIMIZATION_CAPABILITIES for a precision it can run natively.
CAPABILITY = {"f32": "FP32", "bf16": "BF16"}
COMPUTE_LAYERS = ("Convolution", "GroupConvolution", "Deconvolution", "FullyConnected", "MatMul")


class OpenVinoModel:
    """One compiled model, reshaped to the batch it is called with (OpenVINO's dynamic shapes run slower)."""

    def __init__(self, request, ov, batch_size: int):
        self.request, self.ov = request, ov
        self.core = ov.Core()
        wanted = request.precision or "f32"
        if wanted not in PRECISION_HINTS:
            raise BackendRefused(f"OpenVINO precision '{wanted}'; use one of {', '.join(PRECISION_HINTS)}")
        capabilities = self.core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")
        if CAPABILITY[wanted] not in capabilities:
            raise BackendRefused(f"{NOT_ON_THIS_CPU}: OpenVINO's CPU plugin here offers {', '.join(capabilities)}, no "
                                 f"{CAPABILITY[wanted]}; not run rather than silently run in f32")
        self.version = ov.get_version().split("-")[0]
        started = time.perf_counter_ns()
        self.compiled = self._compile(batch_size)
        self.load_ms = (time.perf_counter_ns() - started) / 1e6  # read + reshape + compile, like ORT's session
        self.input_name = self.compiled.inputs[0].get_any_name()
        self.precision = _ran_precision(self.compiled)
        self._local = threading.local()  # one infer request per calling thread (concurrent serving)

    def _compile(self, batch_size: int, extra: dict | None = None):
        """Read, reshape to `batch_size` and compile; `extra` adds config keys (PERF_COUNT for harness profile)."""
        request = self.request
        model = self.core.read_model(request.onnx_path)
        shape = [batch_size, *[d.get_length() for d in list(model.inputs[0].get_partial_shape())[1:]]]
        model.reshape({model.inputs[0].get_any_name(): shape})
        concurrent, options = request.serving == "concurrent", request.backend_options
        config = {"INFERENCE_NUM_THREADS": request.threads, "ENABLE_CPU_PINNING": False,
                  "INFERENCE_PRECISION_HINT": PRECISION_HINTS[request.precision or "f32"],
                  # 10 requests in flight: one stream per thread, OpenVINO's own way to overlap requests
                  "PERFORMANCE_HINT": options.get("performance_hint") or ("THROUGHPUT" if concurrent else "LATENCY"),
                  "NUM_STREAMS": options.get("num_streams") or (min(request.threads, request.images_at_once)
                                                                if concurrent else 1), **(extra or {})}
        return self.core.compile_model(model, "CPU", config)

    def run(self, batch):
        infer = getattr(self._local, "infer", None)
        if infer is None:
            infer = self._local.infer = self.compiled.create_infer_request()
        infer.infer({0: batch}, share_inputs=True)
        return infer.get_output_tensor(0).data

    def feed_for(self, batch):
        return self.run, (batch,)

    def reload(self, batch_size: int):
        """The same model compiled for another batch (evaluation feeds one image per call)."""
        return _reloaded(self, batch_size)


def _reloaded(model: OpenVinoModel, batch_size: int) -> OpenVinoModel:
    if model.compiled.inputs[0].get_shape()[0] == batch_size:
        return model
    return OpenVinoModel(model.request, model.ov, batch_size)


def _ran_precision(compiled) -> str:
    """The precisions the compiled model's compute layers run in, from OpenVINO's runtime graph:
    "u8 (33 of 33 compute layers)", or "bf16 (60), f32 (6)"."""
    counts = collections.Counter()
    for op in compiled.get_runtime_model().get_ordered_ops():
        info = op.get_rt_info()
        if "layerType" in info and info["layerType"].astype(str) in COMPUTE_LAYERS:
            counts[info["runtimePrecision"].astype(str) if "runtimePrecision" in info else "?"] += 1
    total = sum(counts.values())
    if not counts:
        return "no compute layers found"
    (top, n), *rest = counts.most_common()
    if not rest:
        return f"{top} ({n} of {total} compute layers)"
    return ", ".join(f"{p} ({k})" for p, k in counts.most_common())


def load(request) -> OpenVinoModel:
    import openvino as ov

    batch = 1 if request.serving == "concurrent" else request.images_at_once
    return OpenVinoModel(request, ov, batch)


def profile(request, out, runs: int, batch) -> dict:
    """Per-layer time from OpenVINO's counters (PERF_COUNT) over `runs` timed calls, compiled as the child compiles."""
    import json

    import openvino as ov

    model = OpenVinoModel(request, ov, len(batch))  # checks the precision against the CPU, as the child does
    compiled = model._compile(len(batch), {"PERF_COUNT": True})  # compiled as the child does, plus layer counters
    infer = compiled.create_infer_request()
    for _ in range(request.warmup_runs):
        infer.infer({0: batch})
    ops: dict[str, dict] = {}
    started = time.perf_counter()
    for _ in range(runs):
        infer.infer({0: batch}, share_inputs=True)
        for info in infer.profiling_info:
            if str(info.status).endswith("EXECUTED") and not str(info.status).endswith("NOT_RUN"):
                entry = ops.setdefault(info.node_name, {"node": info.node_name, "op_type": info.node_type,
                                                        "ran_on": info.exec_type, "total_us": 0.0})
                entry["total_us"] += info.real_time.total_seconds() * 1e6
    wall_ms = 1000 * (time.perf_counter() - started) / runs
    layers = out / "openvino_layers.json"
    layers.write_text(json.dumps(list(ops.values()), indent=1))
    return {"trace": str(layers), "wall_ms_per_call": wall_ms, "runs": runs,
            "ops": [{**o, "ms_per_call": o.pop("total_us") / 1000 / runs} for o in ops.values()]}
