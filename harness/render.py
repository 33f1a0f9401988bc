"""Rich tables for the terminal; the only module that formats results for people."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from harness.export import ExportedModel
from harness.results import ResultRow
from harness.targets import TargetProfile

NOT_MEASURED = "[dim]n/a[/dim]"


def _num(value, digits: int = 1) -> str:
    return NOT_MEASURED if value is None else f"{value:.{digits}f}"


def results_table(target: TargetProfile, rows: list[ResultRow]) -> Table:
    budget = []
    if target.p95_budget_ms:
        budget.append(f"p95 ≤ {target.p95_budget_ms:g} ms")
    if target.memory_budget_mb:
        budget.append(f"{target.memory_quantity} memory ≤ {target.memory_budget_mb:g} MB")
    budget.append(f"mIoU drop ≤ {target.max_miou_drop:g} pts")
    title = (f"target {target.name}: {target.description} — {target.threads} thread(s), CPU arena "
             f"{'on' if target.enable_cpu_mem_arena else 'off'}, memory pattern {'on' if target.enable_mem_pattern else 'off'}"
             f"{f', cap {target.memory_cap_mb:g} MB RSS' if target.memory_cap_mb else ''}; budgets: {', '.join(budget)}")
    table = Table(title=title, title_justify="left")
    for header in ("model", "variant", "serving", "file MB", "p50 ms", "p95 ms", "vs fp32", "img/s", "runs",
                   "peak RSS MB", "floor RSS MB", "model MB", "mIoU %", "ΔmIoU pts", "agree %", "verdict", "notes"):
        table.add_column(header, justify="left" if header in ("model", "variant", "serving", "verdict", "notes") else "right")
    for r in rows:
        runs = NOT_MEASURED if r.runs is None else str(r.runs)
        if r.latency_stdev_pct is not None and r.latency_stdev_pct >= 10:
            runs += f" [yellow](unstable: stdev {r.latency_stdev_pct:.0f}%)[/yellow]"
        speed = NOT_MEASURED if r.speedup_vs_fp32 is None else f"{r.speedup_vs_fp32:.2f}x"
        if r.speedup_vs_fp32 is not None and r.speedup_vs_fp32 < 1:
            speed = f"[red]{speed}[/red]"
        notes = [] if r.status == "ok" else [f"[red]{r.status}[/red]"]
        if r.flags:
            notes.append(f"[yellow]{r.flags}[/yellow]")
        if r.nodes_in_float:
            notes.append(f"{r.nodes_in_float} nodes in float")
        verdict = f"[green]{r.verdict}[/green]" if r.verdict == "fits" else f"[red]{r.verdict}[/red]"
        table.add_row(
            r.model, r.variant, r.serving, _num(r.file_mb, 2), _num(r.p50_ms, 2), _num(r.p95_ms, 2), speed,
            _num(r.images_per_s), runs, _num(r.peak_rss_mb), _num(r.floor_rss_mb), _num(r.model_mb), _num(r.miou_pct, 2),
            _num(-r.miou_drop_pts if r.miou_drop_pts is not None else None, 2), _num(r.agreement_with_fp32_pct, 2),
            verdict, "; ".join(notes),
        )
    table.caption = ("peak RSS = the child's kernel high-water mark (VmHWM) after the timed runs; floor RSS = the same for a "
                     "one-node model under the same runtime, threads and session options; model MB = peak − floor.\n"
                     "p50/p95 are per call (per request when requests are in flight); img/s = images answered per second. "
                     "vs fp32 = fp32 p50 / this p50 in the same run (below 1x: slower). mIoU is computed from each ONNX "
                     "model's outputs on the evaluation images, void excluded; ΔmIoU and agree % are against fp32.")
    table.caption_justify = "left"
    return table


def recipes_table(rows: list[ResultRow]) -> Table:
    table = Table("model", "variant", "how it was made", title="variants", title_justify="left")
    for r in rows:
        recipe = r.recipe or NOT_MEASURED
        if r.nodes_in_float_names:
            recipe += f"; left in float: {r.nodes_in_float_names.replace(';', ', ')}"
        table.add_row(r.model, r.variant, recipe)
    return table


def export_table(exported: ExportedModel) -> Table:
    table = Table(title=f"export {exported.name}", title_justify="left", show_header=False)
    table.add_column("what")
    table.add_column("value")
    table.add_row("file", str(exported.path))
    table.add_row("file MB", f"{exported.file_mb:.2f}")
    table.add_row("parameters in graph", f"{exported.params_in_graph:,}")
    if exported.parity is None:
        table.add_row("parity", "not measured: a user-supplied ONNX file has no PyTorch model to compare with")
    else:
        p = exported.parity
        table.add_row("parity images", str(p.images))
        table.add_row("argmax agreement %", f"{p.argmax_agreement_pct:.4f}")
        table.add_row("max |logit diff|", f"{p.max_abs_logit_diff:.2e}")
        table.add_row("verdict", "[green]faithful[/green]" if p.passed else "[red]NOT faithful[/red]")
    table.add_row("cache", "re-used" if exported.cached else "exported now")
    return table


def make_console() -> Console:
    console = Console()
    if not console.is_terminal:  # CI logs and pipes: rich would fold the table into 80 columns
        console = Console(width=200)
    return console
