"""Result rows: one per model variant and target, written to results/<target>.csv atomically."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from harness.measure.backends import DEFAULT_BACKEND
from harness.errors import HarnessError
from harness.files import locked, write_text_atomic
from harness.results.row import CELL_FIELDS, COLUMNS, READABLE_SCHEMAS, SCHEMA_VERSION, ResultRow, RowKey, serving_mode_of

__all__ = ["ResultRow", "RowKey", "serving_mode_of", "COLUMNS", "SCHEMA_VERSION", "read_rows", "merge_and_write",
           "rows_to_csv_text", "record_key", "damaged_fields", "format_cell", "shown_cell", "joined", "split_floats"]

_TYPES = {name: field.type for name, field in CELL_FIELDS.items()}
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
    cells = [{name: format_cell(name, value) for name, value in row.cells().items()} for row in rows]
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
