"""The measurement child: `python -m harness.worker --reply-fd N` reads a Request on stdin, writes a Reply to fd N.

It imports only numpy and onnxruntime (never torch), caps its own CPUs before the runtime starts,
and reads its peak memory from the kernel (VmHWM), so a spike between any two polls still counts.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from harness.protocol import Reply, Request

REFERENCE_RUNS = 10  # timed in every measuring child (~15 ms): the gate takes the median over the children


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


def measure(request: Request) -> Reply:
    os.sched_setaffinity(0, request.cpu_affinity)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(request.threads)

    import numpy as np
    import onnxruntime as ort

    import_rss_mb = _status_mb("VmRSS")
    options = ort.SessionOptions()
    # ORT sizes its pools from the host's cores, not from affinity: both counts are set explicitly.
    options.intra_op_num_threads = request.threads
    options.inter_op_num_threads = request.inter_op_threads
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.enable_cpu_mem_arena = request.enable_cpu_mem_arena
    options.enable_mem_pattern = request.enable_mem_pattern
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if request.allow_spinning else "0")
    options.log_severity_level = 3
    session = ort.InferenceSession(request.onnx_path, options, providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name
    sample = np.load(request.sample_path)  # one real image, already fitted and normalised
    max_in_flight = None
    busy_before, own_before = _cpu_busy_s(request.cpu_affinity), _own_cpu_s()
    if request.serving == "concurrent":
        latencies_ms, wall_s, max_in_flight = _time_concurrent(session, input_name, sample, request)
        images_per_call = 1
    else:
        images_per_call = request.images_at_once
        batch = np.ascontiguousarray(np.repeat(sample[None], images_per_call, axis=0))
        latencies_ms, wall_s = _time_sequential(session, {input_name: batch}, request)
    other_cpu_pct = _other_cpu_pct(request.cpu_affinity, busy_before, own_before, wall_s)
    peak_rss_mb = _status_mb("VmHWM")  # read before evaluation, which holds the eval images too
    threads_in_process = _threads_now()
    return Reply(
        ok=True, latencies_ms=tuple(latencies_ms), images_per_s=len(latencies_ms) * images_per_call / wall_s,
        peak_rss_mb=peak_rss_mb, import_rss_mb=import_rss_mb, threads_in_process=threads_in_process,
        cpu_affinity=tuple(sorted(os.sched_getaffinity(0))), max_in_flight=max_in_flight,
        confusion=_evaluate(session, request) if request.eval_path else None,
        reference_ms=_reference_ms(ort, options, request.reference_path) if request.reference_path else None,
        ort_version=ort.__version__, other_cpu_pct=other_cpu_pct,
        machine=_machine(ort.__version__, np.__version__) if request.report_machine else None,
    )


def _cpu_busy_s(cpus) -> float | None:
    """Seconds the given CPUs spent busy (user, system, interrupts, and time the hypervisor stole) since boot."""
    try:
        with open("/proc/stat") as f:
            lines = {line.split()[0]: line.split()[1:] for line in f if line.startswith("cpu")}
        ticks = os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError):
        return None
    busy = 0
    for cpu in cpus:
        fields = [int(v) for v in lines.get(f"cpu{cpu}", [])]
        if len(fields) >= 8:  # user nice system idle iowait irq softirq steal
            busy += fields[0] + fields[1] + fields[2] + fields[5] + fields[6] + fields[7]
    return busy / ticks


def _own_cpu_s() -> float:
    times = os.times()
    return times.user + times.system


def _other_cpu_pct(cpus, busy_before, own_before, wall_s: float) -> float | None:
    """Share of the pinned CPUs' capacity during the timed runs that went to something other than this child."""
    busy_after = _cpu_busy_s(cpus)
    if busy_before is None or busy_after is None or wall_s <= 0:
        return None
    other = (busy_after - busy_before) - (_own_cpu_s() - own_before)
    return max(0.0, 100 * other / (wall_s * len(cpus)))


def _machine(ort_version: str, numpy_version: str) -> dict:
    """The fingerprint of the machine the child runs on: the device, not the controller."""
    import platform
    from dataclasses import asdict

    from harness.machine import machine_fingerprint

    return {**asdict(machine_fingerprint(ort_version)), "python_version": platform.python_version(),
            "numpy_version": numpy_version}


def _reference_ms(ort, options, path: str) -> float:
    """Median latency of the fixed reference workload under the same session options."""
    import numpy as np

    session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    feed = {session.get_inputs()[0].name: np.ones((1, 3, 64, 64), dtype=np.float32)}
    for _ in range(2):
        session.run(None, feed)
    samples = []
    for _ in range(REFERENCE_RUNS):
        t0 = time.perf_counter_ns()
        session.run(None, feed)
        samples.append((time.perf_counter_ns() - t0) / 1e6)
    return float(np.median(samples))


def _enough(runs: int, started: float, request: Request) -> bool:
    elapsed = time.perf_counter() - started
    return runs >= request.max_runs or (runs >= request.min_runs and elapsed >= request.min_duration_s)


def _time_sequential(session, feed: dict, request: Request) -> tuple[list[float], float]:
    """One call at a time: each latency is one call (one image, or one batch)."""
    for _ in range(request.warmup_runs):
        session.run(None, feed)
    latencies_ms = []
    started = time.perf_counter()
    while not _enough(len(latencies_ms), started, request):
        t0 = time.perf_counter_ns()
        session.run(None, feed)
        latencies_ms.append((time.perf_counter_ns() - t0) / 1e6)
    return latencies_ms, time.perf_counter() - started


def _time_concurrent(session, input_name: str, sample, request: Request) -> tuple[list[float], float, int]:
    """`images_at_once` requests in flight, one image each, sharing the session and its thread pool."""
    import threading

    feed = {input_name: sample[None]}
    in_flight = request.images_at_once
    for _ in range(request.warmup_runs):
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


def _evaluate(session, request: Request) -> tuple[tuple[int, ...], ...]:
    import numpy as np

    from harness.evaluate import evaluate_session

    data = np.load(request.eval_path)
    conf, predictions = evaluate_session(session, data["images"], data["masks"], request.num_classes,
                                         request.ignore_index, request.output_shape)
    if request.predictions_path:  # the parent compares variants' predictions pixel by pixel
        np.save(request.predictions_path, predictions)
    return tuple(tuple(int(v) for v in row) for row in conf)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.worker")
    parser.add_argument("--reply-fd", type=int, required=True, help="file descriptor the Reply is written to")
    args = parser.parse_args(argv)
    _die_with_parent()
    try:
        reply = measure(Request.from_json(sys.stdin.read()))
    except Exception as e:  # reported to the parent as a row-level failure, not a crash of the run
        reply = Reply.failed(f"{type(e).__name__}: {e}")
    with os.fdopen(args.reply_fd, "w") as out:
        out.write(reply.to_json())
    return 0


if __name__ == "__main__":
    sys.exit(main())
