"""What the parent and the measurement child say to each other: one versioned Request in, one Reply back.

Standard library only: the child imports it before anything else. The reply travels on its own pipe
(a file descriptor the parent passes), never on stdout, so a library that prints cannot break a row.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import asdict, dataclass, fields

from harness.measure.backends import DEFAULT_BACKEND
from harness.measure.figures import figure_of

# 2: the child's scalar figures travel in `figures`, by the names harness.measure.figures declares.
# 3: ONNX Runtime's session options travel in `backend_options`, as every backend's options do.
PROTOCOL_VERSION = 3


class ProtocolError(ValueError):
    """A message of another protocol version, or not a message at all."""


class _Message:
    """JSON both ways; decoding checks the protocol version and the fields."""

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str):
        return cls(**_decode(cls, text))


@dataclass(frozen=True)
class Request(_Message):
    """One measurement: a model file, its input, how to run it and whether to evaluate it."""

    onnx_path: str
    sample_path: str  # one fitted, normalised image (C,H,W) as .npy
    output_shape: tuple[int, ...]  # one image's logits, without the batch axis; checked when evaluating
    threads: int
    cpu_affinity: tuple[int, ...]  # empty: the first `threads` CPUs where the child runs (the runner decides)
    inter_op_threads: int = 1
    serving: str = "batched"  # "batched": one call of images_at_once; "concurrent": that many requests in flight
    images_at_once: int = 1
    warmup_runs: int = 10
    min_runs: int = 50
    min_duration_s: float = 2.0
    max_runs: int = 5000
    eval_path: str | None = None  # .npz of images and targets: evaluate after timing
    predictions_path: str | None = None  # where to save the argmax predictions of the evaluation
    num_classes: int = 1
    ignore_index: int = 255
    reference_path: str | None = None  # the fixed reference workload, timed after the model
    reference_options: dict = dataclasses.field(default_factory=dict)  # the default backend's options, for it
    report_machine: bool = False  # also send the fingerprint of the machine (one child per variant is enough)
    block_s: float = 0.25  # lockstep: the timed length of one block (after its one untimed re-warm call)
    backend: str = DEFAULT_BACKEND  # harness.measure.backends: the runtime the child times the model under
    precision: str = ""  # the backend's inference precision where it has one (OpenVINO: "f32", "bf16"); "" its default
    backend_options: dict = dataclasses.field(default_factory=dict)  # what load() is given: ORT's session options, a [table]
    version: int = PROTOCOL_VERSION


@dataclass(frozen=True)
class Reply(_Message):
    """What one child measured, or why it could not."""

    ok: bool
    error: str | None = None
    latencies_ms: tuple[float, ...] = ()
    figures: dict = dataclasses.field(default_factory=dict)  # harness.measure.figures: peak_rss_mb, load_ms, ...
    cpu_affinity: tuple[int, ...] = ()
    confusion: tuple[tuple[int, ...], ...] | None = None  # rows true class, columns predicted
    machine: dict | None = None  # where the child ran: CPU model, cores, ISA, Python/numpy/ORT versions
    measured_on: str | None = None  # the runner's word for where: "local (host)", "ssh://dev (host)", "ray node ..."
    block_sizes: tuple[int, ...] = ()  # lockstep: calls in each block, in order (block i ran in cycle i)
    version: int = PROTOCOL_VERSION

    @classmethod
    def failed(cls, error: str) -> "Reply":
        return cls(ok=False, error=error)

    def __getattr__(self, name: str):
        return figure_of(self, name)  # reply.peak_rss_mb: a declared figure, None where not measured


_TUPLES = {"output_shape", "cpu_affinity", "latencies_ms", "block_sizes"}


def _decode(cls, text: str) -> dict:
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        raise ProtocolError(f"not a JSON document ({e})") from e
    if not isinstance(doc, dict) or doc.get("version") != PROTOCOL_VERSION:
        version = doc.get("version") if isinstance(doc, dict) else None
        raise ProtocolError(f"{cls.__name__} of protocol version {version}; this harness speaks {PROTOCOL_VERSION}")
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(doc) - known)
    if unknown:
        raise ProtocolError(f"{cls.__name__} has unknown field '{unknown[0]}'")
    for name in _TUPLES & set(doc):
        doc[name] = tuple(doc[name])
    if doc.get("confusion") is not None:
        doc["confusion"] = tuple(tuple(row) for row in doc["confusion"])
    return doc
