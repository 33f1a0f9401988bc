"""Rich tables for the terminal; the only module that formats results for people."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from harness.export import ExportedModel
from harness.gate.decide import UNSTABLE_SPREAD_PCT, unstable
from harness.results import ResultRow, shown_cell, split_floats
from harness.targets import TargetProfile

NOT_MEASURED = "[dim]n/a[/dim]"


def plain(*texts) -> list[str]:
    """User text (names, paths, a record's cells) shown as written: rich would read '[...]' in it as markup."""
    return [escape(str(text)) for text in texts]


def number_cell(value, digits: int = 1) -> str:
    """A figure as a table shows it: NOT_MEASURED for none, and never "-0.00"."""
    return NOT_MEASURED if value is None else f"{value:.{digits}f}".replace(f"-{0:.{digits}f}", f"{0:.{digits}f}")


def metric_name(rows) -> str:
    """The quality column's name: mIoU or top-1 when all rows share it."""
    metrics = {r.quality_metric for r in rows}
    return metrics.pop() if len(metrics) == 1 else "quality"


def _results_title(target: TargetProfile, metric: str) -> str:
    budgets, runtime = target.budgets, target.runtime
    limits = []
    if budgets.p95_budget_ms:
        limits.append(f"p95 ≤ {budgets.p95_budget_ms:g} ms")
    if budgets.memory_budget_mb:
        limits.append(f"{budgets.memory_quantity} memory ≤ {budgets.memory_budget_mb:g} MB")
    limits.append(f"{metric} drop ≤ {budgets.max_miou_drop:g} pts")
    return (f"target {escape(target.name)}{f': {escape(target.description)}' if target.description else ''} — {target.device.threads} "
            f"thread(s), CPU arena {'on' if runtime.enable_cpu_mem_arena else 'off'}, memory pattern "
            f"{'on' if runtime.enable_mem_pattern else 'off'}"
            f"{f', cap {budgets.memory_cap_mb:g} MB RSS' if budgets.memory_cap_mb else ''}; budgets: {', '.join(limits)}")


def _notes(row: ResultRow, target: TargetProfile) -> str:
    notes = [] if row.status == "ok" else [f"[red]{escape(row.status)}[/red]"]  # a record's cells are user text
    if row.flags:
        notes.append(f"[yellow]{escape(row.flags)}[/yellow]")
    if row.nodes_in_float:
        notes.append(f"{row.nodes_in_float} node(s) left in float")
    if not target.budgets.ships(row.variant):
        notes.append("[dim]comparison only (not shipped)[/dim]")
    if row.precision and not row.on_reference_backend:
        notes.append(f"ran {row.precision}")
    return "; ".join(notes)


def results_table(target: TargetProfile, rows: list[ResultRow]) -> Table:
    metric = metric_name(rows)
    title = _results_title(target, metric)
    table = Table(title=title, title_justify="left")
    backends = sorted({r.runtime for r in rows})
    several = len(backends) > 1  # a backend column only where the table mixes runtimes
    for header in ("model", "variant", *(("backend",) if several else ()), "serving", "file MB", "p50 ms", "p95 ms", "vs fp32", "img/s", "runs",
                   "peak RSS MB", "floor MB", "model MB", "cold ms", f"{metric} %", f"Δ{metric}", "agree %", "verdict", "notes"):
        table.add_column(header, justify="left" if header in ("model", "variant", "backend", "serving", "verdict", "notes")
                         else "right")
    for r in rows:
        runs = NOT_MEASURED if r.runs is None else str(r.runs)
        if unstable(split_floats(r.p50_per_process_ms)):  # pyperf's rule, on per-process medians
            runs += " [yellow]![/yellow]"
        speed = NOT_MEASURED if r.speedup_vs_fp32 is None else f"{r.speedup_vs_fp32:.2f}x"
        if r.speedup_vs_fp32 is not None and r.speedup_vs_fp32 < 1:
            speed = f"[red]{speed}[/red]"
        verdict = f"[green]{r.verdict}[/green]" if r.verdict == "fits" else f"[red]{escape(r.verdict)}[/red]"
        table.add_row(
            *plain(r.model, r.variant), *((escape(_backend_cell(r)),) if several else ()), escape(r.serving), number_cell(r.file_mb, 2), number_cell(r.p50_ms, 2), number_cell(r.p95_ms, 2), speed,
            number_cell(r.images_per_s), runs, number_cell(r.peak_rss_mb), number_cell(r.floor_rss_mb), number_cell(r.model_mb), _cold(r),
            number_cell(r.quality_pct, 2),
            number_cell(-r.quality_drop_pts if r.quality_drop_pts is not None else None, 2), number_cell(r.agreement_with_fp32_pct, 2),
            verdict, _notes(r, target),
        )
    table.caption = ("peak RSS = the child's kernel high-water mark (VmHWM) after the timed runs; floor = the same for a "
                     "one-node model under the same runtime, threads and session options; model MB = peak − floor; cold ms = "
                     "creating the session + its first call (served: the server's load + its first request).\n"
                     "p50/p95 are per call (per request when requests are in flight); img/s = images answered per second; "
                     f"runs marked ! were unstable (the child processes' medians spread ≥ {UNSTABLE_SPREAD_PCT:g} % of their mean: "
                     f"rerun on a quieter machine).\n"
                     f"vs fp32 = fp32 p50 / this p50 in the same run (below 1x: slower). {metric} is computed from each ONNX "
                     f"model's outputs on the evaluation images{', void excluded' if metric == 'mIoU' else ''}; "
                     f"Δ{metric} and agree % (predicted classes equal to fp32's) are against fp32."
                     + ("\nWith several backends, fp32 means ONNX Runtime's fp32 row, paired in the same lockstep cycles; "
                        "'ran' = the precision the backend reports its compute layers ran in." if several else ""))
    table.caption_justify = "left"
    return table


def _backend_cell(row: ResultRow) -> str:
    return f"{row.runtime} {row.backend_version}" if row.backend_version and not row.on_reference_backend else row.runtime


def ladder_table(rows: list[ResultRow], baseline: str) -> Table:
    """Each model's rows beside the baseline model's row of the same variant and serving, same run."""
    metric = metric_name(rows)
    reference = {(r.variant, r.serving): r for r in rows if r.model == baseline and r.status == "ok"}
    table = Table(title=f"reduction ladder — every change is against {escape(baseline)}, same variant and serving, same run",
                  title_justify="left")
    for header in ("model", "variant", "serving", "params", "file MB", "p50 ms", "p95 ms", "model MB", f"{metric} %",
                   "file", "speed", "model MB Δ", f"Δ{metric} pts"):
        table.add_column(header, justify="left" if header in ("model", "variant", "serving") else "right")
    for r in rows:
        base = reference.get((r.variant, r.serving))
        changes = [NOT_MEASURED] * 4
        if r.model == baseline:
            changes = ["[dim]baseline[/dim]"] + [""] * 3
        elif base is not None:
            changes = [
                NOT_MEASURED if not (r.file_mb and base.file_mb) else f"{100 * (r.file_mb / base.file_mb - 1):+.0f} %",
                NOT_MEASURED if not (r.p50_ms and base.p50_ms) else f"{base.p50_ms / r.p50_ms:.2f}x",
                NOT_MEASURED if r.model_mb is None or base.model_mb is None else f"{r.model_mb - base.model_mb:+.1f}",
                NOT_MEASURED if r.quality_pct is None or base.quality_pct is None else f"{r.quality_pct - base.quality_pct:+.2f}",
            ]
        params = NOT_MEASURED if r.params_in_graph is None else f"{r.params_in_graph:,}"
        table.add_row(*plain(r.model, r.variant, r.serving), params, number_cell(r.file_mb, 2), number_cell(r.p50_ms, 2), number_cell(r.p95_ms, 2),
                      number_cell(r.model_mb), number_cell(r.quality_pct, 2), *changes)
    table.caption = ("params = weights in the ONNX graph; file = size change; speed = baseline p50 / this p50 "
                     "(above 1x: faster); model MB = peak RSS − runtime floor. All models were measured in rounds of this "
                     "one run, each model's variants side by side in lockstep; speed across models is not paired.")
    table.caption_justify = "left"
    return table


def served_table(rows: list[ResultRow]) -> Table | None:
    """The service's own figures (serving "http"), or None when no row was served."""
    served = [r for r in rows if r.served]
    if not served:
        return None
    table = Table(title="served over HTTP (harness serve under load)", title_justify="left")
    for header in ("model", "variant", "load", "req/s", "p99 ms", "max ms", "within budget %", "errors", "timeouts",
                   "late", "held req/s", "server split ms (median)", "server RSS MB"):
        table.add_column(header, justify="left" if header in ("model", "variant", "load", "server split ms (median)") else "right")
    for r in served:
        table.add_row(*plain(r.model, r.variant), escape(r.load) if r.load else f"[red]{escape(r.status)}[/red]", number_cell(r.images_per_s), number_cell(r.p99_ms),
                      number_cell(r.max_ms), number_cell(r.within_budget_pct), _count(r.errors), _count(r.timeouts), _count(r.late_sends),
                      number_cell(r.held_rate_per_s, 2), escape(r.server_split_ms) if r.server_split_ms else NOT_MEASURED, number_cell(r.server_rss_mb))
    memory = next((r.memory_cap_by for r in served if r.memory_cap_by), "")
    table.caption = ("burst: latency until a burst's last answer; clients: from each send; open loop: from each request's "
                     "scheduled time, at the highest rate that held (p95 in budget, none lost, answers keeping up).\n"
                     "server RSS = the server process with uvicorn, numpy, PIL and ONNX Runtime imported, before the model "
                     f"(its floor: model MB = peak − it). Memory cap: {escape(memory) or 'none'}.")
    return table


def _cold(row: ResultRow) -> str:
    """Cold start: creating the session + the first call, as 'load+first'."""
    if row.load_ms is None or row.first_call_ms is None:
        return NOT_MEASURED
    return f"{row.load_ms:.0f}+{row.first_call_ms:.0f}"


def _count(value) -> str:
    return NOT_MEASURED if value is None else str(value)


def recipes_table(rows: list[ResultRow]) -> Table:
    table = Table("model", "variant", "how it was made", title="variants", title_justify="left")
    seen = set()
    for r in rows:
        if (r.model, r.variant) in seen:  # one line per file, not per serving mode
            continue
        seen.add((r.model, r.variant))
        recipe = escape(r.recipe) if r.recipe else NOT_MEASURED
        if r.nodes_in_float_names:
            recipe += f"; left in float: {escape(r.nodes_in_float_names.replace(';', ', '))}"
        table.add_row(*plain(r.model, r.variant), recipe)
    return table


def export_table(exported: ExportedModel) -> Table:
    table = Table(title=f"export {escape(exported.name)}", title_justify="left", show_header=False)
    table.add_column("what")
    table.add_column("value")
    table.add_row("file", escape(str(exported.path)))
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


def gate_table(report, record_path) -> Table:
    table = Table("model", "variant", "serving", "gate", "why", title=f"gate against {escape(str(record_path))}", title_justify="left")
    for check in report.checks:
        colour = {"pass": "green", "fail": "red", "new": "yellow"}[check.outcome]
        why = plain(*check.reasons) + [f"[dim]{escape(n)}[/dim]" for n in check.notes]
        table.add_row(*plain(*check.shown), f"[{colour}]{check.outcome}[/{colour}]", "\n".join(why))
    for key in report.missing:
        table.add_row(*plain(*report.shown(key)), "[yellow]missing[/yellow]", "recorded, but this run did not produce it")
    return table


COMPARED = (("file_mb", "file MB"), ("params_in_graph", "params"), ("p50_ms", "p50 ms"), ("p95_ms", "p95 ms"),
            ("model_mb", "model MB"), ("peak_rss_mb", "peak RSS MB"), ("quality_pct", "quality %"), ("images_per_s", "img/s"))


def compare_table(old: list[ResultRow], new: list[ResultRow], old_name: str, new_name: str) -> Table:
    table = Table("model", "variant", "serving", "quantity", old_name, new_name, "change",
                  title=escape(f"{old_name} → {new_name}"), title_justify="left")
    old_rows, new_rows = {r.key: r for r in old}, {r.key: r for r in new}
    for key in sorted(set(old_rows) | set(new_rows)):
        a, b = old_rows.get(key), new_rows.get(key)
        shown = plain(key.model, key.variant, " → ".join(dict.fromkeys(r.serving for r in (a, b) if r)))
        if not next(r for r in (a, b) if r).on_reference_backend:
            shown[1] += f" ({escape(key.backend)})"
        if a is None or b is None:
            table.add_row(*shown, "row", "absent" if a is None else "present", "absent" if b is None else "present", "")
            continue
        for name, label in COMPARED:
            x, y = getattr(a, name), getattr(b, name)
            if x == y:
                continue
            if x is not None and y is not None:
                change = f"{100 * (y / x - 1):+.1f} %" if x else f"{y - x:+g}"
            else:
                change = "measured now" if y is not None else "no longer measured"
            table.add_row(*shown, label, *plain(_cell_text(name, x), _cell_text(name, y)), change)
        if a.verdict != b.verdict:
            table.add_row(*shown, "verdict", *plain(a.verdict, b.verdict), "")
    return table


def _cell_text(name: str, value) -> str:
    return shown_cell(name, value) or "n/a"


def rule_table(old: dict, new: dict, old_name: str, new_name: str, min_effect_pct: float) -> Table:
    """The gate's latency rule on two raw files: per-process medians, row by row."""
    from harness.gate.decide import decide

    table = Table("model", "variant", "serving", "backend", "old p50 ms", "new p50 ms", "ratio", "p slower", "p faster", "decision",
                  title=escape(f"{old_name} → {new_name}: rank rule on per-process medians, minimum effect {min_effect_pct:g} %"),
                  title_justify="left")
    for key in sorted(set(old) & set(new)):
        d = decide(old[key], new[key], min_effect_pct)
        cells = ([number_cell(v, 3) for v in (d.ratio, d.p_slower, d.p_faster)] if d.ratio is not None else [NOT_MEASURED] * 3)
        medians = [f"{sorted(v)[len(v) // 2]:.2f} ({len(v)})" if v else NOT_MEASURED for v in (old[key], new[key])]
        table.add_row(*plain(*key), *medians, *cells, d.outcome)
    for key in sorted(set(old) ^ set(new)):
        table.add_row(*plain(*key), "", "", "", "", "", escape("only in " + (old_name if key in old else new_name)))
    return table


def models_table(infos) -> Table:
    table = Table("model", "task", "input sides divisible by", "description", title="registered models", title_justify="left")
    for info in infos:
        table.add_row(info.name, info.task, str(info.input_stride), info.description)
    return table


def targets_table(profiles: list[TargetProfile]) -> Table:
    table = Table("target", "threads", "serving", "memory budget", "memory cap", "p95 budget", "max quality drop",
                  "variants", "backends", "file", title="target profiles", title_justify="left")
    for t in profiles:
        b = t.budgets
        memory = f"{b.memory_budget_mb:g} MB ({b.memory_quantity})" if b.memory_budget_mb else "none"
        table.add_row(t.name, str(t.device.threads), ", ".join(t.scenario.serving_label(m) for m in t.scenario.serving),
                      memory, f"{b.memory_cap_mb:g} MB RSS" if b.memory_cap_mb else "none",
                      f"{b.p95_budget_ms:g} ms" if b.p95_budget_ms else "none", f"{b.max_miou_drop:g} pt",
                      ", ".join(t.scenario.variants), ", ".join(t.scenario.backends), escape(_short_path(t.source)))
    return table


def _short_path(path) -> str:
    from pathlib import Path

    try:
        return str(Path(path).resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def make_console(stderr: bool = False) -> Console:
    """The terminal's console; `stderr`: tables go there, leaving stdout to a machine-readable answer."""
    console = Console(stderr=stderr)
    if not console.is_terminal:  # CI logs and pipes: rich would fold the table into 80 columns
        console = Console(width=200, stderr=stderr)
    return console

