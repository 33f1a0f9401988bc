"""Launch one isolated measurement: a fresh worker process per model variant, blocked on its pipe.

Like pyperf, each measurement is a new interpreter (nothing warm leaks between variants), the result
comes back as one JSON document, and the child is killed on timeout. A watchdog thread ends a child
whose resident memory passes the cap; the kernel's VmHWM is read for the peak either way.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from harness.targets import TargetProfile

WORKER_TIMEOUT_S = 900
MAX_RUNS = 5000
WATCHDOG_POLL_S = 0.005
UNSTABLE_STDEV_PCT = 10.0  # pyperf's threshold: stdev at or above 10 % of the mean


@dataclass(frozen=True)
class LatencyStats:
    runs: int
    p50_ms: float
    p95_ms: float
    p99_ms: float
    mean_ms: float
    stdev_ms: float

    @classmethod
    def from_samples(cls, latencies_ms) -> "LatencyStats":
        a = np.asarray(latencies_ms, dtype=np.float64)
        p50, p95, p99 = np.percentile(a, [50, 95, 99])
        return cls(len(a), float(p50), float(p95), float(p99), float(a.mean()), float(a.std(ddof=1)) if len(a) > 1 else 0.0)

    @property
    def unstable(self) -> bool:
        return self.mean_ms > 0 and 100 * self.stdev_ms / self.mean_ms >= UNSTABLE_STDEV_PCT


@dataclass(frozen=True)
class Measurement:
    """What one or more workers reported; `error` set means the row could not be measured."""

    latencies_ms: tuple[float, ...]
    latency: LatencyStats | None
    peak_rss_mb: float | None
    import_rss_mb: float | None
    threads_in_process: int | None
    cpu_affinity: tuple[int, ...]
    images_per_s: float | None
    max_in_flight: int | None
    reference_ms: float | None
    confusion: np.ndarray | None
    ort_version: str | None
    error: str | None = None


def _rss_mb(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
    except (FileNotFoundError, ProcessLookupError):
        return None
    return None


def run_worker(request: dict, memory_cap_mb: float | None = None, timeout_s: float = WORKER_TIMEOUT_S) -> Measurement:
    """Run `python -m harness.worker` on `request`; never raises for a failed child."""
    proc = subprocess.Popen([sys.executable, "-m", "harness.worker"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    over_cap: list[float] = []
    done = threading.Event()

    def watchdog() -> None:
        while not done.is_set():
            rss = _rss_mb(proc.pid)
            if rss is not None and rss > memory_cap_mb:
                over_cap.append(rss)
                proc.kill()
                return
            done.wait(WATCHDOG_POLL_S)

    watcher = threading.Thread(target=watchdog, daemon=True) if memory_cap_mb else None
    if watcher:
        watcher.start()
    try:
        stdout, stderr = proc.communicate(json.dumps(request), timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        return _failed(f"worker did not finish within {timeout_s:.0f} s and was killed")
    except BaseException:
        proc.kill()  # Ctrl-C: never leave a measuring child behind
        proc.communicate()
        raise
    finally:
        done.set()
        if watcher:
            watcher.join()
    if over_cap:
        return _failed(f"exceeded memory cap ({over_cap[0]:.0f} MB > {memory_cap_mb:.0f} MB)")
    if proc.returncode != 0 or not stdout.strip():
        last = (stderr.strip().splitlines() or [f"exit code {proc.returncode}"])[-1]
        return _failed(f"worker failed: {last}")
    reply = json.loads(stdout)
    if not reply["ok"]:
        return _failed(reply["error"])
    return Measurement(
        latencies_ms=tuple(reply["latencies_ms"]),
        latency=LatencyStats.from_samples(reply["latencies_ms"]),
        peak_rss_mb=reply["peak_rss_mb"],
        import_rss_mb=reply["import_rss_mb"],
        threads_in_process=reply["threads_in_process"],
        cpu_affinity=tuple(reply["cpu_affinity"]),
        images_per_s=reply["images_per_s"],
        max_in_flight=reply.get("max_in_flight"),
        reference_ms=reply.get("reference_ms"),
        confusion=np.asarray(reply["confusion"], dtype=np.int64) if "confusion" in reply else None,
        ort_version=reply["ort_version"],
    )


def _failed(message: str) -> Measurement:
    return Measurement((), None, None, None, None, (), None, None, None, None, None, error=message)


def combine(children: list[Measurement]) -> Measurement:
    """One figure from several child processes of the same variant, measured in alternation.

    Latencies are pooled (each child saw the machine at a different moment, so slow drift of a shared
    host averages out instead of landing on one variant); memory and throughput are medians.
    """
    failed = next((m for m in children if m.error), None)
    if failed is not None:
        return failed
    pooled = tuple(x for m in children for x in m.latencies_ms)

    def median(values):
        values = [v for v in values if v is not None]
        return float(np.median(values)) if values else None

    return Measurement(
        latencies_ms=pooled,
        latency=LatencyStats.from_samples(pooled),
        peak_rss_mb=median(m.peak_rss_mb for m in children),
        import_rss_mb=median(m.import_rss_mb for m in children),
        threads_in_process=max(m.threads_in_process for m in children),
        cpu_affinity=children[0].cpu_affinity,
        images_per_s=median(m.images_per_s for m in children),
        max_in_flight=max((m.max_in_flight for m in children if m.max_in_flight is not None), default=None),
        reference_ms=median(m.reference_ms for m in children),
        confusion=next((m.confusion for m in children if m.confusion is not None), None),
        ort_version=children[0].ort_version,
    )


def build_request(onnx_path: Path, target: TargetProfile, sample_path: Path, eval_path: Path | None,
                  num_classes: int, ignore_index: int, predictions_path: Path | None = None,
                  serving: str = "batched", reference_path: Path | None = None) -> dict:
    return {
        "serving": serving,
        "reference_path": str(reference_path) if reference_path else None,
        "onnx_path": str(onnx_path),
        "predictions_path": str(predictions_path) if predictions_path else None,
        "sample_path": str(sample_path),
        "eval_path": str(eval_path) if eval_path else None,
        "num_classes": num_classes,
        "ignore_index": ignore_index,
        "threads": target.threads,
        "inter_op_threads": target.inter_op_threads,
        "cpu_affinity": list(target.affinity()),
        "images_at_once": target.images_at_once,
        "enable_cpu_mem_arena": target.enable_cpu_mem_arena,
        "enable_mem_pattern": target.enable_mem_pattern,
        "warmup_runs": target.warmup_runs,
        "min_runs": target.min_runs,
        "min_duration_s": target.min_duration_s,
        "max_runs": MAX_RUNS,
    }


def reference_model(path: Path) -> Path:
    """A fixed small workload (three 3x3 convolutions, 32 channels, 64x64): the machine's yardstick.

    Measured beside every run, it lets latency recorded on another machine be compared as a ratio.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    nodes, weights, previous, in_ch = [], [], "x", 3
    for i in range(3):
        weights.append(numpy_helper.from_array((rng.standard_normal((32, in_ch, 3, 3)) * 0.1).astype(np.float32), f"w{i}"))
        nodes.append(helper.make_node("Conv", [previous, f"w{i}"], [f"y{i}"], pads=[1, 1, 1, 1]))
        previous, in_ch = f"y{i}", 32
    graph = helper.make_graph(nodes, "reference", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 64, 64])],
                              [helper.make_tensor_value_info(previous, TensorProto.FLOAT, [1, 32, 64, 64])], weights)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def trivial_model(path: Path, input_hw: tuple[int, int]) -> Path:
    """A one-node (Identity) model with the same input: its peak is the runtime's floor."""
    import onnx
    from onnx import TensorProto, helper

    shape = ["batch", 3, *input_hw]
    graph = helper.make_graph(
        [helper.make_node("Identity", ["image"], ["logits"])], "floor",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, shape)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path
