"""The one screen a bench prints by default: each row's key figures with its gate outcome, the verdict, the host's
noise and where the rest is; a failed or undecided row adds its reason, evidence and the command that explains it.

Every note of a passing row goes to the files (results/latest/<target>.gate.json, the CSV) or to `--verbose`.
"""

from __future__ import annotations

import shlex
import statistics
from pathlib import Path

from rich import box
from rich.console import Group
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from harness.gate import FAIL, NEW, GateReport, RowCheck
from harness.gate.latency import AB, NOT_GATED, UNCHANGED
from harness.gate.budget import FITS, memory_figure
from harness.measure.backends import DEFAULT_BACKEND
from harness.report.render import NOT_MEASURED, metric_name, number_cell
from harness.results import ResultRow, RowKey, split_floats
from harness.targets import TargetProfile

COMPARISON_ONLY = "·"


def bench_screen(target: TargetProfile, rows: list[ResultRow], report: GateReport, record: Path | None,
                 latest: Path | None, suite: str | None = None, updated: bool = False) -> Group:
    """The table, the verdict, what did not pass (with its evidence and next command), host noise and the files."""
    checks = {c.key: c for c in report.checks}
    parts = [FiguresTable(target, rows, checks), _verdict(target, report, record, rows, updated)]
    for check in report.checks:
        if check.outcome == FAIL or (check.latency is not None and check.latency.undecided):
            parts.append(_explained(check, target, record, latest, suite))
    parts.append(_precision(rows))
    if report.host_noise:
        parts.append(Text(report.host_noise, style="dim"))
    if latest is not None:
        notes = _shown_path(latest.with_suffix(".gate.json"))
        parts.append(Text(f"every figure: {_shown_path(latest)} · every note: {notes} · all tables: --verbose", style="dim"))
    return Group(*parts)


class FiguresTable:
    """The rows' table, laid out for the width it is drawn at: model names whole in their column where they fit,
    else numbered with a legend above (a name is never cut)."""

    def __init__(self, target: TargetProfile, rows: list[ResultRow], checks: dict[RowKey, RowCheck]):
        self.target, self.rows, self.checks = target, rows, checks

    def __rich_console__(self, console, options):
        models = list(dict.fromkeys(r.model for r in self.rows))
        table = figures_table(self.target, self.rows, self.checks)
        if console.measure(table, options=options.update_width(10_000)).maximum <= options.max_width:
            yield table
            return
        numbers = {m: str(i) for i, m in enumerate(models, 1)}
        yield Text("models: " + " · ".join(f"{numbers[m]} = {m}" for m in models), overflow="fold")
        yield figures_table(self.target, self.rows, self.checks, numbers)


def figures_table(target: TargetProfile, rows: list[ResultRow], checks: dict[RowKey, RowCheck],
                  numbers: dict[str, str] | None = None) -> Table:
    """One line per row, grouped under its model (named once; by its number in `numbers` when given)."""
    metric = metric_name(rows)
    backends, servings = {r.runtime for r in rows}, {r.serving for r in rows}
    memory = "model MB" if target.budgets.memory_quantity == "model" else "peak RSS MB"
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True, title_justify="left",
                  title=_title(target, len(rows)))
    table.add_column("model" if numbers is None else "#", no_wrap=True)
    table.add_column("variant", no_wrap=True)
    if len(backends) > 1:
        table.add_column("backend", no_wrap=True)
    if len(servings) > 1:
        table.add_column("serving", overflow="fold")
    for header in ("p50 ms", "p95 ms", "vs fp32", memory, f"{metric} %", f"Δ{metric}"):
        table.add_column(header, justify="right", no_wrap=True)
    table.add_column("gate", no_wrap=True)
    previous = None
    for r in rows:
        name = r.model if numbers is None else numbers[r.model]
        cells = [escape(name) if r.model != previous else "", escape(r.variant)]
        previous = r.model
        if len(backends) > 1:
            cells.append(escape(r.runtime))
        if len(servings) > 1:
            cells.append(escape(r.serving))
        speed = NOT_MEASURED if r.speedup_vs_fp32 is None else f"{r.speedup_vs_fp32:.2f}x"
        drop = None if r.quality_drop_pts is None else -r.quality_drop_pts
        cells += [number_cell(r.p50_ms, 2), number_cell(r.p95_ms, 2), speed, number_cell(memory_figure(r, target)), number_cell(r.quality_pct, 2),
                  number_cell(drop, 2), _gate_cell(r, checks.get(r.key), target)]
        table.add_row(*cells)
    return table


def _title(target: TargetProfile, rows: int) -> str:
    said = target.description if target.description.startswith(target.name) else f"{target.name}: {target.description}"
    return escape(f"{said if target.description else target.name} — {rows} rows")


def _gate_cell(row: ResultRow, check: RowCheck | None, target: TargetProfile) -> str:
    if check is None:
        return NOT_MEASURED
    if check.outcome == FAIL:
        return "[bold red]FAIL[/bold red]"
    if check.latency is not None and check.latency.undecided:
        return "[yellow]undecided[/yellow]"
    if check.outcome == NEW:
        return "[yellow]new[/yellow]"
    if not target.budgets.ships(row.variant):
        return COMPARISON_ONLY if row.verdict == FITS else f"[yellow]{COMPARISON_ONLY} over[/yellow]"
    return "[green]pass[/green]"


def _verdict(target: TargetProfile, report: GateReport, record: Path | None, report_rows, updated: bool) -> Text:
    budgets, shipped = target.budgets, [c for c in report.checks if target.budgets.ships(c.key.variant)]
    limits = [f"p95 ≤ {budgets.p95_budget_ms:g} ms"] if budgets.p95_budget_ms else []
    if budgets.memory_budget_mb:
        limits.append(f"{'model' if budgets.memory_quantity == 'model' else 'peak RSS'} MB ≤ {budgets.memory_budget_mb:g}")
    limits.append(f"{metric_name(report_rows)} drop ≤ {budgets.max_miou_drop:g} pt")
    failed = len(report.failed)
    head = f"gate {target.name}: {'FAILED' if failed else 'passed'} — {failed} of {len(report.checks)} rows failed"
    text = Text(head, style="bold red" if failed else "bold green")
    if budgets.ship is not None:
        text.append(f"; ships {', '.join(budgets.ship)} ({len(shipped)} rows)")
    text.append(f"; {', '.join(limits)}\n{_against(report, record, updated)}")
    if budgets.ship is not None:
        text.append(f"; {COMPARISON_ONLY} = comparison only (never fails)")
    return text


def _precision(rows: list[ResultRow]) -> Text:
    """How precise the table's p50s are: half the range of each row's per-process medians, typical and widest."""
    spreads = []
    for row in rows:
        values = split_floats(row.p50_per_process_ms)
        if len(values) >= 2 and statistics.median(values) > 0:
            spreads.append((50 * (max(values) - min(values)) / statistics.median(values), len(values), row))
    if not spreads:
        return Text("precision: not measured (fewer than 2 processes per row)", style="dim")
    spreads.sort(key=lambda item: item[0])
    widest, _, row = spreads[-1]
    counts = sorted({n for _, n, _ in spreads})
    processes = str(counts[0]) if len(counts) == 1 else f"{counts[0]}-{counts[-1]}"
    typical = statistics.median(s for s, _, _ in spreads)
    return Text(f"precision: p50 ±{typical:.1f} % typical, ±{widest:.1f} % widest ({row.model} {row.variant}): half the "
                f"range of {processes} processes' medians", style="dim")


def _against(report: GateReport, record: Path | None, updated: bool) -> str:
    counts = report.latency_counts()
    if record is None:
        return "--update: this run is the record now (budgets judged, nothing compared)" if updated else \
            "no record to compare with (this run is the first record)"
    text = f"against {_shown_path(record)}: latency {counts[AB]} by A/B, {counts[UNCHANGED]} unchanged (not gated)"
    if counts[NOT_GATED]:
        text += f", {counts[NOT_GATED]} not gated"
    if counts["undecided"]:
        text += f", {counts['undecided']} undecided"
    scope = [f"{len(report.missing)} recorded rows not produced by this run"] if report.missing else []
    if report.narrowed:
        scope.append(f"{len(report.not_looked_at)} recorded rows not looked at ({report.narrowed})")
    return text + "".join(f"\n{line}" for line in scope)


def _shown_path(path: Path) -> str:
    """A path as short as it reads from here."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _explained(check: RowCheck, target: TargetProfile, record: Path | None, latest: Path | None,
               suite: str | None) -> Text:
    """A failed or undecided row: what, why (each reason holds its measured evidence: figure and budget, or ratio and
    interval), and the command that shows more."""
    model, variant, serving, backend = check.shown
    failed = check.outcome == FAIL
    text = Text(f"{'FAIL' if failed else 'undecided'} ", style="bold red" if failed else "yellow")
    text.append(f"{model} {variant} ({serving}, {backend})", style="bold")
    for reason in check.reasons or check.latency.notes:
        text.append(f"\n  why: {reason}")
    text.append(f"\n  next: {_next_command(check, target, record, latest, suite)}", style="cyan")
    return text


def _next_command(check: RowCheck, target: TargetProfile, record: Path | None, latest: Path | None,
                  suite: str | None) -> str:
    """Latency or memory: the operator profile of that variant; anything else: the figures beside the record's."""
    if check.outcome != FAIL:  # undecided: the host was too noisy to tell; more rounds of this model alone may
        return f"harness bench --target {_target_arg(target)} --model {shlex.quote(check.key.model)}{_suite_arg(suite)}"
    about = " ".join(check.reasons).lower()
    if check.reasons and all(r.startswith("drift since gate_baseline") for r in check.reasons):
        return (f"harness bisect --target {_target_arg(target)} --model {shlex.quote(check.key.model)} --good "
                f"{shlex.quote(target.gate.baseline)} --variant {shlex.quote(check.key.variant)}{_suite_arg(suite)}")
    if record is not None and latest is not None and not any(w in about for w in ("latency", "memory", "slower", "p50", "p95")):
        return f"harness compare {shlex.quote(str(record))} {shlex.quote(str(latest))}"
    key = check.key
    backend = f" --backend {shlex.quote(key.backend)}" if key.backend != DEFAULT_BACKEND else ""
    return (f"harness profile {shlex.quote(key.model)} --target {_target_arg(target)} --variant {shlex.quote(key.variant)}"
            f"{backend}{_suite_arg(suite)}")


def _suite_arg(suite: str | None) -> str:
    return f" --suite {shlex.quote(suite)}" if suite else ""


def _target_arg(target: TargetProfile) -> str:
    """How the command line names this target again: a built-in by its name, a file of the user's by its path."""
    from harness.errors import HarnessError
    from harness.targets import resolve_target_path

    try:
        by_name = resolve_target_path(target.name).resolve()
    except HarnessError:
        by_name = None
    if target.source is None or by_name == Path(target.source).resolve():
        return shlex.quote(target.name)
    return shlex.quote(str(target.source))
