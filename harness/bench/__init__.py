"""A bench run, step by step: plan (check the input), prepare (export, make variants), rounds (measure), rows.

`run_bench` ties them together under one progress bar; each step is its own module.
"""

from __future__ import annotations

import dataclasses
import json
import os
import statistics
import sys
import tempfile
import types
from dataclasses import dataclass, field
from pathlib import Path

from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from harness.measure.backends import DEFAULT_BACKEND, backend_module, installed_version, options_text, plugin_module
from harness.gate import Evidence
from harness.gate.ab import Baselines, machine_tag
from harness.gate.latency import configuration_now
from harness.bench.plan import BenchInputs, BenchPlan, default_data_dir, plan_bench, run_options, split_run
from harness.bench.prepare import (PreparedModel, load_calibration, make_variant, named_as_recorded, prepare_eval_sets,
                                   prepare_model)
from harness.bench.drift import baseline_partners
from harness.bench.rounds import measure_groups
from harness.bench.yardsticks import FLOOR
from harness.bench.rows import model_rows
from harness.cache import file_sha256
from harness.bench.pairing import paired_ratios, spread_pct
from harness.gate.side_runtime import side_runtime
from harness.results import ResultRow, RowKey
from harness.runners import Runner
from harness.runners import make_runner
from harness.spec import Suite
from harness.targets import TargetProfile
from harness.variants.registry import book_entry

__all__ = ["BenchInputs", "BenchPlan", "BenchRun", "calibration_bar", "default_data_dir", "load_calibration", "make_variant",
           "plan_bench", "prepare_eval_sets", "run_bench"]


@dataclass(frozen=True)
class BenchRun:
    """A run's rows, and every child process's raw latencies behind them (the rows keep only statistics)."""

    rows: list[ResultRow]
    raw_latencies_ms: dict[RowKey, tuple[tuple[float, ...], ...]]  # row key -> one tuple per process
    evidence: Evidence = field(default_factory=Evidence)  # the A/B partners and their paired ratios, for the gate
    notes: tuple[str, ...] = ()  # what the plan left out and why (an optional backend not installed)
    files: dict = field(default_factory=dict)  # (model, run name) -> the measured file (in the cache): for --profile
    calibrations: dict = field(default_factory=dict)  # model -> what its int8 ranges follow from (the book's settings)
    measurements: dict = field(default_factory=dict)  # RowKey -> its Measurement (children's blocks: paired ratios)

    def raw_json(self) -> str:
        return json.dumps({"schema": 1, "unit": "ms", "rows": [
            {"model": r.model, "variant": r.variant, "serving": r.serving, "backend": r.backend, "measured_at": r.measured_at,
             "per_process_latencies_ms": [list(p) for p in self.raw_latencies_ms.get(r.key, ())]}
            for r in [*self.rows, *self.evidence.partner_rows.values()]]})


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

        def say(message: str) -> None:  # messages hold names and graph nodes: shown as written, not as markup
            progress.update(bar, description=escape(message))

        def advance() -> None:
            progress.advance(bar)

        eval_sets = prepare_eval_sets(plan, workdir)
        prepared = [prepare_model(plan, spec, eval_sets[(spec.input_hw, spec.num_classes)], say, advance,
                                  calibration_bar(progress, spec.name)) for spec in suite.models]
        measurable = [model for model in prepared if model.exported is not None]
        partners, ab_notes, explained = _partners(plan, measurable, baselines, workdir, say, progress) if baselines \
            else ([], {}, {})
        drift, drift_notes = baseline_partners(plan, measurable, baselines, workdir, say, calibration_bar(
            progress, "gate_baseline")) if baselines and plan.target.gate.baseline else ([], {})
        by_model = measure_groups(plan, measurable + partners + drift, runner, workdir, say, advance)
        rows: list[ResultRow] = []
        for model in prepared:
            rows += model_rows(plan, model, by_model.get(model.spec.name, {}))
        partner_rows = {r.key._replace(model=p.ab_partner_of): r for p in partners
                        for r in model_rows(plan, p, by_model[p.spec.name])}
        baseline_rows = {r.key._replace(model=p.ab_partner_of): r for p in drift
                         for r in model_rows(plan, p, by_model[p.spec.name])}
    raw, references, measurements = {}, [], {}
    for measured in {id(m): m for m in by_model.values()}.values():  # groups share one dict: each child counted once
        for key, (measurement, _) in measured.items():
            if key[0] != FLOOR:
                backend, variant = split_run(key[1])
                raw[RowKey(key[0], variant, key[2], backend)] = measurement.per_process_latencies_ms
                measurements[RowKey(key[0], variant, key[2], backend)] = measurement
                references += measurement.per_process_reference_ms
    paired = partner_ratios(partners, by_model)
    drift_paired = {key: (baseline_rows[key], ratios) for key, ratios in partner_ratios(drift, by_model).items()
                    if key in baseline_rows}
    files = {(m.spec.name, r): m.made[split_run(r)[1]].path for m in measurable for r in plan.runs
             if split_run(r)[1] in m.made}
    calibrations = {book_entry(m.spec.name, plan.target.scenario.variant(v.variant)): v.calibration
                    for m in measurable for v in m.made.values() if v.calibration}
    evidence = Evidence(partner_rows, ab_notes, paired, host_noise(references), explained, drift_paired, drift_notes)
    return BenchRun(rows, raw, evidence, plan.notes, files, calibrations, measurements)


def partner_ratios(partners: list[PreparedModel], by_model: dict) -> dict:
    """RowKey of the suite model -> each partner's paired ratios against it (the suite model's / the partner's)."""
    paired = {}
    for p in partners:
        for (name, variant, serving), (measurement, _) in by_model[p.spec.name].items():
            mine = by_model[p.ab_partner_of].get((p.ab_partner_of, variant, serving)) if name == p.spec.name else None
            ratios = paired_ratios(measurement, mine[0]) if mine and not (measurement.error or mine[0].error) else None
            if ratios is not None:
                backend, plain = split_run(variant)
                paired[RowKey(p.ab_partner_of, plain, serving, backend)] = ratios
    return paired


def host_noise(references_ms: list[float]) -> str:
    """The reference workload (timed alike in every measuring child) across the run's children, in words."""
    values = sorted(v for v in references_ms if v)
    spread = spread_pct(values)
    if spread is None:
        return "host noise not measured (fewer than 2 children timed the reference workload)"
    return (f"host noise: the reference workload took {values[0]:.2f}-{values[-1]:.2f} ms across {len(values)} children "
            f"(±{spread:.0f} % around its median {statistics.median(values):.2f} ms)")


def _partners(plan: BenchPlan, models: list[PreparedModel], baselines: Baselines, workdir: Path, say, progress):
    """The recorded configuration of each model whose latency inputs changed, ready to measure beside it; notes;
    and the (model, variant) files whose difference from the record this machine explains."""
    partners, notes, explained = [], {}, {}
    runtime = configuration_now(plan.target, plan.machine.ort_version)
    installed = {b: installed_version(b) for b in plan.backends if b != DEFAULT_BACKEND}
    options = {b: options_text(plan.target.runtime.options_for(b)) for b in plan.backends if b != DEFAULT_BACKEND}
    named = {run: run_options(plan.target, *reversed(split_run(run))) for run in plan.runs
             if plan.target.scenario.variant(split_run(run)[1]).named is not None}
    for model in models:
        name = model.spec.name
        kinds, why = baselines.changes(name, {v: m.sha256 for v, m in model.made.items()}, runtime, installed, options,
                                       named)
        notes[name] = why
        if not kinds:
            continue
        old, said = _recorded_version(plan, model, baselines, workdir, say, progress, explained) if "files" in kinds \
            else (dataclasses.replace(model, spec=dataclasses.replace(model.spec, name=f"{name}@recorded")), "")
        if old is None:
            notes[name] = f"{why}; {said}"
            continue
        if "runtime" in kinds:
            recorded = baselines.recorded[name]
            pins = {backend_module(DEFAULT_BACKEND).PACKAGE: recorded.ort_version or plan.machine.ort_version,
                    **{backend_module(b).PACKAGE: old for b, (old, _) in baselines.upgraded(name, installed).items()}}
            say(f"side environment for {', '.join(f'{p} {v}' for p, v in pins.items())}")
            side = side_runtime(pins, recorded.numpy_version, plugins=tuple(b for b in plan.backends if plugin_module(b)))
            if side.python is None:
                notes[name] = f"{why}; {side.reason}: no A/B"
                continue
            old.python = side.python
        if "options" in kinds:
            old.request_changes = baselines.recorded_options(name)
            old.recorded_backend_options = {b: json.loads(recorded) for b, (recorded, _) in
                                            baselines.options_changed(name, options).items()}
            old.recorded_backend_options[DEFAULT_BACKEND] = {**plan.target.runtime.options_for(DEFAULT_BACKEND),
                                                             **baselines.recorded_session_options(name)}
            old.recorded_backend_options.update({run: recorded for run, (recorded, _) in
                                                 baselines.run_options_changed(name, named).items()})
        old.ab_partner_of = name
        notes[name] = f"{why}: measured beside its recorded configuration{said} in lockstep children"
        partners.append(old)
    return partners, notes, explained


def _recorded_version(plan, model: PreparedModel, baselines: Baselines, workdir: Path, say, progress, explained: dict):
    """The model as the record's commit makes it on this machine, or None and why not.

    First the suite entry, checkpoint and factory at that commit, with today's harness; when that gives
    today's very files, the variants that differ from the record are made again by that commit's own
    harness code. A file that code makes identically here explains the record's difference: this
    machine (calibration on another CPU), not a change; it goes to `explained`."""
    name = model.spec.name
    say(f"rebuild {name} as recorded")
    partner = baselines.partner(name, workdir)
    if partner.spec is None or partner.spec.input_hw != model.spec.input_hw:
        return None, partner.reason or f"{name}'s input size changed since {partner.rev[:12]}: no A/B"
    old = prepare_model(named_as_recorded(plan, baselines, partner.rev, workdir), partner.spec, model.eval_set, say,
                        lambda: None, calibration_bar(progress, partner.spec.name))
    if old.exported is None:
        return None, f"rebuilt at {partner.rev[:12]}: its export failed, no A/B"
    if {v: m.sha256 for v, m in old.made.items()} != {v: m.sha256 for v, m in model.made.items()}:
        return old, f" (files at {partner.rev[:12]})"
    machine = machine_tag(plan.machine)
    remade, explained_here = {}, False
    for variant, made in model.made.items():
        if baselines.variant_sha(name, variant) in (None, "", made.sha256) or \
                plan.target.scenario.variant(variant).named is not None:  # made by the target's settings, not the code's
            continue
        say(f"make {name} {variant} with the harness of {partner.rev[:12]}")
        path = baselines.variant_by_recorded_harness(name, variant, partner.rev, workdir, machine)
        if path is None:
            return None, (f"rebuilt at {partner.rev[:12]}: the same files; {variant} could not be made by that commit's "
                          f"harness here: no A/B, gated against the record")
        sha = file_sha256(path)
        if sha == made.sha256:
            explained_here = True
            explained[(name, variant)] = (f"{partner.rev[:12]}'s own code makes this very {variant} file on this machine: "
                                          f"its difference from the record is the machine's (e.g. calibration on another "
                                          f"CPU), not a change")
        else:
            remade[variant] = dataclasses.replace(made, path=path, sha256=sha, file_mb=path.stat().st_size / 1e6, cached=True)
    if not remade:
        how = " by its own harness" if explained_here else ""
        return None, f"rebuilt at {partner.rev[:12]}{how}: the same files here, nothing to A/B"
    old.made = {**old.made, **remade}
    return old, f" ({', '.join(remade)} made by the harness at {partner.rev[:12]})"


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
            task_id = progress.add_task(escape(f"calibrate {name}"), total=total)
        progress.update(task_id, completed=done)
        if done >= total:
            progress.remove_task(task_id)
            task_id = None

    return update


class _CallablePackage(types.ModuleType):
    """`harness.bench(...)` is the Python API (harness.bench.api), and `harness.bench` is also this package: once it is
    imported, Python binds the package to that name, so the package itself answers the call."""

    def __call__(self, model, target="watch", **options):
        from harness.bench.api import bench

        return bench(model, target, **options)


sys.modules[__name__].__class__ = _CallablePackage
