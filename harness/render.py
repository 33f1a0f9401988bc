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
    title = (f"target {target.name}: {target.description} — {target.threads} thread(s), batch {target.batch_size}, "
             f"CPU arena {'on' if target.enable_cpu_mem_arena else 'off'}")
    table = Table(title=title, title_justify="left")
    for header in ("model", "variant", "file MB", "params (graph)", "p50 ms", "p95 ms", "runs",
                   "peak RSS MB", "floor RSS MB", "model MB", "mIoU %", "status"):
        table.add_column(header, justify="left" if header in ("model", "variant", "status") else "right")
    for r in rows:
        runs = NOT_MEASURED if r.runs is None else str(r.runs)
        if r.latency_stdev_pct is not None and r.latency_stdev_pct >= 10:
            runs += f" [yellow](unstable: stdev {r.latency_stdev_pct:.0f}%)[/yellow]"
        status = "[green]ok[/green]" if r.status == "ok" else f"[red]{r.status}[/red]"
        table.add_row(
            r.model, r.variant, _num(r.file_mb, 2),
            NOT_MEASURED if r.params_in_graph is None else f"{r.params_in_graph / 1e6:.2f} M",
            _num(r.p50_ms, 2), _num(r.p95_ms, 2), runs, _num(r.peak_rss_mb), _num(r.floor_rss_mb),
            _num(r.model_mb), _num(r.miou_pct, 2), status,
        )
    table.caption = ("peak RSS = the child's kernel high-water mark (VmHWM) after the timed runs; floor RSS = the same for a "
                     "one-node model under the same runtime, threads and session options; model MB = peak − floor. "
                     "mIoU is computed from the ONNX model's outputs on the evaluation images, void excluded.")
    table.caption_justify = "left"
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
