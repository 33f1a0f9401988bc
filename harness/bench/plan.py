"""What a bench run will measure, checked before anything is measured: suite × variants × serving modes."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from pathlib import Path

from harness.measure.backends import DEFAULT_BACKEND, missing_extra, run_name, split_run
from harness.errors import HarnessError
from harness.measure.machine import MachineFingerprint, machine_fingerprint
from harness.variants.quantize import QuantizeOptions
from harness.spec import Suite
from harness.targets import TargetProfile
from harness.tasks import Task, get_task


@dataclass(frozen=True)
class DecideAgainst:
    """harness tune's finalists: more rounds (up to gate_ab_max_processes) while a shipped row's paired ratio to
    `run` is undecided at `min_effect_pct` (harness.bench.enough)."""

    run: str  # the run the shipped rows are judged against: the variant the tuned one must beat
    min_effect_pct: float
    figure: str = "p50"  # or p95


@dataclass(frozen=True)
class BenchInputs:
    """Everything a bench run reads besides the suite's models and the target."""

    data_dir: Path
    calibration_dir: Path | None
    quantize: QuantizeOptions
    max_miou_drop: float | None = None  # set: int8-static leaves the fewest nodes in float to stay within it
    backends_only: tuple[str, ...] = ()  # bench --backend: only these backends' rows, plus ONNX Runtime's fp32 reference
    calibration_book: Path | None = None  # results/calibration: int8-static from its committed ranges where they match
    eval_images: int | None = None  # the first N evaluation images only (harness tune's screening); None: all
    decide_against: DecideAgainst | None = None  # harness tune's finalists: measured until their margins are decided


@dataclass(frozen=True)
class BenchPlan:
    suite: Suite
    target: TargetProfile
    inputs: BenchInputs
    task: Task
    variants: tuple[str, ...]  # the files to make, fp32 first: every ratio's reference
    runs: tuple[str, ...] = ()  # what is measured: run_name(backend, variant), ONNX Runtime's fp32 first
    git_commit: str = ""  # the suite's commit, recorded with every row (the gate's A/B rebuilds from it)
    onnx_version: str = ""  # the exporter's onnx (the measuring child never imports onnx)
    # (input_hw, num_classes) -> calibration images and targets, read once and checked before any export
    calibration: dict = field(default_factory=dict)
    machine: MachineFingerprint | None = None  # the controller's; a measured row takes its child's instead
    notes: tuple[str, ...] = ()  # what the run left out and why (an optional backend not installed)

    @property
    def input_sizes(self) -> list[tuple[int, int]]:
        return sorted({spec.input_hw for spec in self.suite.models})

    @property
    def steps(self) -> int:
        """Progress-bar steps: each export and variant made, then each child process run."""
        scenario = self.target.scenario
        floors = len(self.input_sizes) * len(self.backends)
        per_round = floors + len(self.suite.models) * len(self.runs) * len(scenario.in_children)
        served = len(self.suite.models) * len(self.served_runs) if "http" in scenario.serving else 0
        return len(self.suite.models) * (1 + len(self.variants)) + scenario.processes * per_round + served

    @property
    def backends(self) -> tuple[str, ...]:
        """The backends this run measures under (an optional one only where installed), ONNX Runtime first."""
        return tuple(dict.fromkeys(split_run(r)[0] for r in self.runs))

    @property
    def served_runs(self) -> tuple[str, ...]:
        """The runs `harness serve` can stand up: the service runs ONNX Runtime."""
        return tuple(r for r in self.runs if split_run(r)[0] == DEFAULT_BACKEND)


def plan_runs(target: TargetProfile, variants: tuple[str, ...],
              backends_only: tuple[str, ...] = ()) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Every (backend, variant) the target asks for that the backend can run, and notes on what is left out.

    A listed backend whose extra is missing, or a variant no listed backend runs, is refused in one line; an
    optional backend (backends_if_installed) that is not installed is left out with its variants, and a note."""
    for backend in target.scenario.backends:
        why = missing_extra(backend)
        if why:
            raise HarnessError(f"{target.where}: {why} (or drop it from backends)")
    absent = {b: why for b in target.scenario.backends_if_installed if (why := missing_extra(b))}
    backends = target.scenario.backends + tuple(b for b in target.scenario.backends_if_installed if b not in absent)
    notes = tuple(f"{target.where} adds backend {b} where it is installed; not here: {why}" for b, why in absent.items())
    kept, pinned = [], {}
    for variant in variants:
        named = target.scenario.variant(variant).named
        if named is not None and named.backend:  # a named variant's own runtime, measured whether listed or not
            if why := missing_extra(named.backend):
                raise HarnessError(f"{target.where}: variant {variant} runs under {named.backend}: {why}")
            kept.append(variant)
            pinned[variant] = named.backend
            continue
        runnable = target.scenario.variant(variant).backends
        if set(runnable) & set(backends):
            kept.append(variant)
        elif not set(runnable) & set(absent):
            raise HarnessError(f"{target.where}: variant {variant} runs under {' or '.join(runnable)} only; add it to "
                               f"backends or drop the variant")
    if any(target.scenario.variant(v).base == "int8-nncf" for v in kept) and importlib.util.find_spec("nncf") is None:
        raise HarnessError(f"{target.where}: variant int8-nncf needs NNCF, in the openvino extra: "
                           f"pip install 'harness[openvino]'")
    backends += tuple(b for b in dict.fromkeys(pinned.values()) if b not in backends)
    runs = tuple(run_name(b, v) for b in backends for v in kept if pinned.get(v, b) == b
                 and b in target.scenario.variant(v).backends
                 # fp32 is every target's reference under ONNX Runtime; under another backend it is a row like any
                 # other, measured when the target (or a narrowed --variant) lists it
                 and (v != "fp32" or b == DEFAULT_BACKEND or "fp32" in target.scenario.variants))
    if backends_only:  # ONNX Runtime's fp32 stays: every ratio, quality drop and agreement is against it
        runs = tuple(r for r in runs if split_run(r)[0] in backends_only or r == run_name(DEFAULT_BACKEND, "fp32"))
    return runs, notes


def plan_bench(suite: Suite, target: TargetProfile, inputs: BenchInputs) -> BenchPlan:
    """The plan, or one HarnessError naming what is wrong with the input."""
    import onnx

    from harness.gate.ab import current_commit

    variants = ("fp32",) + tuple(v for v in target.scenario.variants if v != "fp32")
    runs, notes = plan_runs(target, variants, inputs.backends_only)  # unknown variant names fail here
    variants = tuple(v for v in variants if any(split_run(r)[1] == v for r in runs))  # an absent backend's: not made
    needs_calibration = [target.scenario.variant(v).needs_calibration for v in variants]
    import onnxruntime

    plan = BenchPlan(suite, target, inputs, get_task(suite.task), variants, runs, current_commit(suite.path),
                     onnx.__version__, machine=machine_fingerprint(onnxruntime.__version__), notes=notes)
    if any(needs_calibration):
        calibration_split(plan)
        for key in {(spec.input_hw, spec.num_classes) for spec in suite.models}:
            plan.calibration[key] = plan.task.load(inputs.calibration_dir, "train", suite.ignore_index, *key,
                                                   limit=calibration_images_needed(plan))
    check_batch_feedable(suite, target)
    check_servable(plan)
    check_user_onnx(plan)
    return plan


def calibration_images_needed(plan: BenchPlan) -> int:
    """The most calibration images any variant of the plan asks for (a named variant may ask for more)."""
    scenario, options = plan.target.scenario, plan.inputs.quantize
    return max([options.calibration_images] + [scenario.variant(v).named.quantize_options(options).calibration_images
                                               for v in plan.variants if scenario.variant(v).named is not None])


def run_options(target: TargetProfile, variant: str, backend: str, target_options: dict | None = None) -> dict:
    """The options a row of `variant` runs with under `backend`: the target's (or `target_options`, as recorded), a
    named variant's own over them."""
    named = target.scenario.variant(variant).named
    return {**(target.runtime.options_for(backend) if target_options is None else target_options),
            **(named.session_for(backend) if named is not None else {})}


def check_servable(plan: BenchPlan) -> None:
    """Serving "http" needs the serve extra and a segmentation suite (the service answers with a mask)."""
    if "http" not in plan.target.scenario.serving:
        return
    import importlib.util

    if importlib.util.find_spec("uvicorn") is None:
        raise HarnessError(f"{plan.target.where} serves over HTTP, which needs the serve extra: "
                           f"pip install 'harness[serve]' (or drop \"http\" from serving)")
    if plan.suite.task != "segmentation":
        raise HarnessError(f"{plan.target.where} serves over HTTP (POST /segment answers with a mask), but suite "
                           f"{plan.suite.path} is a {plan.suite.task} suite: use a target without \"http\" serving")


def check_user_onnx(plan: BenchPlan) -> None:
    """A user's ONNX file is loaded in ONNX Runtime, its output shape checked and its logits on a few evaluation
    images found finite, before anything is measured."""
    from harness.export import PARITY_IMAGES, check_finite_outputs, check_onnx_loads

    for spec in plan.suite.models:
        if spec.onnx is not None:
            check_onnx_loads(spec.onnx, spec, plan.task.output_shape(spec.num_classes, spec.input_hw))
            images_u8, _ = plan.task.load(plan.inputs.data_dir, "val", plan.suite.ignore_index, spec.input_hw,
                                          spec.num_classes, limit=PARITY_IMAGES)
            check_finite_outputs(spec.onnx, spec, images_u8)


def calibration_split(plan: BenchPlan):
    """The calibration split on disk; it must exist and must not be the evaluation data."""
    suite, inputs = plan.suite, plan.inputs
    if inputs.calibration_dir is None:
        raise HarnessError("int8-static needs calibration images: set [calibration] dir in the suite or pass --calibration-data")
    split = plan.task.find_split(inputs.calibration_dir, "train", suite.ignore_index)
    evaluation = plan.task.find_split(inputs.data_dir, "val", suite.ignore_index)
    if evaluation.root.resolve() == split.root.resolve():
        raise HarnessError(f"calibration data {split.root} is the evaluation data: calibrate on other images")
    return split


def check_batch_feedable(suite: Suite, target: TargetProfile) -> None:
    """A user's ONNX file with a fixed batch axis cannot take the target's batched calls."""
    from harness.export import check_onnx_input, onnx_batch_dim

    images_at_once = target.scenario.images_at_once
    if "batched" not in target.scenario.serving or images_at_once == 1:
        return
    for spec in suite.models:
        if spec.onnx is None:
            continue
        check_onnx_input(spec.onnx, spec)
        fixed = onnx_batch_dim(spec.onnx)
        if fixed is not None and fixed != images_at_once:
            raise HarnessError(f"{spec.onnx} has a fixed batch of {fixed} but target {target.name} sends batches of "
                               f"{images_at_once}: export it with a dynamic batch axis, or use a target without "
                               f"batched serving")


def default_data_dir(suite: Suite, data_arg: str | None) -> Path:
    if data_arg:
        return Path(data_arg)
    if suite.data_dir is None:
        raise HarnessError(f"suite {suite.path} names no [data] dir: pass --data a folder holding images/ and masks/")
    return suite.data_dir
