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
    if request["serving"] == "concurrent":
        latencies_ms, wall_s, result["max_in_flight"] = _time_concurrent(session, input_name, sample, request)
        images_per_call = 1
    else:
        images_per_call = request["images_at_once"]
        batch = np.ascontiguousarray(np.repeat(sample[None], images_per_call, axis=0))
        latencies_ms, wall_s = _time_sequential(session, {input_name: batch}, request)
    result["images_per_s"] = len(latencies_ms) * images_per_call / wall_s
    result.update(
        latencies_ms=latencies_ms,
        peak_rss_mb=_status_mb("VmHWM"),  # read before evaluation, which holds the eval images too
        threads_in_process=_threads_now(),
        cpu_affinity=sorted(os.sched_getaffinity(0)),
    )
    if request.get("eval_path"):
        result["confusion"] = _evaluate(session, request)
    if request.get("reference_path"):
        result["reference_ms"] = _reference_ms(ort, options, request["reference_path"])
    return result


def _reference_ms(ort, options, path: str) -> float:
    """Median latency of the fixed reference workload under the same session options."""
    import numpy as np

    session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    feed = {session.get_inputs()[0].name: np.ones((1, 3, 64, 64), dtype=np.float32)}
    for _ in range(5):
        session.run(None, feed)
    samples = []
    for _ in range(40):
        t0 = time.perf_counter_ns()
        session.run(None, feed)
        samples.append((time.perf_counter_ns() - t0) / 1e6)
    return float(np.median(samples))


def _enough(runs: int, started: float, request: dict) -> bool:
    elapsed = time.perf_counter() - started
    return runs >= request["max_runs"] or (runs >= request["min_runs"] and elapsed >= request["min_duration_s"])


def _time_sequential(session, feed: dict, request: dict) -> tuple[list[float], float]:
    """One call at a time: each latency is one call (one image, or one batch)."""
    for _ in range(request["warmup_runs"]):
        session.run(None, feed)
    latencies_ms = []
    started = time.perf_counter()
    while not _enough(len(latencies_ms), started, request):
        t0 = time.perf_counter_ns()
        session.run(None, feed)
        latencies_ms.append((time.perf_counter_ns() - t0) / 1e6)
    return latencies_ms, time.perf_counter() - started


def _time_concurrent(session, input_name: str, sample, request: dict) -> tuple[list[float], float, int]:
    """`images_at_once` requests in flight, one image each, sharing the session and its thread pool."""
    import threading

    feed = {input_name: sample[None]}
    in_flight = request["images_at_once"]
    for _ in range(request["warmup_runs"]):
        session.run(None, feed)
    latencies_ms: list[float] = []
    lock = threading.Lock()
    start_line = threading.Barrier(in_flight + 1)
    running = [0, 0]  # calls inside session.run now, most seen at once

    def client() -> None:
        start_line.wait()
        while True:
            with lock:
                running[0] += 1
                running[1] = max(running)
            t0 = time.perf_counter_ns()
            session.run(None, feed)  # releases the GIL: the calls overlap inside ONNX Runtime
            with lock:
                running[0] -= 1
                latencies_ms.append((time.perf_counter_ns() - t0) / 1e6)
                if _enough(len(latencies_ms), started, request):
                    return

    clients = [threading.Thread(target=client) for _ in range(in_flight)]
    for c in clients:
        c.start()
    started = time.perf_counter()
    start_line.wait()
    for c in clients:
        c.join()
    return latencies_ms, time.perf_counter() - started, running[1]


def _evaluate(session, request: dict) -> list[list[int]]:
    import numpy as np

    data = np.load(request["eval_path"])
    conf, predictions = evaluate_session(session, data["images"], data["masks"], request["num_classes"], request["ignore_index"])
    if request.get("predictions_path"):  # the parent compares variants' predictions pixel by pixel
        np.save(request["predictions_path"], predictions)
    return conf.tolist()


def evaluate_session(session, images, targets, num_classes: int, ignore_index: int):
    """Confusion matrix and argmax predictions of an ORT session over normalised NCHW images.

    Targets are masks (N,H,W) for segmentation or labels (N,) for classification.
    """
    import numpy as np

    from harness.metrics import confusion_matrix

    classification = targets.ndim == 1
    input_name = session.get_inputs()[0].name
    conf = np.zeros((num_classes, num_classes), dtype=np.int64)
    predictions = np.zeros(targets.shape, dtype=np.uint8 if num_classes <= 256 else np.int32)
    for i, (image, target) in enumerate(zip(images, targets)):
        logits = session.run(None, {input_name: image[None]})[0]
        want = (1, num_classes) if classification else (1, num_classes, *target.shape)
        if tuple(logits.shape) != want:
            kind = "class scores" if classification else "class logits per pixel"
            raise ValueError(f"model output has shape {list(logits.shape)}; expected {list(want)} ({kind})")
        predictions[i] = logits[0].argmax(0)
        conf += confusion_matrix(np.atleast_1d(predictions[i]), np.atleast_1d(target), num_classes, ignore_index)
    return conf, predictions


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
