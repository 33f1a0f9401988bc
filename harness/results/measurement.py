"""From replies to figures: latency statistics, and one Measurement from a variant's child processes."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from harness.measure.backends import DEFAULT_BACKEND
from harness.measure.figures import combine_figures, figure_of
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
    figures: dict = field(default_factory=dict)  # harness.measure.figures, combined over the children
    cpu_affinity: tuple[int, ...] = ()
    confusion: np.ndarray | None = None
    error: str | None = None
    per_process_latencies_ms: tuple[tuple[float, ...], ...] = ()  # one tuple per child, in the order they ran
    machine: dict | None = None  # the child's fingerprint
    measured_on: str | None = None  # where the children ran, in the runner's words
    per_process_block_sizes: tuple[tuple[int, ...], ...] = ()  # lockstep: calls per block, one tuple per child
    per_process_reference_ms: tuple[float, ...] = ()  # the reference workload, one median per child
    served: object | None = None  # serving "http": harness.serve.summary.ServedFigures (measure/ never imports serve/)

    def __getattr__(self, name: str):
        return figure_of(self, name)  # measurement.peak_rss_mb: a declared figure, None where not measured

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
            figures=dict(reply.figures), cpu_affinity=reply.cpu_affinity,
            confusion=np.asarray(reply.confusion, dtype=np.int64) if reply.confusion is not None else None,
            per_process_latencies_ms=(reply.latencies_ms,), machine=reply.machine, measured_on=reply.measured_on,
            per_process_block_sizes=(reply.block_sizes,),
            per_process_reference_ms=(reply.figures["reference_ms"],) if reply.figures.get("reference_ms") else (),
        )


def failed(message: str) -> Measurement:
    return Measurement((), None, error=message)


def combine(children: list[Measurement]) -> Measurement:
    """One figure from several child processes of the same variant, measured in alternation.

    Latencies are pooled (each child saw the machine at a different moment, so slow drift of a shared
    host averages out instead of landing on one variant); every other figure as harness.measure.figures
    declares (memory and throughput are medians).
    """
    first_failure = next((m for m in children if m.error), None)
    if first_failure is not None:
        return first_failure
    pooled = tuple(x for m in children for x in m.latencies_ms)
    return Measurement(
        latencies_ms=pooled, latency=LatencyStats.from_samples(pooled),
        figures=combine_figures([m.figures for m in children]),
        cpu_affinity=children[0].cpu_affinity,
        confusion=next((m.confusion for m in children if m.confusion is not None), None),
        per_process_latencies_ms=tuple(p for m in children for p in m.per_process_latencies_ms),
        machine=children[0].machine, measured_on=children[0].measured_on,
        per_process_block_sizes=tuple(b for m in children for b in m.per_process_block_sizes),
        per_process_reference_ms=tuple(v for m in children for v in m.per_process_reference_ms),
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
        backend=DEFAULT_BACKEND, backend_options=runtime.options_for(DEFAULT_BACKEND),
        reference_options=runtime.options_for(DEFAULT_BACKEND),  # the yardstick runs alike under every backend
        warmup_runs=scenario.warmup_runs, min_runs=scenario.min_runs, min_duration_s=scenario.min_duration_s,
        max_runs=MAX_RUNS, eval_path=str(eval_path) if eval_path else None,
        predictions_path=str(predictions_path) if predictions_path else None, num_classes=num_classes,
        ignore_index=ignore_index, reference_path=str(reference_path) if reference_path else None,
    )
