"""One stage of a search: candidates measured as a bench run measures variants, in one lockstep group beside fp32.

Each stage is a real `run_bench` of a target derived from the user's: its variants are fp32, the candidates (named
variants under working names) and, where asked, the shipped variant; budgets are the target's, so every figure
(latency, memory from the kernel, quality on real images) and every verdict is the bench's own.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from harness.bench import BenchInputs, run_bench
from harness.bench.pairing import paired_ratios
from harness.gate.budget import FITS, memory_figure, verdict
from harness.gate.decide import PairedDecision, decide_paired
from harness.bench.plan import DecideAgainst, run_options
from harness.measure.backends import DEFAULT_BACKEND, run_name, tunable_options
from harness.results import ResultRow, RowKey
from harness.spec import Suite
from harness.targets import TargetProfile, with_changes
from harness.tune.space import Candidate

OBJECTIVES = ("p50", "p95", "memory", "throughput")


@dataclass(frozen=True)
class Stage:
    """How long and on how many images a stage measures."""

    name: str  # screen, survivors, finalists
    processes: int
    min_duration_s: float
    eval_images: int | None  # None: the whole evaluation set
    decide_pct: float | None = None  # set: more rounds while a candidate's margin over the shipped one is undecided
    decide_figure: str = "p50"  # the margin decided: p50, or p95 (--objective p95)


@dataclass
class Measured:
    """A candidate at the last stage it reached: its row, and why it went no further."""

    candidate: Candidate
    stage: str
    row: ResultRow | None
    rejected: str = ""  # over a budget, failed, or losing: the reason in words; "" still in the race
    fp32: ResultRow | None = None  # fp32 measured in the same group: what its ratios are against
    memory_mb: float | None = None  # the memory figure the target's budget names (model or whole process)
    vs_shipped: PairedDecision | None = None  # finalists: candidate / shipped, p50 from paired rounds
    p95_vs_shipped: PairedDecision | None = None
    is_shipped: bool = False  # the shipped variant's very settings: its row is the shipped one, measured once

    def value(self, objective: str) -> float | None:
        """The objective, larger is better: speed-up over fp32 (p50, paired), p95 speed-up, -memory, images/s."""
        row, fp32 = self.row, self.fp32
        if row is None or row.status != "ok":
            return None
        if objective == "p50":
            return row.speedup_vs_fp32
        if objective == "p95":
            return fp32.p95_ms / row.p95_ms if fp32 is not None and fp32.p95_ms and row.p95_ms else None
        if objective == "memory":
            return -self.memory_mb if self.memory_mb is not None else None
        return row.images_per_s


@dataclass(frozen=True)
class StageRun:
    """What one stage measured: each candidate, the fp32 row and the shipped variant's row beside them."""

    measured: dict[str, Measured]
    fp32: ResultRow | None
    shipped: ResultRow | None
    wall_s: float
    calibrations: dict = dataclasses.field(default_factory=dict)  # book entry -> what its int8 ranges follow from
    measurements: dict = dataclasses.field(default_factory=dict)  # RowKey -> Measurement: paired ratios between rows


def stage_target(target: TargetProfile, candidates: list[Candidate], stage: Stage, serving: str,
                 shipped: str | None) -> TargetProfile:
    """The user's target measuring fp32, the candidates and the shipped variant, in the children only, by a fixed
    recipe (every row the same processes and duration: their figures compare)."""
    names = tuple(c.name for c in candidates)
    variants = ("fp32", *((shipped,) if shipped and shipped != "fp32" else ()), *names)
    backends = (DEFAULT_BACKEND,) + ((shipped_backend(target, shipped),) if shipped else ())
    ship = names or variants[-1:]  # every candidate was the shipped one itself: the shipped variant ships
    return with_changes(target, variants=variants, ship=ship, backends=tuple(dict.fromkeys(backends)),
                        backends_if_installed=(),
                        named_variants=target.scenario.named_variants + tuple(c.named for c in candidates),
                        serving=(serving,), processes=stage.processes, min_duration_s=stage.min_duration_s,
                        recipe="fixed", gate_baseline="")


def measure_stage(suite: Suite, target: TargetProfile, inputs: BenchInputs, candidates: list[Candidate], stage: Stage,
                  serving: str, shipped: str | None, console=None, runner=None, places: int = 1) -> StageRun:
    """The candidates measured beside fp32 (and the shipped variant) in one bench run; each over-budget or failed one
    rejected with the bench's own reason. With `places` > 1 (a Ray cluster's nodes) the candidates are dealt into
    that many groups, each a copy of the model with its own fp32, each group on a node of its own, side by side."""
    import time

    started = time.perf_counter()
    model = suite.models[0]
    itself = [c for c in candidates if shipped and is_shipped(target, inputs, c, shipped)]
    candidates = [c for c in candidates if c not in itself]
    groups = [g for g in (candidates[i::places] for i in range(places)) if g] if places > 1 else [candidates]
    copies = [dataclasses.replace(model, name=f"{model.name}+{i}") for i in range(1, len(groups) + 1)] \
        if len(groups) > 1 else [model]
    home = {c.name: copy.name for copy, group in zip(copies, groups) for c in group}
    placed = [c.renamed(c.name, models=(home[c.name],)) if len(copies) > 1 else c for c in candidates]
    derived = stage_target(target, placed, stage, serving, shipped)
    decide = DecideAgainst(run_name(shipped_backend(target, shipped), shipped), stage.decide_pct, stage.decide_figure) \
        if shipped and stage.decide_pct is not None else None
    run = run_bench(dataclasses.replace(suite, models=copies), derived,
                    dataclasses.replace(inputs, eval_images=stage.eval_images, decide_against=decide), console,
                    runner=runner)
    by_key = {r.key: r for r in run.rows}
    fp32s = {copy.name: by_key.get(RowKey(copy.name, "fp32", serving, DEFAULT_BACKEND)) for copy in copies}
    shipped_row = by_key.get(RowKey(model.name, shipped, serving, shipped_backend(target, shipped))) if shipped else None
    out = {}
    for c in candidates:
        row = by_key.get(RowKey(home[c.name], c.name, serving, c.named.backend or DEFAULT_BACKEND))
        measured = Measured(c, stage.name, row, _rejection(row, target, stage), fp32=fp32s[home[c.name]],
                            memory_mb=memory_of(row, target) if row is not None and row.status == "ok" else None)
        if shipped_row is not None and row is not None and row.status == "ok" and shipped_row.status == "ok":
            measured.vs_shipped, measured.p95_vs_shipped = _against(run.measurements, shipped_row.key, row.key, target)
        out[c.name] = measured
    for c in itself:  # the shipped row stands for it: one configuration is one row, not two rows paired with each other
        out[c.name] = Measured(c, stage.name, shipped_row, _rejection(shipped_row, target, stage), fp32=fp32s[copies[0].name],
                               memory_mb=memory_of(shipped_row, target) if shipped_row is not None and
                               shipped_row.status == "ok" else None, is_shipped=True)
    return StageRun(out, fp32s[copies[0].name], shipped_row, time.perf_counter() - started, run.calibrations,
                    run.measurements)


def shipped_backend(target: TargetProfile, shipped: str) -> str:
    """The runtime the shipped variant is measured under: ONNX Runtime where it runs it, else its own."""
    variant = target.scenario.variant(shipped)
    return DEFAULT_BACKEND if DEFAULT_BACKEND in variant.backends else variant.backends[0]


def is_shipped(target: TargetProfile, inputs: BenchInputs, c: Candidate, shipped: str) -> bool:
    """Whether a candidate is the shipped variant itself: the same runtime, the same file (its base and, calibrated,
    its int8 settings) and the same session options (an option neither sets: the runtime's first choice, as in the
    shipped variant's known point)."""
    variant, backend = target.scenario.variant(shipped), shipped_backend(target, shipped)
    if (c.named.backend or DEFAULT_BACKEND) != backend or c.named.base != variant.base:
        return False
    suite_options = inputs.quantize
    if variant.needs_calibration and c.named.quantize_options(suite_options) != (
            variant.named.quantize_options(suite_options) if variant.named is not None else suite_options):
        return False
    unset = {k: choices[0] for k, choices in (tunable_options(backend, target.device.threads) or {}).items()}
    given = target.runtime.options_for(backend)
    return {**unset, **run_options(target, shipped, backend)} == {**unset, **given, **c.named.session_for(backend)}


def _rejection(row: ResultRow | None, target: TargetProfile, stage: Stage) -> str:
    """Why a candidate goes no further: not measured, or each budget it breaks, with the figure (on how many images)."""
    if row is None:
        return "not measured"
    if row.status != "ok":
        return f"failed: {row.status}"
    said = verdict(row, target)
    if said == FITS:
        return ""
    on = f" on {row.eval_images} screening images" if stage.eval_images and "accuracy" in said else ""
    return said + on


def _against(measurements: dict, shipped: RowKey, key: RowKey, target: TargetProfile):
    """candidate / shipped from the paired rounds of one lockstep group: p50 and p95, with their intervals."""
    ratios = paired_ratios(measurements[shipped], measurements[key]) if shipped in measurements and key in measurements \
        else None
    if ratios is None:
        return None, None
    return (decide_paired(ratios.p50, target.gate.latency_tolerance_pct),
            decide_paired(ratios.p95, target.gate.p95_tolerance_pct))


def memory_of(row: ResultRow | None, target: TargetProfile) -> float | None:
    return memory_figure(row, target) if row is not None else None
