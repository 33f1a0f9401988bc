"""The measurement child: `python -m harness.measure.worker --reply-fd N` reads a Request on stdin, writes a Reply to fd N.

It imports only numpy and the backend's runtime (never torch), caps its own CPUs before the runtime starts,
and reads its peak memory from the kernel (VmHWM), so a spike between any two polls still counts.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time

from harness.measure.backends import BackendRefused, import_runtime, load_model
from harness.measure import die_with_parent, runtime_environment
from harness.measure.contention import cpu_busy_s, other_cpu_pct, own_cpu_s
from harness.measure.protocol import Reply, Request

REFERENCE_RUNS = 10  # timed in every measuring child (~15 ms): the gate takes the median over the children


def _status_mb(field: str) -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024.0
    raise RuntimeError(f"{field} missing from /proc/self/status")


def _threads_now() -> int:
    return len(os.listdir("/proc/self/task"))


class _Session:
    """One loaded model with its input, ready to be timed: one-shot or block by block (lockstep)."""

    def __init__(self, request: Request):
        runtime_environment(request.threads)

        import numpy as np

        import_runtime(request.backend)  # onnxruntime, or another backend's runtime

        # Pinned after the imports (siblings starting together import on every core) and before the session
        # makes the runtime's threads, which inherit it.
        os.sched_setaffinity(0, request.cpu_affinity)

        self.request, self.np = request, np
        self.import_rss_mb = _status_mb("VmRSS")
        self.model = load_model(request)  # cold start, part one: read and compile the model (model.load_ms)
        self.load_ms = self.model.load_ms
        self.first_call_ms = None
        self.sample = np.load(request.sample_path)  # one real image, already fitted and normalised
        self.images_per_call = 1 if request.serving == "concurrent" else request.images_at_once
        batch = np.repeat(self.sample[None], self.images_per_call, axis=0)
        self.call, self.args = self.model.feed_for(np.ascontiguousarray(batch))
        self.max_in_flight = None
        self.timed_cpu_s = 0.0  # CPU time the child spent in its timed calls

    def warm_up(self) -> None:
        """The warm-up calls; the first is timed: cold start, part two (allocations, kernel selection)."""
        if self.request.warmup_runs < 1:
            return
        started = time.perf_counter_ns()
        self.call(*self.args)
        self.first_call_ms = (time.perf_counter_ns() - started) / 1e6
        for _ in range(self.request.warmup_runs - 1):
            self.call(*self.args)

    def time_calls(self, min_runs: int, min_duration_s: float, max_runs: int) -> tuple[list[float], float]:
        """Timed calls until both minimums are met (or max_runs); latencies and the wall time they took."""
        cpu_before = time.process_time()  # every thread of the child: the runtime's pool, spinning included
        if self.request.serving == "concurrent":
            latencies_ms, wall_s, in_flight = _time_concurrent(self.model.run, self.sample, self.request.images_at_once,
                                                               min_runs, min_duration_s, max_runs)
            self.max_in_flight = max(in_flight, self.max_in_flight or 0)
        else:
            latencies_ms, wall_s = _time_sequential(self.call, self.args, min_runs, min_duration_s, max_runs)
        self.timed_cpu_s += time.process_time() - cpu_before
        return latencies_ms, wall_s

    def reply(self, latencies_ms, wall_s: float, contended_pct, block_sizes=()) -> Reply:
        request = self.request
        peak_rss_mb = _status_mb("VmHWM")  # read before evaluation, which holds the eval images too
        threads_in_process = _threads_now()
        confusion = _evaluate(self.model.reload(1), request) if request.eval_path else None
        figures = dict(
            images_per_s=len(latencies_ms) * self.images_per_call / wall_s if wall_s > 0 else None,
            peak_rss_mb=peak_rss_mb, import_rss_mb=self.import_rss_mb, threads_in_process=threads_in_process,
            max_in_flight=self.max_in_flight,
            reference_ms=_reference_ms(request) if request.reference_path else None,  # after the model, as always
            other_cpu_pct=contended_pct, load_ms=self.load_ms,
            first_call_ms=self.first_call_ms, backend_version=self.model.version, precision=self.model.precision,
            cpu_ms_per_call=1000 * self.timed_cpu_s / len(latencies_ms) if latencies_ms else None,
        )
        return Reply(
            ok=True, latencies_ms=tuple(latencies_ms), figures=figures,
            cpu_affinity=tuple(sorted(os.sched_getaffinity(0))), confusion=confusion,
            machine=_machine(_ort_version(), self.np.__version__) if request.report_machine else None,
            block_sizes=tuple(block_sizes),
        )


def measure(request: Request) -> Reply:
    """One-shot: warm up, time until the request's minimums are met, evaluate, reply."""
    measured = _Session(request)
    measured.warm_up()
    busy_before, own_before = cpu_busy_s(request.cpu_affinity), own_cpu_s()
    latencies_ms, wall_s = measured.time_calls(request.min_runs, request.min_duration_s, request.max_runs)
    contended_pct = other_cpu_pct(request.cpu_affinity, busy_before, own_before, wall_s)
    return measured.reply(latencies_ms, wall_s, contended_pct)


def serve_blocks(request: Request, commands, answer) -> Reply:
    """Lockstep: after warm-up say ready, then time one block per `run` command until `finish`.

    The conductor (harness.measure.lockstep) sends `run` to each of several children in turn, so blocks of
    different variants alternate milliseconds apart and see the same host. Each block starts with one
    untimed call (the caches a sibling child just used are warmed for this model again), except for calls
    longer than a block, where the sibling's traces are a small part of one call and a re-warm would
    double the time measured.
    """
    measured = _Session(request)
    measured.warm_up()
    answer({"ready": True})
    latencies_ms, sizes, wall_s, other_s = [], [], 0.0, 0.0
    for line in commands:
        command = json.loads(line)
        if command.get("finish"):
            break
        busy_before, own_before = cpu_busy_s(request.cpu_affinity), own_cpu_s()
        if not sizes or sorted(latencies_ms[-sizes[-1]:])[sizes[-1] // 2] < 1000 * min(request.block_s, request.min_duration_s):
            measured.call(*measured.args)
        # A block never outlasts the whole measurement asked for (min_duration_s 0: one call per block).
        block, block_wall_s = measured.time_calls(1, min(request.block_s, request.min_duration_s), request.max_runs)
        pct = other_cpu_pct(request.cpu_affinity, busy_before, own_before, block_wall_s)
        latencies_ms += block
        sizes.append(len(block))
        wall_s += block_wall_s
        other_s += (pct or 0.0) * block_wall_s / 100
        answer({"ms": block})
    return measured.reply(latencies_ms, wall_s, 100 * other_s / wall_s if wall_s else None, sizes)


def _machine(ort_version: str, numpy_version: str) -> dict:
    """The fingerprint of the machine the child runs on: the device, not the controller."""
    import platform
    from dataclasses import asdict

    from harness.measure.machine import machine_fingerprint

    return {**asdict(machine_fingerprint(ort_version)), "python_version": platform.python_version(),
            "numpy_version": numpy_version}


def _ort_version() -> str:
    import onnxruntime

    return onnxruntime.__version__


def _reference_ms(request: Request) -> float:
    """Median latency of the fixed reference workload, in ONNX Runtime under the target's session options whatever
    the backend: the machine's yardstick stays one workload (imported after the peak memory was read)."""
    import numpy as np
    import onnxruntime as ort

    from harness.measure.backends.onnxruntime_cpu import session_options

    settings = dataclasses.replace(request, backend_options=request.reference_options)
    session = ort.InferenceSession(request.reference_path, session_options(ort, settings), providers=["CPUExecutionProvider"])
    feed = {session.get_inputs()[0].name: np.ones((1, 3, 64, 64), dtype=np.float32)}
    for _ in range(2):
        session.run(None, feed)
    samples = []
    for _ in range(REFERENCE_RUNS):
        t0 = time.perf_counter_ns()
        session.run(None, feed)
        samples.append((time.perf_counter_ns() - t0) / 1e6)
    return float(np.median(samples))


def _enough(runs: int, started: float, min_runs: int, min_duration_s: float, max_runs: int) -> bool:
    elapsed = time.perf_counter() - started
    return runs >= max_runs or (runs >= min_runs and elapsed >= min_duration_s)


def _time_sequential(call, args: tuple, min_runs: int, min_duration_s: float, max_runs: int):
    """One call at a time: each latency is one call (one image, or one batch); for ORT `session.run(None, feed)`."""
    latencies_ms = []
    started = time.perf_counter()
    while not _enough(len(latencies_ms), started, min_runs, min_duration_s, max_runs):
        t0 = time.perf_counter_ns()
        call(*args)
        latencies_ms.append((time.perf_counter_ns() - t0) / 1e6)
    return latencies_ms, time.perf_counter() - started


def _time_concurrent(run, sample, in_flight: int, min_runs: int, min_duration_s: float,
                     max_runs: int) -> tuple[list[float], float, int]:
    """`in_flight` requests at once, one image each, sharing the model and its thread pool."""
    import threading

    image = sample[None]
    min_runs = max(min_runs, in_flight)
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
            run(image)  # releases the GIL: the calls overlap inside the runtime
            with lock:
                running[0] -= 1
                latencies_ms.append((time.perf_counter_ns() - t0) / 1e6)
                if _enough(len(latencies_ms), started, min_runs, min_duration_s, max_runs):
                    return

    clients = [threading.Thread(target=client) for _ in range(in_flight)]
    for c in clients:
        c.start()
    started = time.perf_counter()
    start_line.wait()
    for c in clients:
        c.join()
    return latencies_ms, time.perf_counter() - started, running[1]


def _evaluate(model, request: Request) -> tuple[tuple[int, ...], ...]:
    import numpy as np

    from harness.measure.evaluate import evaluate_calls

    data = np.load(request.eval_path)
    conf, predictions = evaluate_calls(model.run, data["images"], data["masks"], request.num_classes,
                                         request.ignore_index, request.output_shape)
    if request.predictions_path:  # the parent compares variants' predictions pixel by pixel
        np.save(request.predictions_path, predictions)
    return tuple(tuple(int(v) for v in row) for row in conf)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.measure.worker")
    parser.add_argument("--reply-fd", type=int, required=True, help="file descriptor the Reply is written to")
    parser.add_argument("--lockstep", action="store_true",
                        help="the request is stdin's first line; then one timed block per 'run' line (harness.measure.lockstep)")
    args = parser.parse_args(argv)
    die_with_parent()
    with os.fdopen(args.reply_fd, "w") as out:
        def answer(message: dict) -> None:
            out.write(json.dumps(message) + "\n")
            out.flush()

        try:
            if args.lockstep:
                reply = serve_blocks(Request.from_json(sys.stdin.readline()), sys.stdin, answer)
            else:
                reply = measure(Request.from_json(sys.stdin.read()))
        except BackendRefused as e:  # a precision this CPU lacks: the row says so in the backend's words
            reply = Reply.failed(str(e))
        except Exception as e:  # reported to the parent as a row-level failure, not a crash of the run
            reply = Reply.failed(f"{type(e).__name__}: {e}")
        out.write(reply.to_json() + ("\n" if args.lockstep else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
