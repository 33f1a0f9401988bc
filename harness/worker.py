"""The measurement child: `python -m harness.worker` reads one JSON request on stdin, prints one JSON result.

It imports only numpy and onnxruntime (never torch), caps its own CPUs before the runtime starts,
and reads its peak memory from the kernel (VmHWM), so a spike between any two polls still counts.
"""

from __future__ import annotations

import json
import os
import sys
import time


def _status_mb(field: str) -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024.0
    raise RuntimeError(f"{field} missing from /proc/self/status")


def _threads_now() -> int:
    return len(os.listdir("/proc/self/task"))


def _die_with_parent() -> None:
    """Ask the kernel to kill this child if the harness dies (kill -9 leaves no orphan measuring)."""
    try:
        import ctypes
        import signal

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass  # not Linux: the parent still kills its child on any exception it sees


def measure(request: dict) -> dict:
    affinity = request["cpu_affinity"]
    os.sched_setaffinity(0, affinity)
    threads = str(request["threads"])
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = threads

    import numpy as np
    import onnxruntime as ort

    result = {"import_rss_mb": _status_mb("VmRSS"), "ort_version": ort.__version__}
    options = ort.SessionOptions()
    # ORT sizes its pools from the host's cores, not from affinity: both counts are set explicitly.
    options.intra_op_num_threads = request["threads"]
    options.inter_op_num_threads = request["inter_op_threads"]
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.enable_cpu_mem_arena = request["enable_cpu_mem_arena"]
    options.enable_mem_pattern = request["enable_mem_pattern"]
    options.log_severity_level = 3
    session = ort.InferenceSession(request["onnx_path"], options, providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name
    sample = np.load(request["sample_path"])  # one real image, already fitted and normalised
    batch = np.ascontiguousarray(np.repeat(sample[None], request["batch_size"], axis=0))
    feed = {input_name: batch}

    for _ in range(request["warmup_runs"]):
        session.run(None, feed)
    latencies_ms = []
    started = time.perf_counter()
    while len(latencies_ms) < request["min_runs"] or time.perf_counter() - started < request["min_duration_s"]:
        t0 = time.perf_counter_ns()
        session.run(None, feed)
        latencies_ms.append((time.perf_counter_ns() - t0) / 1e6)
        if len(latencies_ms) >= request["max_runs"]:
            break
    result.update(
        latencies_ms=latencies_ms,
        peak_rss_mb=_status_mb("VmHWM"),  # read before evaluation, which holds the eval images too
        threads_in_process=_threads_now(),
        cpu_affinity=sorted(os.sched_getaffinity(0)),
    )
    if request.get("eval_path"):
        result["confusion"] = _evaluate(session, input_name, request)
    return result


def _evaluate(session, input_name: str, request: dict) -> list[list[int]]:
    import numpy as np

    from harness.metrics import confusion_matrix

    data = np.load(request["eval_path"])
    images, masks = data["images"], data["masks"]
    n = request["num_classes"]
    conf = np.zeros((n, n), dtype=np.int64)
    for image, mask in zip(images, masks):
        logits = session.run(None, {input_name: image[None]})[0]
        if logits.ndim != 4 or logits.shape[1] != n:
            raise ValueError(f"model output has shape {list(logits.shape)}; expected (1, {n}, H, W) class logits")
        if logits.shape[2:] != mask.shape:
            raise ValueError(f"model output is {logits.shape[2]}x{logits.shape[3]} but masks are {mask.shape[0]}x{mask.shape[1]}")
        conf += confusion_matrix(logits.argmax(1)[0], mask, n, request["ignore_index"])
    return conf.tolist()


def main() -> int:
    _die_with_parent()
    request = json.loads(sys.stdin.read())
    try:
        result = {"ok": True, **measure(request)}
    except Exception as e:  # reported to the parent as a row-level failure, not a crash of the run
        result = {"ok": False, "error": f"{type(e).__name__}: {e}"}
    sys.stdout.write(json.dumps(result))
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
