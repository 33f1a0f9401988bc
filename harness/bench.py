"""A bench run: every model of a suite, exported and proven, each variant measured under one target."""

from __future__ import annotations

import dataclasses
import datetime as dt
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from harness.data import find_class_split, find_split, load_eval_split, normalize
from harness.budget import verdict
from harness.errors import HarnessError, ParityError, VariantError
from harness.export import ExportedModel, export_spec
from harness.measure import Measurement, build_request, combine, reference_model, run_worker, trivial_model
from harness.metrics import quality_from_confusion
from harness.quantize import QuantizeOptions, VariantModel, variant_of
from harness.results import ResultRow, machine_fingerprint
from harness.spec import ModelSpec, Suite
from harness.targets import TargetProfile


@dataclass(frozen=True)
class EvalSet:
    """Evaluation images fitted to one input size, written where workers can load them."""

    images_u8: np.ndarray
    eval_path: Path
    sample_path: Path


@dataclass(frozen=True)
class BenchInputs:
    """Everything a bench run reads besides the suite's models and the target."""

    data_dir: Path
    calibration_dir: Path | None
    quantize: QuantizeOptions
    max_miou_drop: float | None = None  # set: int8-static leaves the fewest nodes in float to stay within it


def prepare_eval_sets(suite: Suite, data_dir: Path, workdir: Path) -> dict[tuple, EvalSet]:
    sets = {}
    for spec in suite.models:
        key = (spec.input_hw, spec.num_classes)
        if key in sets:
            continue
        images_u8, masks = load_eval_split(data_dir, "val", suite.task, suite.ignore_index, spec.input_hw, spec.num_classes)
        tag = f"{spec.input_hw[0]}x{spec.input_hw[1]}_{spec.num_classes}"
        eval_path, sample_path = workdir / f"eval_{tag}.npz", workdir / f"sample_{tag}.npy"
        images = normalize(images_u8)
        np.savez(eval_path, images=images, masks=masks.astype(np.int16))  # masks, or labels (N,) for classification
        np.save(sample_path, images[0])
        sets[key] = EvalSet(images_u8, eval_path, sample_path)
    return sets


def check_batch_feedable(suite: Suite, target: TargetProfile) -> None:
    """A user's ONNX file with a fixed batch axis cannot take the target's batched calls."""
    from harness.export import check_onnx_input, onnx_batch_dim

    if "batched" not in target.serving or target.images_at_once == 1:
        return
    for spec in suite.models:
        if spec.onnx is None:
            continue
        check_onnx_input(spec.onnx, spec)
        fixed = onnx_batch_dim(spec.onnx)
        if fixed is not None and fixed != target.images_at_once:
            raise HarnessError(f"{spec.onnx} has a fixed batch of {fixed} but target {target.name} sends batches of "
                               f"{target.images_at_once}: export it with a dynamic batch axis, or use a target without "
                               f"batched serving")


def calibration_split(suite: Suite, inputs: BenchInputs):
    if inputs.calibration_dir is None:
        raise HarnessError("int8-static needs calibration images: set [calibration] dir in the suite or pass --calibration-data")
    if suite.task == "classification":
        split, evaluation = find_class_split(inputs.calibration_dir, "train"), find_class_split(inputs.data_dir, "val")
    else:
        split = find_split(inputs.calibration_dir, "train", suite.ignore_index)
        evaluation = find_split(inputs.data_dir, "val", suite.ignore_index)
    if evaluation.root.resolve() == split.root.resolve():
        raise HarnessError(f"calibration data {split.root} is the evaluation data: calibrate on other images")
    return split


def load_calibration(suite: Suite, inputs: BenchInputs, spec: ModelSpec) -> tuple[np.ndarray, np.ndarray]:
    """Calibration images and their targets (masks or labels: the accuracy fallback scores on them)."""
    calibration_split(suite, inputs)
    return load_eval_split(inputs.calibration_dir, "train", suite.task, suite.ignore_index, spec.input_hw,
                           spec.num_classes, limit=inputs.quantize.calibration_images)


def make_variant(suite: Suite, inputs: BenchInputs, spec: ModelSpec, exported: ExportedModel, variant: str,
                 say=lambda message: None, on_calibration=None) -> VariantModel:
    """One variant of the export; int8-static with the accuracy fallback when a limit is set."""
    if variant != "int8-static":
        return variant_of(exported, variant, inputs.quantize, None)
    images_u8, masks = load_calibration(suite, inputs, spec)
    options, note = inputs.quantize, ""
    if inputs.max_miou_drop is not None:
        from harness.fallback import find_fallback

        found = find_fallback(exported, options, images_u8, masks, spec.num_classes, suite.ignore_index,
                              inputs.max_miou_drop, on_progress=lambda message: say(f"fallback {spec.name}: {message}"),
                              task=spec.task)
        options, note = dataclasses.replace(options, nodes_to_exclude=found.nodes_in_float), found.describe()
    made = variant_of(exported, variant, options, images_u8,
                      on_progress=on_calibration or (lambda done, total: say(f"calibrate {spec.name}: image {done}/{total}")))
    return dataclasses.replace(made, recipe=f"{made.recipe}; {note}") if note else made


@dataclass
class PreparedModel:
    """One suite model, exported and with its variants made, waiting to be measured."""

    spec: ModelSpec
    exported: ExportedModel
    made: dict[str, VariantModel]
    eval_set: EvalSet
    failed_rows: list[tuple[ResultRow, Path | None]]


def run_bench(suite: Suite, target: TargetProfile, inputs: BenchInputs, console=None) -> list[ResultRow]:
    """Export (cached), make each variant (cached), measure each in child processes; failures become rows."""
    variants = ("fp32",) + tuple(v for v in target.variants if v != "fp32")  # fp32 is every ratio's reference
    floors = len({spec.input_hw for spec in suite.models})
    children_per_round = floors + len(suite.models) * len(variants) * len(target.serving)
    steps = len(suite.models) * (1 + len(variants)) + target.processes * children_per_round
    rows: list[ResultRow] = []
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with tempfile.TemporaryDirectory(prefix="harness-bench-") as tmp, Progress(*columns, console=console, transient=True) as progress:
        workdir = Path(tmp)
        task = progress.add_task("loading evaluation images", total=steps)
        if "int8-static" in variants:  # bad calibration input fails now, before any measuring
            calibration_split(suite, inputs)
        check_batch_feedable(suite, target)
        eval_sets = prepare_eval_sets(suite, inputs.data_dir, workdir)
        say = lambda message: progress.update(task, description=message)  # noqa: E731
        prepared: list[PreparedModel] = []
        for spec in suite.models:
            eval_set = eval_sets[(spec.input_hw, spec.num_classes)]
            say(f"export {spec.name}")
            try:
                exported = export_spec(spec, eval_set.images_u8)
            except ParityError as e:
                rows += [_failed_row(target, spec, v, m, f"export not faithful: {e}") for v in variants for m in target.serving]
                progress.advance(task, 1 + len(variants) + target.processes * len(variants) * len(target.serving))
                continue
            progress.advance(task)
            model = PreparedModel(spec, exported, {}, eval_set, [])
            for variant in variants:
                say(f"make {spec.name} {variant}")
                try:
                    model.made[variant] = make_variant(suite, inputs, spec, exported, variant, say=say,
                                                       on_calibration=calibration_bar(progress, spec.name))
                except VariantError as e:
                    model.failed_rows += [(_failed_row(target, spec, variant, m, str(e)), None) for m in target.serving]
                    progress.advance(task, target.processes * len(target.serving))
                progress.advance(task)
            prepared.append(model)
        measured = measure_alternating(prepared, target, reference_model(workdir / "reference.onnx"), suite.ignore_index,
                                       workdir, say, lambda: progress.advance(task))
        for model in prepared:
            floor = measured[("floor", model.spec.input_hw, "")][0]
            model_rows = list(model.failed_rows)
            for variant, made in model.made.items():
                for serving in target.serving:
                    measurement, predictions = measured[(model.spec.name, variant, serving)]
                    row = _row(target, model.spec, made, serving, model.exported, measurement, floor,
                               len(model.eval_set.images_u8))
                    model_rows.append((row, predictions))
            model_rows.sort(key=lambda pair: (variants.index(pair[0].variant), pair[0].serving))
            rows += compare_with_fp32(model_rows, target)
    return rows


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


def measure_alternating(prepared: list[PreparedModel], target: TargetProfile, reference: Path, ignore_index: int,
                        workdir: Path, say, advance):
    """Every variant of every model (and the runtime floor) in `target.processes` child processes, in rounds.

    Alternating rounds (floor, model A fp32, A int8, ..., B fp32, ..., floor, A fp32, ...) let every variant
    and every model see the same machine: on a shared host whose speed drifts over minutes, a ratio
    against fp32 or against the suite's baseline model stays honest. Accuracy and predictions come from
    the first round's children.
    """
    cap = target.memory_cap_mb or None
    children: dict[tuple, list[Measurement]] = {}
    predictions: dict[tuple, Path | None] = {}
    sizes = sorted({model.spec.input_hw for model in prepared})
    floor_models = {hw: trivial_model(workdir / f"floor_{hw[0]}x{hw[1]}.onnx", hw) for hw in sizes}
    sample_paths = {model.spec.input_hw: model.eval_set.sample_path for model in prepared}
    for round_index in range(target.processes):
        for hw in sizes:
            say(f"runtime floor {hw[0]}x{hw[1]} (round {round_index + 1}/{target.processes})")
            floor_request = build_request(floor_models[hw], target, sample_paths[hw], None, 1, 0, reference_path=reference)
            floor_request.update(warmup_runs=1, min_runs=1, min_duration_s=0.0)  # the floor's peak needs no timing
            children.setdefault(("floor", hw, ""), []).append(run_worker(floor_request, memory_cap_mb=cap))
            predictions[("floor", hw, "")] = None
            advance()
        for model in prepared:
            spec, eval_set = model.spec, model.eval_set
            for variant, made in model.made.items():
                for serving in target.serving:
                    key = (spec.name, variant, serving)
                    if children.get(key) and children[key][-1].error:  # a child that failed once fails again
                        advance()
                        continue
                    say(f"measure {spec.name} {variant}, {target.serving_label(serving)}, {target.threads} thread(s) "
                        f"(round {round_index + 1}/{target.processes})")
                    first = round_index == 0
                    pred_path = workdir / f"pred_{spec.name}_{variant}_{serving}.npy" if first else None
                    request = build_request(made.path, target, eval_set.sample_path, eval_set.eval_path if first else None,
                                            spec.num_classes, ignore_index, pred_path, serving)
                    children.setdefault(key, []).append(run_worker(request, memory_cap_mb=cap))
                    if first:
                        predictions[key] = pred_path if pred_path.is_file() else None
                    advance()
    return {key: (combine(ms), predictions[key]) for key, ms in children.items()}


def compare_with_fp32(model_rows: list[tuple[ResultRow, Path | None]], target: TargetProfile) -> list[ResultRow]:
    """Add speed ratio, mIoU drop and pixel agreement against fp32 (same run, same serving), flags, verdict."""
    references = {row.serving: (row, pred) for row, pred in model_rows if row.variant == "fp32"}
    out = []
    for row, pred_path in model_rows:
        reference, reference_pred = references.get(row.serving, (None, None))
        changes, flags = {}, []
        if reference is not None and row.p50_ms and reference.p50_ms:
            changes["speedup_vs_fp32"] = reference.p50_ms / row.p50_ms
            if row.variant != "fp32" and row.p50_ms > reference.p50_ms:
                flags.append(f"slower than fp32 ({reference.p50_ms / row.p50_ms:.2f}x)")
        if reference is not None and row.quality_pct is not None and reference.quality_pct is not None:
            changes["quality_drop_pts"] = reference.quality_pct - row.quality_pct
        if pred_path is not None and reference_pred is not None:
            changes["agreement_with_fp32_pct"] = float(100 * (np.load(pred_path) == np.load(reference_pred)).mean())
        updated = dataclasses.replace(row, flags="; ".join(flags), **changes)
        out.append(dataclasses.replace(updated, verdict=verdict(updated, target)))
    return out


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _base_row(target: TargetProfile, spec: ModelSpec, variant: str, serving: str, status: str,
              ort_version: str | None) -> dict:
    import onnxruntime

    fp = machine_fingerprint(ort_version or onnxruntime.__version__)
    fields = {f.name: None for f in dataclasses.fields(ResultRow)}
    fields.update(
        target=target.name, model=spec.name, variant=variant, serving=target.serving_label(serving), status=status,
        verdict="not measured", flags="", recipe="", nodes_in_float_names="", threads=target.threads,
        quality_metric="top-1" if spec.task == "classification" else "mIoU", per_class_pct="",
        images_at_once=target.images_at_once,
        cpu_mem_arena=target.enable_cpu_mem_arena, cpu_model=fp.cpu_model, cpu_count=fp.cpu_count, cpu_isa=fp.cpu_isa,
        ort_version=fp.ort_version, harness_version=fp.harness_version, measured_at=_now(),
    )
    del fields["schema_version"]
    return fields


def _row(target: TargetProfile, spec: ModelSpec, made: VariantModel, serving: str, exported: ExportedModel,
         measured: Measurement, floor: Measurement, eval_images: int) -> ResultRow:
    status = measured.error or "ok"
    if not measured.error and floor.error:
        status = f"runtime floor not measured: {floor.error}"
    fields = _base_row(target, spec, made.variant, serving, status, measured.ort_version)
    lat = measured.latency
    quality = quality_from_confusion(measured.confusion, spec.task) if measured.confusion is not None else None
    fields.update(
        recipe=made.recipe, file_mb=made.file_mb, params_in_graph=exported.params_in_graph,
        nodes_in_float=len(made.nodes_in_float) if made.variant == "int8-static" else None,
        nodes_in_float_names=";".join(made.nodes_in_float),
        parity_agreement_pct=exported.parity.argmax_agreement_pct if exported.parity else None,
        parity_max_abs_diff=exported.parity.max_abs_logit_diff if exported.parity else None,
        peak_rss_mb=measured.peak_rss_mb, floor_rss_mb=floor.peak_rss_mb, images_per_s=measured.images_per_s,
        reference_ms=floor.reference_ms,
    )
    if lat:
        fields.update(p50_ms=lat.p50_ms, p95_ms=lat.p95_ms, p99_ms=lat.p99_ms, runs=lat.runs,
                      latency_stdev_pct=100 * lat.stdev_ms / lat.mean_ms)
    if measured.peak_rss_mb is not None and floor.peak_rss_mb is not None:
        fields["model_mb"] = measured.peak_rss_mb - floor.peak_rss_mb
    if quality:
        fields.update(quality_pct=quality.pct, pixel_accuracy_pct=quality.pixel_accuracy_pct, per_class_pct=quality.per_class,
                      eval_images=eval_images)
    return ResultRow(**fields)


def _failed_row(target: TargetProfile, spec: ModelSpec, variant: str, serving: str, reason: str) -> ResultRow:
    return ResultRow(**_base_row(target, spec, variant, serving, reason, None))


def default_data_dir(suite: Suite, data_arg: str | None) -> Path:
    if data_arg:
        return Path(data_arg)
    if suite.data_dir is None:
        raise HarnessError(f"suite {suite.path} names no [data] dir: pass --data a folder holding images/ and masks/")
    return suite.data_dir
