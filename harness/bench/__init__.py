"""A bench run, step by step: plan (check the input), prepare (export, make variants), rounds (measure), rows.

`run_bench` ties them together under one progress bar; each step is its own module.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from harness.ab import Baselines
from harness.bench.plan import BenchInputs, BenchPlan, default_data_dir, plan_bench
from harness.bench.prepare import PreparedModel, load_calibration, make_variant, prepare_eval_sets, prepare_model
from harness.bench.rounds import FLOOR, measure_groups
from harness.bench.rows import model_rows
from harness.results import ResultRow, row_key
from harness.runner import Runner
from harness.runners import make_runner
from harness.spec import Suite
from harness.targets import TargetProfile

__all__ = ["BenchInputs", "BenchPlan", "BenchRun", "calibration_bar", "default_data_dir", "load_calibration", "make_variant",
           "plan_bench", "prepare_eval_sets", "run_bench"]


@dataclass(frozen=True)
class BenchRun:
    """A run's rows, and every child process's raw latencies behind them (the rows keep only statistics)."""

    rows: list[ResultRow]
    raw_latencies_ms: dict[tuple[str, str, str], tuple[tuple[float, ...], ...]]  # row key -> one tuple per process
    partner_rows: dict[tuple[str, str, str], ResultRow] = field(default_factory=dict)  # A/B: the recorded version, by row key
    ab_notes: dict[str, str] = field(default_factory=dict)  # model -> why it had no A/B partner, or how it was chosen

    def raw_json(self) -> str:
        return json.dumps({"schema": 1, "unit": "ms", "rows": [
            {"model": r.model, "variant": r.variant, "serving": r.serving, "measured_at": r.measured_at,
             "per_process_latencies_ms": [list(p) for p in self.raw_latencies_ms.get(row_key(r), ())]}
            for r in [*self.rows, *self.partner_rows.values()]]})


def run_bench(suite: Suite, target: TargetProfile, inputs: BenchInputs, console=None,
              runner: Runner | None = None, baselines: Baselines | None = None, cluster: str | None = None) -> BenchRun:
    """Export (cached), make each variant (cached), measure each in child processes; failures become rows."""
    plan = plan_bench(suite, target, inputs)
    own_runner = runner is None
    runner = runner or make_runner(target, cluster)
    try:
        runner.check_target(target)
        return _run(plan, suite, target, console, runner, baselines)
    finally:
        if own_runner:
            runner.close()


def _run(plan: BenchPlan, suite: Suite, target: TargetProfile, console, runner: Runner, baselines) -> BenchRun:
    remove_stale_workdirs()
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with tempfile.TemporaryDirectory(prefix=f"{WORKDIR_PREFIX}{os.getpid()}-") as tmp, \
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
        partners, ab_notes = _partners(plan, measurable, baselines, workdir, say, progress) if baselines else ([], {})
        by_model = measure_groups(plan, measurable + partners, runner, workdir, say, advance)
        rows: list[ResultRow] = []
        for model in prepared:
            rows += model_rows(plan, model, by_model.get(model.spec.name, {}))
        partner_rows = {(p.ab_partner_of, r.variant, r.serving): r for p in partners
                        for r in model_rows(plan, p, by_model[p.spec.name])}
    raw = {}
    for measured in by_model.values():
        for key, (measurement, _) in measured.items():
            if key[0] != FLOOR:
                raw[(key[0], key[1], target.scenario.serving_label(key[2]))] = measurement.per_process_latencies_ms
    return BenchRun(rows, raw, partner_rows, ab_notes)


def _partners(plan: BenchPlan, models: list[PreparedModel], baselines: Baselines, workdir: Path, say, progress):
    """The recorded version of each changed model, exported and with its variants made; notes for the others."""
    partners, notes = [], {}
    for model in models:
        name = model.spec.name
        needed, why = baselines.needs_partner(name, model.exported.sha256)
        notes[name] = why
        if not needed:
            continue
        say(f"rebuild {name} as recorded")
        partner = baselines.partner(name, workdir)
        if partner.spec is None or partner.spec.input_hw != model.spec.input_hw:
            notes[name] = partner.reason or f"{name}'s input size changed since {partner.rev[:12]}: no A/B"
            continue
        old = prepare_model(plan, partner.spec, model.eval_set, say, lambda: None, calibration_bar(progress, partner.spec.name))
        if old.exported is None or old.exported.sha256 == model.exported.sha256:
            notes[name] = f"{why}; rebuilt at {partner.rev[:12]}: " + (
                "the same export, nothing to A/B" if old.exported is not None else "its export failed, no A/B")
            continue
        old.ab_partner_of = name
        notes[name] = f"{why}: measured beside its version at {partner.rev[:12]} in alternating processes"
        partners.append(old)
    return partners, notes


WORKDIR_PREFIX = "harness-bench-"


def remove_stale_workdirs() -> list[Path]:
    """Scratch folders of earlier runs that were killed (their process is gone): removed, so none piles up."""
    import shutil

    removed = []
    for folder in Path(tempfile.gettempdir()).glob(f"{WORKDIR_PREFIX}*"):
        pid = folder.name[len(WORKDIR_PREFIX):].split("-", 1)[0]
        if not pid.isdigit() or _alive(int(pid)):
            continue
        shutil.rmtree(folder, ignore_errors=True)
        removed.append(folder)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


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
