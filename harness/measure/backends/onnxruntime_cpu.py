"""ONNX Runtime's CPU execution provider: the harness's default backend, the session made as it always was, with the
session options the measuring child and the service share."""

from __future__ import annotations

import time

PACKAGE = "onnxruntime"  # the distribution that installs the runtime: what a side environment pins for a runtime A/B
FILE_SUFFIX = ".onnx"  # the files it runs as they are
# A target's [onnxruntime] table (or its flat keys of the same names): the session options below.
OPTIONS = {"enable_cpu_mem_arena": True, "enable_mem_pattern": True, "allow_spinning": True}
# What harness tune may choose among (arena and pattern trade memory for speed; spinning, CPU for latency).
TUNABLE = {"allow_spinning": (True, False), "enable_cpu_mem_arena": (True, False), "enable_mem_pattern": (True, False)}


def session_options(ort, settings):
    """ONNX Runtime's options from a Request or a ServerConfig (threads and `backend_options`, the same names): the
    child and the service run a model alike."""
    chosen = {**OPTIONS, **settings.backend_options}
    options = ort.SessionOptions()
    # ORT sizes its pools from the host's cores, not from affinity: both counts are set explicitly.
    options.intra_op_num_threads = settings.threads
    options.inter_op_num_threads = settings.inter_op_threads
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.enable_cpu_mem_arena = chosen["enable_cpu_mem_arena"]
    options.enable_mem_pattern = chosen["enable_mem_pattern"]
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if chosen["allow_spinning"] else "0")
    options.log_severity_level = 3
    return options


class OrtModel:
    """One InferenceSession; `run` is one `session.run` of the whole batch."""

    def __init__(self, request, ort):
        started = time.perf_counter_ns()
        self.session = ort.InferenceSession(request.onnx_path, session_options(ort, request),
                                            providers=["CPUExecutionProvider"])
        self.load_ms = (time.perf_counter_ns() - started) / 1e6
        self.input_name = self.session.get_inputs()[0].name
        self.version = ort.__version__
        self.precision = "as in the file"  # ORT's CPU EP runs each node in its file's types

    def run(self, batch):
        return self.session.run(None, {self.input_name: batch})[0]

    def feed_for(self, batch):
        """Bound arguments for the timed loop: the call the harness has always timed, `session.run(None, feed)`."""
        return self.session.run, (None, {self.input_name: batch})

    def reload(self, batch_size: int):
        return self  # a session takes any batch its file allows


def load(request) -> OrtModel:
    import onnxruntime as ort

    return OrtModel(request, ort)


def profile(request, out, runs: int, batch) -> dict:
    """Per-operator time from ORT's own profiler over `runs` timed calls (warm-up left out); its Chrome trace stays
    in `out`."""
    import json
    from pathlib import Path

    import onnxruntime as ort

    options = session_options(ort, request)
    options.enable_profiling = True
    options.profile_file_prefix = str(out / "onnxruntime_trace")
    session = ort.InferenceSession(request.onnx_path, options, providers=["CPUExecutionProvider"])
    feed = {session.get_inputs()[0].name: batch}
    for _ in range(request.warmup_runs):
        session.run(None, feed)
    started = time.perf_counter()
    for _ in range(runs):
        session.run(None, feed)
    wall_ms = 1000 * (time.perf_counter() - started) / runs
    trace = Path(session.end_profiling())
    events = json.loads(trace.read_text())
    windows = sorted((e["ts"], e["ts"] + e["dur"]) for e in events if e.get("name") == "model_run")[-runs:]
    ops: dict[str, dict] = {}
    for e in events:
        if e.get("cat") != "Node" or not e.get("name", "").endswith("_kernel_time"):
            continue
        if not any(start <= e["ts"] <= end for start, end in windows):
            continue  # a warm-up call's
        node = e["name"][: -len("_kernel_time")]
        entry = ops.setdefault(node, {"node": node, "op_type": e["args"].get("op_name", "?"),
                                      "ran_on": e["args"].get("provider", ""), "total_us": 0})
        entry["total_us"] += e["dur"]
    return {"trace": str(trace), "wall_ms_per_call": wall_ms, "runs": runs,
            "ops": [{**o, "ms_per_call": o.pop("total_us") / 1000 / runs} for o in ops.values()]}
