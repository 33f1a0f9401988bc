"""One bench run as one object: record → measure → write → gate. The CLI and the Python API (`harness.bench`) both use it.

The CLI prints between the steps (tables, profiles); the API calls `run()` and gets the typed rows and the gate's
decisions back.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from harness.bench.narrow import Narrowing
from harness.bench.plan import BenchInputs
from harness.results import ResultRow, RowKey
from harness.spec import Suite
from harness.targets import TargetProfile


@dataclass(frozen=True)
class Record:
    """The committed record a run is gated against: its path, its rows (None: no record yet), rows git has but it lacks."""

    path: Path | None
    rows: list[ResultRow] | None
    lost: frozenset[RowKey] = frozenset()


@dataclass(frozen=True)
class BenchResult:
    """What a bench run measured and what the gate decided."""

    rows: list[ResultRow]
    gate: object  # harness.gate.GateReport
    run: object  # harness.bench.BenchRun: raw latencies, A/B partners, notes
    latest: Path | None = None  # results/latest/<target>.csv, when a results folder was given

    @property
    def passed(self) -> bool:
        return self.gate.passed


@dataclass
class BenchPipeline:
    """A suite measured under a target, written beside and gated against the record in `results_dir` (if any)."""

    suite: Suite
    target: TargetProfile
    inputs: BenchInputs
    results_dir: Path | None = None
    update: bool = False
    against: str | None = None  # A/B every model against its version at this git revision
    strict: bool = False
    force: bool = False
    narrowing: Narrowing = field(default_factory=Narrowing)
    full_target: TargetProfile | None = None  # the target before narrowing: which recorded rows were looked at
    cluster: str | None = None
    console: object = None  # rich Console for progress and notes; None: a quiet one on stderr

    def __post_init__(self):
        self.record = self.read_record()
        if self.guards_drift:  # a baseline the repository lacks fails now, not after minutes of measuring
            from harness.bench.drift import baseline_commit

            baseline_commit(self.suite.path, self.target.gate.baseline, self.target.where)
        if self.results_dir is not None and self.inputs.calibration_book is None:
            from harness.variants.book import FOLDER

            self.inputs = dataclasses.replace(self.inputs, calibration_book=Path(self.results_dir) / FOLDER)

    @property
    def comparing(self) -> bool:
        return bool(self.record.rows is not None or self.against) and not self.update

    @property
    def guards_drift(self) -> bool:
        """The target names a gate_baseline: every model is also A/B'd against it (not when recording)."""
        return bool(self.target.gate.baseline) and not self.update

    def read_record(self) -> Record:
        """The record's rows now, not after minutes of measuring: an unreadable one fails first."""
        if self.results_dir is None:
            return Record(None, None)
        from harness.files import check_first_record_place, writable_folder
        from harness.gate.ab import committed_keys
        from harness.results import read_rows

        path = writable_folder(self.results_dir, "--results-dir") / f"{self.target.name}.csv"
        rows = read_rows(path) if path.is_file() else None
        if rows is None:
            check_first_record_place(path.parent)
        return Record(path, rows, frozenset(committed_keys(path) - {r.key for r in rows or []}))

    def measure(self):
        """Export, make variants, measure in child processes (and each changed model's recorded version beside it)."""
        from harness.bench import run_bench
        from harness.gate.ab import Baselines

        baselines = Baselines(self.suite.path, self.record.rows or [], self.against) \
            if self.comparing or self.guards_drift else None
        return run_bench(self.suite, self.target, self.inputs, console=self._console(), baselines=baselines,
                         cluster=self.cluster)

    def write(self, run) -> Path | None:
        """This run to results/latest/<target>.csv (and .raw.json); the record too when asked or when there is none."""
        if self.results_dir is None:
            return None
        from rich.markup import escape

        from harness.files import write_text_atomic
        from harness.results import rows_to_csv_text

        latest = Path(self.results_dir) / "latest" / f"{self.target.name}.csv"
        write_text_atomic(latest, rows_to_csv_text(run.rows))  # harness compare RECORD LATEST shows the change
        write_text_atomic(latest.with_suffix(".raw.json"), run.raw_json())
        if not (self.update or self.record.rows is None):
            return latest
        console, path = self._console(), self.record.path
        if not any(r.status == "ok" for r in run.rows) and not self.force:
            console.print(f"[red]not recorded[/red]: every row failed, so {escape(str(path))} would hold no figure to "
                          f"gate against; fix the failures above and rerun, or pass --force to record them anyway")
            return latest
        self.narrowing.update_record(path, run.rows, on_wait=console.print)
        self._record_calibrations(run.calibrations)
        console.print(f"{'updated' if self.record.rows is not None else 'recorded'} {escape(str(path))}"
                      f"{'' if self.record.rows is not None else ' (first record: nothing to compare with)'}")
        return latest

    def _record_calibrations(self, calibrations: dict) -> None:
        """The ranges each recorded int8 file was made from, into the book beside the record (results/calibration)."""
        from rich.markup import escape

        from harness.variants.book import CalibrationBook
        from harness.variants.quantize import measured_ranges

        book = CalibrationBook(self.inputs.calibration_book)
        for model, settings in calibrations.items():
            if book.lookup(model, settings) is not None:
                continue  # made from the book's own ranges
            ranges, path = measured_ranges(settings), escape(str(book.file(model, settings)))
            if ranges is None:  # its int8 file came from the cache, its ranges' entry since removed
                self._console().print(f"[yellow]note[/yellow]: calibration ranges of {escape(model)} not written to {path}: "
                                      f"the cache holds the int8 file but not them (rerun --update with an empty HARNESS_CACHE_DIR)")
            elif book.record(model, settings, ranges):
                self._console().print(f"calibration ranges of {escape(model)} written to {path}")

    def gate(self, run, latest: Path | None = None):
        """The gate's decisions on this run: budgets always, the record's rows when there is one to compare with."""
        from harness.files import write_text_atomic
        from harness.gate import Scope, run_gate

        compare, full = self.comparing, self.full_target or self.target
        evidence = run.evidence if compare else dataclasses.replace(run.evidence, ab_notes={})
        scope = Scope(self.strict, self.record.lost if compare else frozenset(),
                      lambda key: self.narrowing.selects(key, full), self.narrowing.describe())
        report = run_gate(run.rows, (self.record.rows or []) if compare else [], self.target, evidence, scope)
        if latest is not None:
            write_text_atomic(latest.with_suffix(".gate.json"), report.to_json())
        return report

    def run(self) -> BenchResult:
        measured = self.measure()
        latest = self.write(measured)
        return BenchResult(measured.rows, self.gate(measured, latest), measured, latest)

    def _console(self):
        if self.console is None:
            from harness.report.render import make_console

            self.console = make_console(stderr=True)
        return self.console
