"""From replies to figures: latency statistics, and one Measurement from a variant's child processes."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from harness.measure.protocol import Reply, Request
from harness.targets import TargetProfile

MAX_RUNS = 5000


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


@dataclass(frozen=True)
class Measurement:
    """What one or more children reported; `error` set means the row could not be measured."""

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
    per_process_latencies_ms: tuple[tuple[float, ...], ...] = ()  # one tuple per child, in the order they ran
    other_cpu_pct: float | None = None  # most any child saw other work take of its CPUs
    machine: dict | None = None  # the child's fingerprint
    measured_on: str | None = None  # where the children ran, in the runner's words
    per_process_block_sizes: tuple[tuple[int, ...], ...] = ()  # lockstep: calls per block, one tuple per child
    per_process_reference_ms: tuple[float, ...] = ()  # the reference workload, one median per child
    served: object | None = None  # serving "http": harness.serve.measure.ServedFigures
    load_ms: float | None = None  # cold start: session creation, median over the children
    first_call_ms: float | None = None  # cold start: the first call, median over the children
    backend_version: str | None = None
    precision: str | None = None  # what the backend says it ran (the first child's word)

    @property
    def per_process_p50_ms(self) -> tuple[float, ...]:
        return tuple(float(np.median(p)) for p in self.per_process_latencies_ms)

    @property
    def per_process_p95_ms(self) -> tuple[float, ...]:
        return tuple(float(np.percentile(p, 95)) for p in self.per_process_latencies_ms)

    @classmethod
    def from_reply(cls, reply: Reply) -> "Measurement":
        if not reply.ok:
            return failed(reply.error or "worker failed without a reason")
        return cls(
            latencies_ms=reply.latencies_ms, latency=LatencyStats.from_samples(reply.latencies_ms),
            peak_rss_mb=reply.peak_rss_mb, import_rss_mb=reply.import_rss_mb, threads_in_process=reply.threads_in_process,
            cpu_affinity=reply.cpu_affinity, images_per_s=reply.images_per_s, max_in_flight=reply.max_in_flight,
            reference_ms=reply.reference_ms,
            confusion=np.asarray(reply.confusion, dtype=np.int64) if reply.confusion is not None else None,
            ort_version=reply.ort_version, per_process_latencies_ms=(reply.latencies_ms,),
            other_cpu_pct=reply.other_cpu_pct, machine=reply.machine, measured_on=reply.measured_on,
            per_process_block_sizes=(reply.block_sizes,),
            per_process_reference_ms=(reply.reference_ms,) if reply.reference_ms else (),
            load_ms=reply.load_ms, first_call_ms=reply.first_call_ms,
            backend_version=reply.backend_version, precision=reply.precision,
        )


def failed(message: str) -> Measurement:
    return Measurement((), None, None, None, None, (), None, None, None, None, None, error=message)


def combine(children: list[Measurement]) -> Measurement:
    """One figure from several child processes of the same variant, measured in alternation.

    Latencies are pooled (each child saw the machine at a different moment, so slow drift of a shared
    host averages out instead of landing on one variant); memory and throughput are medians.
    """
    first_failure = next((m for m in children if m.error), None)
    if first_failure is not None:
        return first_failure
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
        per_process_latencies_ms=tuple(p for m in children for p in m.per_process_latencies_ms),
        other_cpu_pct=max((m.other_cpu_pct for m in children if m.other_cpu_pct is not None), default=None),
        machine=children[0].machine,
        measured_on=children[0].measured_on,
        per_process_block_sizes=tuple(b for m in children for b in m.per_process_block_sizes),
        per_process_reference_ms=tuple(v for m in children for v in m.per_process_reference_ms),
        load_ms=median(m.load_ms for m in children), first_call_ms=median(m.first_call_ms for m in children),
        backend_version=children[0].backend_version, precision=children[0].precision,
    )


def build_request(onnx_path: Path, target: TargetProfile, sample_path: Path, eval_path: Path | None = None,
                  num_classes: int = 1, ignore_index: int = 255, predictions_path: Path | None = None,
                  serving: str = "batched", reference_path: Path | None = None,
                  output_shape: tuple[int, ...] = ()) -> Request:
    """The Request that measures `onnx_path` the way `target` runs it."""
    device, scenario, runtime = target.device, target.scenario, target.runtime
    return Request(
        onnx_path=str(onnx_path), sample_path=str(sample_path), output_shape=tuple(output_shape),
        threads=device.threads, inter_op_threads=device.inter_op_threads, cpu_affinity=device.cpu_affinity or (),
        serving=serving, images_at_once=scenario.images_at_once,
        enable_cpu_mem_arena=runtime.enable_cpu_mem_arena, enable_mem_pattern=runtime.enable_mem_pattern,
        allow_spinning=runtime.allow_spinning,
        warmup_runs=scenario.warmup_runs, min_runs=scenario.min_runs, min_duration_s=scenario.min_duration_s,
        max_runs=MAX_RUNS, eval_path=str(eval_path) if eval_path else None,
        predictions_path=str(predictions_path) if predictions_path else None, num_classes=num_classes,
        ignore_index=ignore_index, reference_path=str(reference_path) if reference_path else None,
    )
