"""Paired ratios kept between history runs, by content, so a rerun measures only what changed plus its anchors.

A ratio of lockstep children is a same-run figure: it holds from run to run on one machine where an absolute
time does not. The book keeps, per target configuration, machine and evaluation data, each pair of versions
measured together (their files' hashes), with each round's ratio and the version's row as measured then. A
later run reuses a pair it holds, and reaches a new today's version through an earlier anchor: version / today
= version / anchor (kept) x anchor / today (measured in this run), its interval from both.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import socket
from dataclasses import dataclass
from pathlib import Path

from harness.cache import cache_dir, cache_key
from harness.files import locked, write_text_atomic
from harness.results import ResultRow, read_rows, rows_to_csv_text
from harness.targets import to_flat


@dataclass(frozen=True)
class KeptPair:
    """One version measured beside an anchor in an earlier run: each round's ratios (version / anchor), its row."""

    p50: tuple[float, ...]
    p95: tuple[float, ...]
    row_csv: str
    measured_at: str


def files_id(files: tuple[tuple[str, str], ...]) -> str:
    """A version's identity: the hash of its (variant, file sha256) pairs."""
    return hashlib.sha256(json.dumps(sorted(files)).encode()).hexdigest()[:16]


def _host() -> str:
    """This machine, not its CPU model: two hosts of one CPU model differ in speed (docs/gate.md)."""
    try:
        return Path("/etc/machine-id").read_text().strip() or socket.gethostname()
    except OSError:
        return socket.gethostname()


class PairBook:
    """The kept pairs of one target configuration on this machine, with this evaluation data."""

    def __init__(self, plan):
        flat = {k: v for k, v in to_flat(plan.target).items() if k != "named_variants" or v}  # pairs kept before them
        parts = {"target": flat, "machine": dataclasses.asdict(plan.machine), "host": _host(),
                 "runs": list(plan.runs), "data": str(Path(plan.inputs.data_dir).resolve())}
        self.path = cache_dir() / "history-pairs" / f"{cache_key(parts)}.json"
        self.pairs: dict[str, dict] = self._read()
        self.added: dict[str, dict] = {}

    def _read(self) -> dict:
        try:
            return json.loads(self.path.read_text()).get("pairs", {})
        except (OSError, ValueError, AttributeError):
            return {}  # none yet, or unreadable: measured afresh and written anew

    @staticmethod
    def key(version: str, anchor: str, run: str, serving: str) -> str:
        return f"{version}>{anchor}|{run}|{serving}"

    def get(self, version: str, anchor: str, run: str, serving: str) -> KeptPair | None:
        found = self.pairs.get(self.key(version, anchor, run, serving))
        if not found:
            return None
        return KeptPair(tuple(found["p50"]), tuple(found["p95"]), found["row"], found["measured_at"])

    def holds(self, version: str, anchor: str, keys: list[tuple[str, str]]) -> bool:
        """Whether every (run, serving) of the plan is kept for this pair."""
        return all(self.get(version, anchor, run, serving) is not None for run, serving in keys)

    def put(self, version: str, anchor: str, run: str, serving: str, p50, p95, row: ResultRow) -> None:
        entry = {"p50": list(p50), "p95": list(p95), "row": rows_to_csv_text([row]), "measured_at": row.measured_at}
        self.pairs[self.key(version, anchor, run, serving)] = self.added[self.key(version, anchor, run, serving)] = entry

    def save(self) -> None:
        """Merge this run's pairs into the file (another run may have written it meanwhile)."""
        if not self.added:
            return
        with locked(self.path):
            write_text_atomic(self.path, json.dumps({"schema": 1, "pairs": {**self._read(), **self.added}}))


def kept_row(pair: KeptPair, folder: Path) -> ResultRow:
    """The row a kept pair holds, read back as any results CSV is."""
    path = folder / f"kept_{hashlib.sha256(pair.row_csv.encode()).hexdigest()[:12]}.csv"
    path.write_text(pair.row_csv)
    return read_rows(path)[0]
