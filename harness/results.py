"""Result rows: one per model variant and target, written to results/<target>.csv atomically."""

from __future__ import annotations

import csv
import io
from dataclasses import asdict, dataclass, fields
from typing import NamedTuple
from pathlib import Path

from harness.backends import DEFAULT_BACKEND
from harness.errors import HarnessError
from harness.files import locked, write_text_atomic

# 2: quality_metric/quality_pct/quality_drop_pts/per_class_pct replace miou_pct/miou_drop_pts.
# 3: what the latency rule and a later A/B need: per-process p50/p95, the export's hash, the commit, the
#    measuring child's versions, session options and affinity; plus import RSS, threads, requests in flight.
# 4: measured_on, where the child ran (local, an ssh device, a Ray node).
# 5: mem_pattern, the last session option a row lacked: the gate A/Bs any change of configuration.
# 6: served rows (serving "http"): the load, its errors, the held rate, the server's split and memory.
# 7: the backend that ran the row (harness.backends), its own version and the precision it says it ran.
# 8: cpu_ms_per_call (the child's CPU time per call, every thread); serving_mode, the row's identity (`serving` is its
#    label; an older record's is read back to its mode); backend_options, the [backend] table it ran with (JSON).
SCHEMA_VERSION = 8
SCHEMA_8_COLUMNS = ("cpu_ms_per_call", "serving_mode", "backend_options")
SCHEMA_7_COLUMNS = ("backend", "backend_version", "precision")
SCHEMA_6_COLUMNS = ("load_ms", "first_call_ms", "load", "max_ms", "duration_s", "errors", "timeouts", "late_sends", "held_rate_per_s",
                    "within_budget_pct", "server_split_ms", "server_rss_mb", "memory_cap_by", "cgroup_peak_mb", "oom_kills")
SCHEMA_5_COLUMNS = ("mem_pattern",)
SCHEMA_4_COLUMNS = ("measured_on",)
SCHEMA_3_COLUMNS = ("import_rss_mb", "threads_in_process", "max_in_flight", "processes", "p50_per_process_ms",
                    "p95_per_process_ms", "contended_pct", "onnx_sha256", "git_commit", "allow_spinning", "cpu_affinity",
                    "python_version", "numpy_version", "onnx_version")
# Older schemas this harness still reads: the columns they lack read as "not measured".
_LATER = {8: SCHEMA_8_COLUMNS, 6: SCHEMA_6_COLUMNS, 7: SCHEMA_7_COLUMNS, 5: SCHEMA_5_COLUMNS, 4: SCHEMA_4_COLUMNS, 3: SCHEMA_3_COLUMNS}
READABLE_SCHEMAS = {old: tuple(c for v in range(old + 1, SCHEMA_VERSION + 1) for c in _LATER[v]) for old in (2, 3, 4, 5, 6, 7)}


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
class ResultRow:
    """One measured (or failed) variant. None means 'not measured'; `status` says why."""

    target: str
    model: str
    variant: str
    serving: str  # how images reach the model: "1 per call", "batch of 10" (one call), "10 in flight" (requests)
    status: str  # "ok", or the reason the row could not be measured
    verdict: str  # "fits", or each budget the row breaks: over latency / over memory / over accuracy
    flags: str  # what a reader must not miss: slower than fp32, accuracy drop over the target's limit
    recipe: str  # how the variant was made (quantization types, calibration)
    nodes_in_float: int | None  # int8-static: nodes the accuracy fallback left in float
    nodes_in_float_names: str
    file_mb: float | None
    params_in_graph: int | None
    parity_agreement_pct: float | None
    parity_max_abs_diff: float | None
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    latency_stdev_pct: float | None
    runs: int | None
    images_per_s: float | None
    peak_rss_mb: float | None
    floor_rss_mb: float | None
    model_mb: float | None
    speedup_vs_fp32: float | None  # fp32 p50 / this p50, both measured in the same run
    quality_metric: str  # "mIoU" (segmentation, void excluded) or "top-1" (classification)
    quality_pct: float | None
    quality_drop_pts: float | None  # fp32's quality minus this one, same images
    agreement_with_fp32_pct: float | None  # pixels whose predicted class equals fp32's
    pixel_accuracy_pct: float | None  # segmentation: share of labelled pixels right
    per_class_pct: str  # segmentation: IoU per class; classification: precision/recall per class
    eval_images: int | None
    threads: int
    images_at_once: int
    cpu_mem_arena: bool
    reference_ms: float | None  # the fixed reference workload, same run: the machine's yardstick
    import_rss_mb: float | None  # the child's RSS right after importing numpy and onnxruntime
    threads_in_process: int | None  # threads the measuring child had (most over its processes)
    max_in_flight: int | None  # concurrent serving: most requests seen inside the runtime at once
    processes: int | None  # child processes whose timed runs were pooled
    p50_per_process_ms: str  # each child's median, ';'-joined: the latency rule's observations (pyperf's unit)
    p95_per_process_ms: str
    contended_pct: float | None  # most of the target's CPUs any child saw taken by other work while timing
    onnx_sha256: str  # the measured file: the gate A/Bs a model whose export changed
    git_commit: str  # the suite's commit when measured ('-dirty': uncommitted changes in its folder)
    allow_spinning: bool | None  # None: recorded before the harness set it (ORT's default, on)
    mem_pattern: bool | None  # ORT's enable_mem_pattern; None: recorded before schema 5
    cpu_affinity: str  # the CPUs the child ran on, ';'-joined
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
    load_ms: float | None = None  # cold start: creating the session (median over the children; served: the server's)
    first_call_ms: float | None = None  # cold start: the first call after it
    # Served rows only (serving "http", harness.serve); empty on the others.
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
    memory_cap_by: str = ""  # "cgroup", or "watchdog (why no cgroup)"
    cgroup_peak_mb: float | None = None  # the cgroup's memory.peak, where one was used
    oom_kills: int | None = None
    backend: str = DEFAULT_BACKEND  # the runtime that measured the row (harness.backends); "" in older records: ORT
    backend_version: str = ""
    precision: str = ""  # what the backend says it ran: "as in the file" (ORT), "u8 (33 of 33 compute layers)"
    cpu_ms_per_call: float | None = None  # the child's CPU time per call, all threads (median over the children)
    serving_mode: str = ""  # "batched", "concurrent", "http-burst", ...: `serving` is its label; "" before schema 8
    backend_options: str = ""  # the [backend] table it ran with, as JSON: {"num_streams": 2}; "" none
    schema_version: int = SCHEMA_VERSION

    @property
    def key(self) -> RowKey:
        return RowKey(self.model, self.variant, self.mode, self.runtime)

    @property
    def mode(self) -> str:  # the row's serving mode (an older record's, read back from its label)
        return self.serving_mode or serving_mode_of(self.serving)

    @property
    def runtime(self) -> str:
        """The backend that measured the row (an older record's empty cell: ONNX Runtime's)."""
        return self.backend or DEFAULT_BACKEND

    @property
    def on_reference_backend(self) -> bool:
        """Measured by the reference runtime, whose fp32 is every row's reference (another backend's rows included)."""
        return self.runtime == DEFAULT_BACKEND

    @property
    def served(self) -> bool:
        """Measured as an HTTP service (serving "http")."""
        return self.mode.startswith("http")


COLUMNS = [f.name for f in fields(ResultRow)]
_TYPES = {f.name: f.type for f in fields(ResultRow)}
# A recorded ok row must hold these, positive: the gate compares them (damaged_fields).
_MUST_BE_POSITIVE = ("p50_ms", "p95_ms", "file_mb")


def format_cell(name: str, value) -> str:
    """A float is written in its shortest exact form: read back, it is the same number, so a round trip through
    the CSV never moves a figure across a tolerance (a 0.001833 MB file once came back as 0.0018)."""
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value) if value == value and abs(value) != float("inf") else str(value)
    return str(value)


_SHOWN_DIGITS = {"parity_max_abs_diff": 9, "file_mb": 4, "parity_agreement_pct": 4, "reference_ms": 4}


def shown_cell(name: str, value) -> str:
    """A figure as tables and reports show it (rounded for reading; the CSV keeps it exact)."""
    if name == "backend":
        return value or DEFAULT_BACKEND  # a record from before the backend column: ONNX Runtime's
    if isinstance(value, float):
        return f"{value:.{_SHOWN_DIGITS.get(name, 3)}f}"
    return format_cell(name, value)


def damaged_fields(row: ResultRow) -> list[str]:
    """What a recorded ok row lacks or holds impossibly (a p50 of 0, a missing quality): such a row cannot be compared."""
    if row.status != "ok":
        return []
    bad = [f"{name} {getattr(row, name) if getattr(row, name) is not None else 'missing'}" for name in _MUST_BE_POSITIVE
           if getattr(row, name) is None or not getattr(row, name) > 0]
    if row.quality_pct is None or not 0 <= row.quality_pct <= 100:
        bad.append(f"quality_pct {row.quality_pct if row.quality_pct is not None else 'missing'}")
    return bad


def _parse(name: str, text: str):
    """A CSV cell back to its field's type; '' is None (not measured)."""
    kind = _TYPES[name]
    if kind == "str":
        return text
    if text == "":
        return None if "None" in kind else (False if kind == "bool" else text)
    if kind.startswith("bool"):
        return text == "True"
    return int(text) if kind.startswith("int") else float(text)


def joined(values) -> str:
    return ";".join(repr(v) if isinstance(v, float) else str(v) for v in values)


def split_floats(text: str) -> tuple[float, ...]:
    return tuple(float(v) for v in text.split(";") if v)


def record_key(record: dict) -> RowKey:
    """The key of a recorded row as read (its cells' text)."""
    return RowKey(record.get("model", ""), record.get("variant", ""),
                  record.get("serving_mode") or serving_mode_of(record.get("serving", "")), record.get("backend") or DEFAULT_BACKEND)


def rows_to_csv_text(rows: list[ResultRow], kept: list[dict] = ()) -> str:
    """The CSV of `rows`, plus `kept`: recorded rows as read (their cells' text), written back unchanged."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    cells = [{name: format_cell(name, value) for name, value in asdict(row).items()} for row in rows]
    cells += [{name: record.get(name) or "" for name in COLUMNS} for record in kept]
    # Stable order, so a diff in review shows only what changed.
    for record in sorted(cells, key=lambda c: (c["model"], c["variant"], c["serving"], c.get("backend") or "")):
        writer.writerow(record)
    return buffer.getvalue()


def read_rows(path: Path) -> list[ResultRow]:
    """Rows of a results CSV; a CSV of another schema, or with a column missing, is refused with a clear message."""
    try:
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            header = reader.fieldnames or []
            records = list(reader)
    except OSError as e:
        raise HarnessError(f"cannot read results file {path}: {e.strerror}") from e
    except (UnicodeDecodeError, csv.Error) as e:
        raise HarnessError(f"results file {path} is not a CSV written by harness ({type(e).__name__}); restore it from "
                           f"git or move it aside and re-record with harness bench --update") from e
    damaged = next((i for i, r in enumerate(records, 2) if None in r or not r.get("schema_version")), None)
    if "schema_version" in header and damaged is not None:
        raise HarnessError(f"results file {path} is truncated or damaged at line {damaged} (a row without all its "
                           f"columns); restore it from git or re-record it with harness bench --update")
    versions = {r.get("schema_version") or "none" for r in records}
    readable = {str(SCHEMA_VERSION), *map(str, READABLE_SCHEMAS)}
    if "schema_version" in header and versions - readable:
        raise HarnessError(f"results file {path} has schema version {sorted(versions - readable)[0]}; this harness "
                           f"writes {SCHEMA_VERSION}: move the file aside and re-record with harness bench --update")
    # the oldest schema among the rows says which columns may be absent (a header alone: any readable schema's)
    oldest = min((int(v) for v in versions if v.isdigit()), default=SCHEMA_VERSION) if records else min(READABLE_SCHEMAS)
    absent = set(READABLE_SCHEMAS.get(oldest, ()))
    missing = [c for c in COLUMNS if c not in header and c not in absent]
    if missing:
        raise HarnessError(f"results file {path} lacks column '{missing[0]}' (schema {SCHEMA_VERSION} expected); "
                           f"regenerate it with harness bench or restore it from git")
    try:
        return [ResultRow(**{c: _parse(c, r.get(c) or "") for c in COLUMNS if c != "schema_version"}) for r in records]
    except ValueError as e:
        raise HarnessError(f"results file {path} holds a value that is not a number ({e}); restore it from git "
                           f"or re-record it with harness bench --update") from e


def merge_and_write(path: Path, new_rows: list[ResultRow], on_wait=None, only_rows: bool = False) -> None:
    """Replace this run's models in `path` (`only_rows`: only the rows it measured), keep the others byte for byte.

    Read, merge and replace happen under one lock, so two runs updating one record (two CI jobs, two
    terminals) both land: the second merges on top of what the first wrote.
    """
    with locked(path, on_wait):
        replaced = {r.key for r in new_rows}
        run_models = {r.model for r in new_rows}
        kept = []
        if path.is_file():
            read_rows(path)  # a damaged record is refused, never merged into
            with open(path, newline="") as f:
                kept = [r for r in csv.DictReader(f) if not (
                    record_key(r) in replaced if only_rows else r["model"] in run_models)]
        write_text_atomic(path, rows_to_csv_text(list(new_rows), kept))
