"""From measurements to result rows: one per model, variant and serving mode, compared with fp32 of the same run."""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path

import numpy as np

from harness.bench.plan import BenchPlan, run_options, split_run
from harness.bench.prepare import PreparedModel
from harness.bench.yardsticks import floor_key
from harness.gate.budget import verdict
from harness.export import ExportedModel
from harness.measure.figures import CHILD_FIGURES
from harness.results.measurement import Measurement
from harness.bench.pairing import paired_speedup
from harness.measure.backends import DEFAULT_BACKEND, options_text
from harness.results import ResultRow, joined
from harness.results.row import CELL_FIELDS
from harness.spec import ModelSpec
from harness.variants import VariantModel


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _base_row(plan: BenchPlan, spec: ModelSpec, run: str, serving: str, status: str) -> dict:
    target, fp = plan.target, plan.machine
    backend, variant = split_run(run)
    ort = run_options(target, variant, DEFAULT_BACKEND)  # a named variant's own over the target's
    fields = dict.fromkeys(CELL_FIELDS)
    fields.update(
        target=target.name, model=spec.name, variant=variant, serving=target.scenario.serving_label(serving), serving_mode=serving,
        status=status, verdict="not measured", flags="", recipe="", nodes_in_float_names="",
        threads=target.device.threads, quality_metric=plan.task.quality_metric, per_class_pct="",
        images_at_once=target.scenario.images_at_once, cpu_mem_arena=ort["enable_cpu_mem_arena"],
        cpu_model=fp.cpu_model, cpu_count=fp.cpu_count, cpu_isa=fp.cpu_isa, ort_version=fp.ort_version,
        harness_version=fp.harness_version, measured_at=_now(), p50_per_process_ms="", p95_per_process_ms="",
        onnx_sha256="", git_commit=plan.git_commit,
        allow_spinning=target.scenario.http_allow_spinning if serving.startswith("http") else ort["allow_spinning"],
        mem_pattern=ort["enable_mem_pattern"],
        cpu_affinity=joined(target.device.cpu_affinity or ()), measured_on="", python_version="", numpy_version="", onnx_version=plan.onnx_version,
        backend=backend, backend_version="", precision="", backend_options=""
        if backend == DEFAULT_BACKEND else options_text(run_options(target, variant, backend)),  # ORT's: own columns
    )
    return fields


_TEXT_COLUMNS = {name for name, field in CELL_FIELDS.items() if field.type == "str"}


def _figure_cells(measured: Measurement) -> dict:
    """The child figures under their row columns (a text column not measured is empty, a number None)."""
    cells = {figure.row_column: measured.figures.get(name) for name, figure in CHILD_FIGURES.items()}
    return {column: "" if value is None and column in _TEXT_COLUMNS else value for column, value in cells.items()}


def failed_row(plan: BenchPlan, spec: ModelSpec, run: str, serving: str, reason: str) -> ResultRow:
    return ResultRow(**_base_row(plan, spec, run, serving, reason))


def measured_row(plan: BenchPlan, spec: ModelSpec, made: VariantModel, serving: str, exported: ExportedModel,
                 measured: Measurement, floor: Measurement, eval_images: int, run: str | None = None) -> ResultRow:
    status = measured.error or "ok"
    if not measured.error and floor.error:
        status = f"runtime floor not measured: {floor.error}"
    fields = _base_row(plan, spec, run or made.variant, serving, status)
    fields.update(
        recipe=made.recipe, file_mb=made.file_mb, params_in_graph=exported.params_in_graph,
        nodes_in_float=len(made.nodes_in_float) if plan.target.scenario.variant(made.variant).supports_fallback else None,
        nodes_in_float_names=";".join(made.nodes_in_float),
        parity_agreement_pct=exported.parity.argmax_agreement_pct if exported.parity else None,
        parity_max_abs_diff=exported.parity.max_abs_logit_diff if exported.parity else None,
        floor_rss_mb=floor.peak_rss_mb,
        processes=len(measured.per_process_latencies_ms) or None, onnx_sha256=made.sha256,
        p50_per_process_ms=joined(measured.per_process_p50_ms), p95_per_process_ms=joined(measured.per_process_p95_ms),
        cpu_affinity=joined(measured.cpu_affinity), measured_on=measured.measured_on or "",
        **_figure_cells(measured),  # the children's figures, each combined as harness.measure.figures declares
    )
    if measured.machine:  # the fingerprint of where the child ran, not of the controller
        fields.update({k: measured.machine[k] for k in ("cpu_model", "cpu_count", "cpu_isa", "ort_version",
                                                        "python_version", "numpy_version")})
    lat = measured.latency
    if lat:
        fields.update(p50_ms=lat.p50_ms, p95_ms=lat.p95_ms, p99_ms=lat.p99_ms, runs=lat.runs,
                      latency_stdev_pct=100 * lat.stdev_ms / lat.mean_ms)
    if measured.served is not None:  # a service: its own floor is the server with its stack, before the model
        fields.update({k: v for k, v in dataclasses.asdict(measured.served).items()})
        fields.update(floor_rss_mb=measured.served.server_rss_mb, max_in_flight=None, processes=1)
        floor = dataclasses.replace(floor, figures={**floor.figures, "peak_rss_mb": measured.served.server_rss_mb})
    if measured.peak_rss_mb is not None and floor.peak_rss_mb is not None:
        fields["model_mb"] = measured.peak_rss_mb - floor.peak_rss_mb
    if measured.confusion is not None:
        quality = plan.task.quality(measured.confusion)
        fields.update(quality_pct=quality.pct, pixel_accuracy_pct=quality.pixel_accuracy_pct,
                      per_class_pct=quality.per_class, eval_images=eval_images)
    return ResultRow(**fields)


def model_rows(plan: BenchPlan, model: PreparedModel, measured: dict) -> list[ResultRow]:
    """Every row of one model: measured, or failed with its reason; then compared with fp32."""
    spec, serving_modes = model.spec, plan.target.scenario.row_modes
    pairs: list[tuple[ResultRow, Path | None]] = []
    speedups = {}
    for run in plan.runs:
        backend, variant = split_run(run)
        for serving in serving_modes:
            if serving.startswith("http") and (run not in plan.served_runs or model.ab_partner_of):
                continue  # the service runs ONNX Runtime: another backend has no served rows; an A/B partner is
                # measured in the children only (served rows are judged by their budgets, not by an A/B)
            if variant not in model.made and variant not in model.failures:
                continue  # a named variant made for other models only
            why = model.failures.get(variant) or model.serving_failures.get(serving)
            if why:
                pairs.append((failed_row(plan, spec, run, serving, why), None))
                continue
            floor = measured[floor_key(spec.input_hw, backend)][0]
            measurement, predictions = measured[(spec.name, run, serving)]
            row = measured_row(plan, spec, model.made[variant], serving, model.exported, measurement, floor,
                               len(model.eval_set.images_u8), run)
            pairs.append((row, predictions))
            fp32 = measured.get((spec.name, "fp32", serving))
            if fp32 is not None and not measurement.error and not fp32[0].error:
                speedups[row.key] = paired_speedup(fp32[0], measurement)
    return compare_with_fp32(pairs, plan, speedups)


def compare_with_fp32(pairs: list[tuple[ResultRow, Path | None]], plan: BenchPlan,
                      paired_speedups: dict | None = None) -> list[ResultRow]:
    """Add speed ratio, quality drop and agreement against fp32 (same run, same serving), flags, verdict.

    The speed ratio is paired (blocks of the same lockstep cycle) where the children ran in lockstep;
    otherwise the ratio of the pooled p50s."""
    references = {row.mode: (row, pred) for row, pred in pairs if row.variant == "fp32" and row.on_reference_backend}
    paired_speedups = paired_speedups or {}
    out = []
    for row, pred_path in pairs:
        reference, reference_pred = references.get(row.mode, (None, None))
        changes, flags = {}, []
        if reference is not None and row.p50_ms and reference.p50_ms:
            speedup = paired_speedups.get(row.key) or reference.p50_ms / row.p50_ms
            changes["speedup_vs_fp32"] = speedup
            if (row.variant != "fp32" or not row.on_reference_backend) and speedup < 1:
                against = "fp32" if row.on_reference_backend else "onnxruntime fp32"
                flags.append(f"slower than {against} ({speedup:.2f}x)")
        if reference is not None and row.quality_pct is not None and reference.quality_pct is not None:
            changes["quality_drop_pts"] = reference.quality_pct - row.quality_pct
        if pred_path is not None and reference_pred is not None:
            changes["agreement_with_fp32_pct"] = float(100 * (np.load(pred_path) == np.load(reference_pred)).mean())
        updated = dataclasses.replace(row, flags="; ".join(flags), **changes)
        out.append(dataclasses.replace(updated, verdict=verdict(updated, plan.target)))
    return out
