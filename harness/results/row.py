"""A result row composed of parts: who it is, what it measured (latency, memory, quality, a service's load), what
it ran as, and where. Each part owns its figures and how the gate compares them with a recorded row's.

A row reads flat too (`row.p50_ms` is `row.latency.p50_ms`), and is built and replaced from flat cells
(`ResultRow(**cells)`, `dataclasses.replace(row, p50_ms=...)`): a column name says which part holds it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import NamedTuple

from harness.measure.backends import DEFAULT_BACKEND

# The row's shape, written beside every CSV row; what each version added:
# 2: quality_metric/quality_pct/quality_drop_pts/per_class_pct replace miou_pct/miou_drop_pts.
# 3: what the latency rule and a later A/B need: per-process p50/p95, the export's hash, the commit, the
#    measuring child's versions, session options and affinity; plus import RSS, threads, requests in flight.
# 4: measured_on, where the child ran (local, an ssh device, a Ray node).
# 5: mem_pattern, the last session option a row lacked: the gate A/Bs any change of configuration.
# 6: served rows (serving "http"): the load, its errors, the held rate, the server's split and memory.
# 7: the backend that ran the row (harness.measure.backends), its own version and the precision it says it ran.
# 8: cpu_ms_per_call (the child's CPU time per call, every thread); serving_mode, the row's identity (`serving` is its
#    label; an older record's is read back to its mode); backend_options, the [backend] table it ran with (JSON).
SCHEMA_VERSION = 8
# Older schemas this harness still reads: the columns each later version added read as "not measured".
_LATER = {3: ("import_rss_mb", "threads_in_process", "max_in_flight", "processes", "p50_per_process_ms", "p95_per_process_ms",
              "contended_pct", "onnx_sha256", "git_commit", "allow_spinning", "cpu_affinity", "python_version",
              "numpy_version", "onnx_version"),
          4: ("measured_on",), 5: ("mem_pattern",),
          6: ("load_ms", "first_call_ms", "load", "max_ms", "duration_s", "errors", "timeouts", "late_sends",
              "held_rate_per_s", "within_budget_pct", "server_split_ms", "server_rss_mb", "memory_cap_by", "cgroup_peak_mb",
              "oom_kills"),
          7: ("backend", "backend_version", "precision"), 8: ("cpu_ms_per_call", "serving_mode", "backend_options")}
READABLE_SCHEMAS = {old: tuple(c for v in range(old + 1, SCHEMA_VERSION + 1) for c in _LATER[v]) for old in (2, 3, 4, 5, 6, 7)}
# The CSV's columns, in the order written: each is a figure of one part of the row (below).
COLUMNS = ("target", "model", "variant", "serving", "status", "verdict", "flags", "recipe", "nodes_in_float",
           "nodes_in_float_names", "file_mb", "params_in_graph", "parity_agreement_pct", "parity_max_abs_diff", "p50_ms",
           "p95_ms", "p99_ms", "latency_stdev_pct", "runs", "images_per_s", "peak_rss_mb", "floor_rss_mb", "model_mb",
           "speedup_vs_fp32", "quality_metric", "quality_pct", "quality_drop_pts", "agreement_with_fp32_pct",
           "pixel_accuracy_pct", "per_class_pct", "eval_images", "threads", "images_at_once", "cpu_mem_arena",
           "reference_ms", "import_rss_mb", "threads_in_process", "max_in_flight", "processes", "p50_per_process_ms",
           "p95_per_process_ms", "contended_pct", "onnx_sha256", "git_commit", "allow_spinning", "mem_pattern",
           "cpu_affinity", "measured_on", "python_version", "numpy_version", "onnx_version", "cpu_model", "cpu_count",
           "cpu_isa", "ort_version", "harness_version", "measured_at", "load_ms", "first_call_ms", "load", "max_ms",
           "duration_s", "errors", "timeouts", "late_sends", "held_rate_per_s", "within_budget_pct", "server_split_ms",
           "server_rss_mb", "memory_cap_by", "cgroup_peak_mb", "oom_kills", "backend", "backend_version", "precision",
           "cpu_ms_per_call", "serving_mode", "backend_options", "schema_version")
PARITY_TOLERANCE_PTS = 0.05  # argmax agreement of the export with PyTorch: deterministic, so compared tightly


class RowKey(NamedTuple):
    """The one identity of a measured row within a target's record, from the plan to the gate and the record."""

    model: str
    variant: str
    serving: str  # the serving mode: "batched", "concurrent", "http-burst", "http-closed", "http-open"
    backend: str


def serving_mode_of(label: str) -> str:
    """The serving mode a row's label names: how a record from before schema 8 (the label only) is keyed."""
    if label.startswith("http: bursts"):
        return "http-burst"
    if label.startswith("http: open loop"):
        return "http-open"
    if label.startswith("http: ") and label.endswith(" clients"):
        return "http-closed"
    if label.endswith(" in flight"):
        return "concurrent"
    if label == "1 per call" or label.startswith("batch of "):
        return "batched"
    return label  # a label this harness never wrote: a key of its own, never merged into another row's


@dataclass(frozen=True)
class Identity:
    target: str
    model: str
    variant: str
    serving: str  # how images reach the model, in words: "1 per call", "batch of 10" (one call), "10 in flight"
    serving_mode: str = ""  # "batched", "concurrent", "http-burst", ...: the key; "" before schema 8 (read the label)
    backend: str = DEFAULT_BACKEND  # the runtime that measured the row (harness.measure.backends); "" in older records: ORT

    @property
    def mode(self) -> str:  # an older record's, read back from its label
        return self.serving_mode or serving_mode_of(self.serving)

    @property
    def runtime(self) -> str:  # an older record's empty backend cell: ONNX Runtime's
        return self.backend or DEFAULT_BACKEND

    @property
    def key(self) -> RowKey:
        return RowKey(self.model, self.variant, self.mode, self.runtime)

    @property
    def on_reference_backend(self) -> bool:
        """Measured by the reference runtime, whose fp32 is every row's reference (another backend's rows included)."""
        return self.runtime == DEFAULT_BACKEND

    @property
    def served(self) -> bool:  # measured as an HTTP service
        return self.mode.startswith("http")


@dataclass(frozen=True)
class Outcome:
    status: str  # "ok", or the reason the row could not be measured
    verdict: str  # "fits", or each budget the row breaks: over latency / over memory / over accuracy
    flags: str  # what a reader must not miss: slower than fp32, accuracy drop over the target's limit


@dataclass(frozen=True)
class Artifact:
    """The measured file: deterministic for a given export, so compared tightly."""

    recipe: str  # how the variant was made (quantization types, calibration)
    nodes_in_float: int | None  # int8-static: nodes the accuracy fallback left in float
    nodes_in_float_names: str
    file_mb: float | None
    params_in_graph: int | None
    onnx_sha256: str  # the measured file: the gate A/Bs a model whose export changed

    def regressions(self, old: Artifact, file_tolerance_pct: float) -> list[str]:
        reasons = []
        if old.file_mb is not None:
            _grew(reasons, old.file_mb, self.file_mb, "file", "MB", old.file_mb * (1 + file_tolerance_pct / 100))
        if old.params_in_graph is not None:
            _grew(reasons, old.params_in_graph, self.params_in_graph, "parameters", "", old.params_in_graph)
        return reasons


@dataclass(frozen=True)
class Latency:
    """Timed calls, pooled over the measuring processes; the gate judges it by A/B (harness.gate.latency)."""

    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    latency_stdev_pct: float | None
    runs: int | None
    images_per_s: float | None
    speedup_vs_fp32: float | None  # fp32 p50 / this p50, both measured in the same run
    reference_ms: float | None  # the fixed reference workload, same run: the machine's yardstick
    processes: int | None  # child processes whose timed runs were pooled
    p50_per_process_ms: str  # each child's median, ';'-joined: the latency rule's observations (pyperf's unit)
    p95_per_process_ms: str
    contended_pct: float | None  # most of the target's CPUs any child saw taken by other work while timing
    load_ms: float | None = None  # cold start: creating the session (median over the children; served: the server's)
    first_call_ms: float | None = None  # cold start: the first call after it
    cpu_ms_per_call: float | None = None  # the child's CPU time per call, all threads (median over the children)


@dataclass(frozen=True)
class Memory:
    peak_rss_mb: float | None
    floor_rss_mb: float | None
    model_mb: float | None  # peak over the runtime's floor: what the model itself costs
    import_rss_mb: float | None  # the child's RSS right after importing numpy and the runtime
    memory_cap_by: str = ""  # "cgroup", or "watchdog (why no cgroup)"
    cgroup_peak_mb: float | None = None  # the cgroup's memory.peak, where one was used
    oom_kills: int | None = None

    def regressions(self, old: Memory, tolerance_mb: float) -> list[str]:
        """Model memory against a recorded row measured the same way (same batch, not a service)."""
        reasons = []
        if old.model_mb is not None:
            _grew(reasons, old.model_mb, self.model_mb, "model memory", "MB", old.model_mb + tolerance_mb)
        return reasons


@dataclass(frozen=True)
class Quality:
    """What the model gets right, and how faithful its export is: deterministic on the same images."""

    quality_metric: str  # "mIoU" (segmentation, void excluded) or "top-1" (classification)
    quality_pct: float | None
    quality_drop_pts: float | None  # fp32's quality minus this one, same images
    agreement_with_fp32_pct: float | None  # pixels whose predicted class equals fp32's
    pixel_accuracy_pct: float | None  # segmentation: share of labelled pixels right
    per_class_pct: str  # segmentation: IoU per class; classification: precision/recall per class
    eval_images: int | None
    parity_agreement_pct: float | None  # the export's argmax agreement with PyTorch
    parity_max_abs_diff: float | None

    def regressions(self, old: Quality, tolerance_pts: float) -> list[str]:
        reasons = []
        for a, b, label, tolerance in ((old.quality_pct, self.quality_pct, self.quality_metric or "quality", tolerance_pts),
                                       (old.parity_agreement_pct, self.parity_agreement_pct, "parity agreement",
                                        PARITY_TOLERANCE_PTS)):
            if a is not None and b is not None and b < a - tolerance:
                reasons.append(f"{label} {a:.2f} → {b:.2f} % ({b - a:+.2f} pts)")
        return reasons


@dataclass(frozen=True)
class ServedLoad:
    """Served rows only (serving "http", harness.serve); empty on the others."""

    load: str = ""  # the load in words: bursts, closed-loop clients, the open-loop rate sweep
    max_ms: float | None = None
    duration_s: float | None = None
    errors: int | None = None  # answers other than 200, and requests without an answer
    timeouts: int | None = None
    late_sends: int | None = None  # open loop: sends that left over 5 ms after their scheduled time
    held_rate_per_s: float | None = None  # open loop: the highest rate with p95 (from the scheduled send) in budget
    within_budget_pct: float | None = None  # bursts (burst) or requests answered within the p95 budget
    server_split_ms: str = ""  # medians from Server-Timing: "decode 1.20; queue 30.10; infer 80.20; encode 0.90"
    server_rss_mb: float | None = None  # the server with its whole stack imported, before the model (its floor)


@dataclass(frozen=True)
class Configuration:
    """What the row ran as: the gate A/Bs a change of any of it (harness.gate.latency.CONFIGURATION_FIELDS)."""

    threads: int
    images_at_once: int
    cpu_mem_arena: bool
    threads_in_process: int | None  # threads the measuring child had (most over its processes)
    max_in_flight: int | None  # concurrent serving: most requests seen inside the runtime at once
    allow_spinning: bool | None  # None: recorded before the harness set it (ORT's default, on)
    mem_pattern: bool | None  # ORT's enable_mem_pattern; None: recorded before schema 5
    cpu_affinity: str  # the CPUs the child ran on, ';'-joined
    backend_version: str = ""
    precision: str = ""  # what the backend says it ran: "as in the file" (ORT), "u8 (33 of 33 compute layers)"
    backend_options: str = ""  # the [backend] table it ran with, as JSON: {"num_streams": 2}; "" none


@dataclass(frozen=True)
class Provenance:
    git_commit: str  # the suite's commit when measured ('-dirty': uncommitted changes in its folder)
    measured_on: str  # where: "local (host)", "ssh://user@device (host)", "ray node ID (host)"
    python_version: str
    numpy_version: str
    onnx_version: str
    cpu_model: str
    cpu_count: int
    cpu_isa: str
    ort_version: str
    harness_version: str
    measured_at: str


PARTS = {"identity": Identity, "outcome": Outcome, "artifact": Artifact, "latency": Latency, "memory": Memory,
         "quality": Quality, "served_load": ServedLoad, "configuration": Configuration, "provenance": Provenance}
CELL_FIELDS = {f.name: f for part in PARTS.values() for f in dataclasses.fields(part)}
_PART_OF = {f.name: part_name for part_name, part in PARTS.items() for f in dataclasses.fields(part)}
_IDENTITY_VIEWS = {"key", "mode", "runtime", "on_reference_backend", "served"}


def _grew(reasons: list, a, b, label: str, unit: str, limit: float) -> None:
    if a is not None and b is not None and b > limit:
        reasons.append(f"{label} {a:g} → {b:g} {unit} (+{b - a:.3g})")


@dataclass(frozen=True, init=False)
class ResultRow:
    """One measured (or failed) variant. None means 'not measured'; `status` says why."""

    identity: Identity
    outcome: Outcome
    artifact: Artifact
    latency: Latency
    memory: Memory
    quality: Quality
    served_load: ServedLoad
    configuration: Configuration
    provenance: Provenance
    schema_version: int

    def __init__(self, schema_version: int = SCHEMA_VERSION, **given):
        """From parts, from flat cells, or both (dataclasses.replace passes the parts and the changed cells)."""
        cells = {name: given.pop(name) for name in list(given) if name in _PART_OF}
        unknown = sorted(set(given) - set(PARTS))
        if unknown:
            raise TypeError(f"ResultRow has no column or part {unknown[0]!r}")
        for part_name, part in PARTS.items():
            mine = {name: value for name, value in cells.items() if _PART_OF[name] == part_name}
            whole = given.get(part_name)
            object.__setattr__(self, part_name, part(**mine) if whole is None else dataclasses.replace(whole, **mine) if mine else whole)
        object.__setattr__(self, "schema_version", schema_version)

    def __getattr__(self, name: str):
        """A column from the part that holds it; `key`, `mode`, `runtime`, `served`... from the identity."""
        part = _PART_OF.get(name) or ("identity" if name in _IDENTITY_VIEWS else None)
        if part is None:
            raise AttributeError(f"ResultRow has no column {name!r}")
        return getattr(object.__getattribute__(self, part), name)

    def cells(self) -> dict:
        """Column name -> value, every part flattened (the CSV's and --json's view)."""
        return {name: self.schema_version if name == "schema_version" else getattr(getattr(self, _PART_OF[name]), name)
                for name in COLUMNS}
