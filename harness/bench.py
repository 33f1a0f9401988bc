"""A bench run: every model of a suite, exported and proven, measured under one target profile."""

from __future__ import annotations

import datetime as dt
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from harness.data import find_split, load_split, normalize
from harness.errors import HarnessError, ParityError
from harness.export import ExportedModel, export_spec
from harness.measure import Measurement, build_request, run_worker, trivial_model
from harness.metrics import scores_from_confusion
from harness.results import MachineFingerprint, ResultRow, machine_fingerprint
from harness.spec import ModelSpec, Suite
from harness.targets import TargetProfile


@dataclass(frozen=True)
class EvalSet:
    """Evaluation images fitted to one input size, written where workers can load them."""

    images_u8: np.ndarray
    eval_path: Path
    sample_path: Path


def prepare_eval_sets(suite: Suite, data_dir: Path, workdir: Path) -> dict[tuple, EvalSet]:
    split = find_split(data_dir, "val", suite.ignore_index)
    sets = {}
    for spec in suite.models:
        key = (spec.input_hw, spec.num_classes)
        if key in sets:
            continue
        images_u8, masks = load_split(split, spec.input_hw, spec.num_classes)
        tag = f"{spec.input_hw[0]}x{spec.input_hw[1]}_{spec.num_classes}"
        eval_path, sample_path = workdir / f"eval_{tag}.npz", workdir / f"sample_{tag}.npy"
        images = normalize(images_u8)
        np.savez(eval_path, images=images, masks=masks.astype(np.int16))
        np.save(sample_path, images[0])
        sets[key] = EvalSet(images_u8, eval_path, sample_path)
    return sets


def run_bench(suite: Suite, target: TargetProfile, data_dir: Path, console=None) -> list[ResultRow]:
    """Export (cached) and measure every model and variant; a failure becomes that row's status."""
    rows: list[ResultRow] = []
    steps = len(suite.models) * (1 + len(target.variants)) + len({m.input_hw for m in suite.models})
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with tempfile.TemporaryDirectory(prefix="harness-bench-") as tmp, Progress(*columns, console=console, transient=True) as progress:
        workdir = Path(tmp)
        task = progress.add_task("loading evaluation images", total=steps)
        eval_sets = prepare_eval_sets(suite, data_dir, workdir)
        floors: dict[tuple[int, int], Measurement] = {}
        for spec in suite.models:
            eval_set = eval_sets[(spec.input_hw, spec.num_classes)]
            if spec.input_hw not in floors:
                progress.update(task, description=f"runtime floor {spec.input_hw[0]}x{spec.input_hw[1]}")
                floor_onnx = trivial_model(workdir / f"floor_{spec.input_hw[0]}x{spec.input_hw[1]}.onnx", spec.input_hw)
                floors[spec.input_hw] = run_worker(build_request(floor_onnx, target, eval_set.sample_path, None, 1, 0))
                progress.advance(task)
            progress.update(task, description=f"export {spec.name}")
            try:
                exported = export_spec(spec, eval_set.images_u8)
            except ParityError as e:
                rows += [_failed_row(target, spec, v, f"export not faithful: {e}") for v in target.variants]
                progress.advance(task, 1 + len(target.variants))
                continue
            progress.advance(task)
            for variant in target.variants:
                progress.update(task, description=f"measure {spec.name} {variant} ({target.threads} thread(s))")
                request = build_request(exported.path, target, eval_set.sample_path, eval_set.eval_path,
                                        spec.num_classes, suite.ignore_index)
                measured = run_worker(request)
                rows.append(_row(target, spec, variant, exported, measured, floors[spec.input_hw], len(eval_set.images_u8)))
                progress.advance(task)
    return rows


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _fingerprint(measured: Measurement) -> MachineFingerprint:
    import onnxruntime

    return machine_fingerprint(measured.ort_version or onnxruntime.__version__)


def _row(target: TargetProfile, spec: ModelSpec, variant: str, exported: ExportedModel, measured: Measurement,
         floor: Measurement, eval_images: int) -> ResultRow:
    fp = _fingerprint(measured)
    status = measured.error or "ok"
    if not measured.error and floor.error:
        status = f"runtime floor not measured: {floor.error}"
    lat = measured.latency
    scores = scores_from_confusion(measured.confusion) if measured.confusion is not None else None
    model_mb = None
    if measured.peak_rss_mb is not None and floor.peak_rss_mb is not None:
        model_mb = measured.peak_rss_mb - floor.peak_rss_mb
    return ResultRow(
        target=target.name, model=spec.name, variant=variant, status=status,
        file_mb=exported.file_mb, params_in_graph=exported.params_in_graph,
        parity_agreement_pct=exported.parity.argmax_agreement_pct if exported.parity else None,
        parity_max_abs_diff=exported.parity.max_abs_logit_diff if exported.parity else None,
        p50_ms=lat.p50_ms if lat else None, p95_ms=lat.p95_ms if lat else None, p99_ms=lat.p99_ms if lat else None,
        latency_stdev_pct=100 * lat.stdev_ms / lat.mean_ms if lat else None, runs=lat.runs if lat else None,
        peak_rss_mb=measured.peak_rss_mb, floor_rss_mb=floor.peak_rss_mb, model_mb=model_mb,
        miou_pct=scores.miou_pct if scores else None, pixel_accuracy_pct=scores.pixel_accuracy_pct if scores else None,
        eval_images=eval_images if scores else None,
        threads=target.threads, batch_size=target.batch_size, cpu_mem_arena=target.enable_cpu_mem_arena,
        cpu_model=fp.cpu_model, cpu_count=fp.cpu_count, cpu_isa=fp.cpu_isa, ort_version=fp.ort_version,
        harness_version=fp.harness_version, measured_at=_now(),
    )


def _failed_row(target: TargetProfile, spec: ModelSpec, variant: str, reason: str) -> ResultRow:
    import onnxruntime

    fp = machine_fingerprint(onnxruntime.__version__)
    return ResultRow(
        target=target.name, model=spec.name, variant=variant, status=reason, file_mb=None, params_in_graph=None,
        parity_agreement_pct=None, parity_max_abs_diff=None, p50_ms=None, p95_ms=None, p99_ms=None,
        latency_stdev_pct=None, runs=None, peak_rss_mb=None, floor_rss_mb=None, model_mb=None, miou_pct=None,
        pixel_accuracy_pct=None, eval_images=None, threads=target.threads, batch_size=target.batch_size,
        cpu_mem_arena=target.enable_cpu_mem_arena, cpu_model=fp.cpu_model, cpu_count=fp.cpu_count,
        cpu_isa=fp.cpu_isa, ort_version=fp.ort_version, harness_version=fp.harness_version, measured_at=_now(),
    )


def default_data_dir(suite: Suite, data_arg: str | None) -> Path:
    if data_arg:
        return Path(data_arg)
    if suite.data_dir is None:
        raise HarnessError(f"suite {suite.path} names no [data] dir: pass --data a folder holding images/ and masks/")
    return suite.data_dir
