"""A bench run, step by step: plan (check the input), prepare (export, make variants), rounds (measure), rows.

`run_bench` ties them together under one progress bar; each step is its own module.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from harness.bench.plan import BenchInputs, BenchPlan, default_data_dir, plan_bench
from harness.bench.prepare import load_calibration, make_variant, prepare_eval_sets, prepare_model
from harness.bench.rounds import FLOOR, measure_alternating
from harness.bench.rows import model_rows
from harness.results import ResultRow, row_key
from harness.runner import LocalRunner, Runner
from harness.spec import Suite
from harness.targets import TargetProfile

__all__ = ["BenchInputs", "BenchPlan", "BenchRun", "calibration_bar", "default_data_dir", "load_calibration", "make_variant",
           "plan_bench", "prepare_eval_sets", "run_bench"]


@dataclass(frozen=True)
class BenchRun:
    """A run's rows, and every child process's raw latencies behind them (the rows keep only statistics)."""

    rows: list[ResultRow]
    raw_latencies_ms: dict[tuple[str, str, str], tuple[tuple[float, ...], ...]]  # row key -> one tuple per process

    def raw_json(self) -> str:
        return json.dumps({"schema": 1, "unit": "ms", "rows": [
            {"model": r.model, "variant": r.variant, "serving": r.serving, "measured_at": r.measured_at,
             "per_process_latencies_ms": [list(p) for p in self.raw_latencies_ms.get(row_key(r), ())]}
            for r in self.rows]})


def run_bench(suite: Suite, target: TargetProfile, inputs: BenchInputs, console=None,
              runner: Runner | None = None) -> BenchRun:
    """Export (cached), make each variant (cached), measure each in child processes; failures become rows."""
    runner = runner or LocalRunner()
    runner.check_target(target)
    plan = plan_bench(suite, target, inputs)
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with tempfile.TemporaryDirectory(prefix="harness-bench-") as tmp, \
            Progress(*columns, console=console, transient=True) as progress:
        workdir = Path(tmp)
        bar = progress.add_task("loading evaluation images", total=plan.steps)

        def say(message: str) -> None:
            progress.update(bar, description=message)

        def advance() -> None:
            progress.advance(bar)

        eval_sets = prepare_eval_sets(plan, workdir)
        prepared = [prepare_model(plan, spec, eval_sets[(spec.input_hw, spec.num_classes)], say, advance,
                                  calibration_bar(progress, spec.name)) for spec in suite.models]
        measurable = [model for model in prepared if model.exported is not None]
        measured = measure_alternating(plan, measurable, runner, workdir, say, advance)
        rows: list[ResultRow] = []
        for model in prepared:
            rows += model_rows(plan, model, measured)
    raw = {}
    for key, (measurement, _) in measured.items():
        if key[0] != FLOOR:
            raw[(key[0], key[1], target.scenario.serving_label(key[2]))] = measurement.per_process_latencies_ms
    return BenchRun(rows, raw)


def calibration_bar(progress: Progress, name: str):
    """A second bar, over the calibration images, shown while they are fed and removed after."""
    task_id = None

    def update(done: int, total: int) -> None:
        nonlocal task_id
        if task_id is None:
            task_id = progress.add_task(f"calibrate {name}", total=total)
        progress.update(task_id, completed=done)
        if done >= total:
            progress.remove_task(task_id)
            task_id = None

    return update
