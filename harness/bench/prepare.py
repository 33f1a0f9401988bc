"""Before measuring: evaluation images written for the children, each model exported and its variants made."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from harness.bench.plan import BenchPlan, calibration_images_needed, calibration_split
from harness.data import normalize
from harness.errors import ExportError, ParityError, VariantError
from harness.export import ExportedModel, check_output_shape, export_spec, onnx_batch_dim
from harness.spec import ModelSpec
from harness.variants import VariantModel, variant_of
from harness.variants.book import CalibrationBook


@dataclass(frozen=True)
class EvalSet:
    """Evaluation images fitted to one input size, written where workers can load them."""

    images_u8: np.ndarray
    eval_path: Path
    sample_path: Path


@dataclass
class PreparedModel:
    """One suite model, exported and with its variants made, waiting to be measured."""

    spec: ModelSpec
    exported: ExportedModel | None  # None: the export failed (see failures)
    made: dict[str, VariantModel]
    eval_set: EvalSet
    failures: dict[str, str]  # variant -> why it could not be made
    ab_partner_of: str | None = None  # set: the recorded version of this suite model, measured beside it
    python: str | None = None  # the children's interpreter: None is this one; a side environment's for another runtime
    request_changes: dict = dataclasses.field(default_factory=dict)  # Request fields as recorded (threads, images at once)
    recorded_backend_options: dict = dataclasses.field(default_factory=dict)  # backend -> its [backend] table as recorded
    serving_failures: dict[str, str] = dataclasses.field(default_factory=dict)  # serving mode -> why it cannot be fed


def prepared_from_files(spec: ModelSpec, files: dict[str, Path], eval_set: EvalSet, how: str) -> PreparedModel:
    """A model whose files something else made (a revision's own harness): variant -> file, fp32 the export."""
    from harness.cache import file_sha256

    made = {v: VariantModel(v, p, p.stat().st_size / 1e6, how, (), True, file_sha256(p)) for v, p in files.items()}
    fp32 = made["fp32"]
    exported = ExportedModel(spec.name, fp32.path, fp32.sha256, fp32.file_mb, 0, None, True, how)
    return PreparedModel(spec, exported, made, eval_set, {})


def _unfeedable_servings(plan: BenchPlan, exported: ExportedModel) -> dict[str, str]:
    """A file exported with a static batch of 1 (every dynamic-batch path failed) cannot take one batched call."""
    n = plan.target.scenario.images_at_once
    if "batched" not in plan.target.scenario.serving or n == 1 or exported.parity is None:
        return {}
    if onnx_batch_dim(exported.path) is None:
        return {}
    return {"batched": f"the export has a static batch of 1 ({exported.how}): a batched call of {n} cannot be fed; "
                       f"the other serving modes are measured"}


def prepare_eval_sets(plan: BenchPlan, workdir: Path) -> dict[tuple, EvalSet]:
    sets = {}
    for spec in plan.suite.models:
        key = (spec.input_hw, spec.num_classes)
        if key in sets:
            continue
        images_u8, targets = plan.task.load(plan.inputs.data_dir, "val", plan.suite.ignore_index, spec.input_hw,
                                            spec.num_classes, limit=plan.inputs.eval_images)
        tag = f"{spec.input_hw[0]}x{spec.input_hw[1]}_{spec.num_classes}"
        eval_path, sample_path = workdir / f"eval_{tag}.npz", workdir / f"sample_{tag}.npy"
        images = normalize(images_u8)
        np.savez(eval_path, images=images, masks=targets.astype(np.int16))  # masks, or labels (N,) for classification
        np.save(sample_path, images[0])
        sets[key] = EvalSet(images_u8, eval_path, sample_path)
    return sets


def load_calibration(plan: BenchPlan, spec: ModelSpec) -> tuple[np.ndarray, np.ndarray]:
    """Calibration images and their targets (masks or labels: the accuracy fallback scores on them).

    The plan read them once per input size of its suite; a model outside the suite (`harness quantize
    ARCH` at another size) has them read now, once.
    """
    key = (spec.input_hw, spec.num_classes)
    if key not in plan.calibration:
        calibration_split(plan)
        plan.calibration[key] = plan.task.load(plan.inputs.calibration_dir, "train", plan.suite.ignore_index, *key,
                                               limit=calibration_images_needed(plan))
    return plan.calibration[key]


def make_variant(plan: BenchPlan, spec: ModelSpec, exported: ExportedModel, name: str,
                 say=lambda message: None, on_calibration=None) -> VariantModel:
    """One variant of the export; with the accuracy fallback when a limit is set and the variant supports it."""
    variant, inputs = plan.target.scenario.variant(name), plan.inputs
    options = variant.named.quantize_options(inputs.quantize) if variant.named is not None else inputs.quantize
    if not variant.needs_calibration:
        return variant_of(exported, variant, options, None)
    images_u8, targets = load_calibration(plan, spec)
    note = ""
    chosen = variant.named is not None and "nodes_to_exclude" in dict(variant.named.quantize)  # as written: kept
    if inputs.max_miou_drop is not None and variant.supports_fallback and not chosen:
        from harness.variants.fallback import find_fallback

        n = options.calibration_images  # the plan may hold more, for a named variant that asks for more
        found = find_fallback(exported, options, images_u8[:n], targets[:n], spec.num_classes, plan.suite.ignore_index,
                              inputs.max_miou_drop, on_progress=lambda message: say(f"fallback {spec.name}: {message}"),
                              task=plan.task.name)
        options, note = dataclasses.replace(options, nodes_to_exclude=found.nodes_in_float), found.describe()
    book = CalibrationBook(inputs.calibration_book) if inputs.calibration_book else None
    made = variant_of(exported, variant, options, images_u8,
                      on_progress=on_calibration or (lambda done, total: say(f"calibrate {spec.name}: image {done}/{total}")),
                      spec=spec, book=book)
    return dataclasses.replace(made, recipe=f"{made.recipe}; {note}") if note else made


def named_as_recorded(plan: BenchPlan, baselines, rev: str, workdir: Path) -> BenchPlan:
    """The plan with each of today's named variants as the target's file declared it at `rev` (the record's commit):
    an A/B partner's named variant is made with the settings it was recorded with."""
    from harness.targets import with_changes

    then = {n.name: n for n in baselines.named_at(rev, plan.target.source, workdir)}
    now = plan.target.scenario.named_variants
    if not then or all(then.get(n.name, n) == n for n in now):
        return plan
    named = tuple(then.get(n.name, n) for n in now)
    return dataclasses.replace(plan, target=with_changes(plan.target, named_variants=named))


def prepare_model(plan: BenchPlan, spec: ModelSpec, eval_set: EvalSet, say, advance, on_calibration) -> PreparedModel:
    """Export (cached) and make every variant (cached); what fails is kept as a reason, not raised."""
    say(f"build and export {spec.name}")
    try:
        exported = export_spec(spec, eval_set.images_u8)
    except (ParityError, ExportError) as e:  # this model's failure: its rows say why, the others are measured
        for _ in plan.variants:
            advance()
        why = f"export not faithful: {e}" if isinstance(e, ParityError) else f"export failed: {e}"
        return PreparedModel(spec, None, {}, eval_set, {v: why for v in plan.variants})
    finally:
        advance()
    check_output_shape(exported.path, spec, plan.task.output_shape(spec.num_classes, spec.input_hw))
    model = PreparedModel(spec, exported, {}, eval_set, {}, serving_failures=_unfeedable_servings(plan, exported))
    for name in plan.variants:
        named = plan.target.scenario.variant(name).named
        if named is not None and not named.applies_to(spec.name):
            advance()
            continue  # a named variant made for other models of the suite: no file, no row
        say(f"make {spec.name} {name}")
        try:
            model.made[name] = make_variant(plan, spec, exported, name, say=say, on_calibration=on_calibration)
        except VariantError as e:
            model.failures[name] = str(e)
        advance()
    return model
