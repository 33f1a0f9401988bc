"""The report: each target's trade-off as pictures beside the table, in one self-contained HTML page.

Reads results CSVs (the committed record, or a run's latest), draws PNGs with matplotlib's Agg
backend and writes `index.html` with the PNGs inlined as data URIs: no network, no scripts.
"""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass
from pathlib import Path

from harness.errors import HarnessError
from harness.report.figures import TargetResults, measured_rows, pareto_front, trade_off_figure, variants_figure
from harness.results import shown_cell, read_rows

TABLE_COLUMNS = (("model", "model"), ("variant", "variant"), ("serving", "serving"), ("backend", "backend"),
                 ("file_mb", "file MB"),
                 ("p50_ms", "p50 ms"), ("p95_ms", "p95 ms"), ("speedup_vs_fp32", "vs fp32"),
                 ("model_mb", "model MB"), ("peak_rss_mb", "peak RSS MB"), ("quality_metric", "quality"),
                 ("quality_pct", "quality %"), ("quality_drop_pts", "quality drop"), ("verdict", "verdict"))


@dataclass(frozen=True)
class ReportFiles:
    html: Path
    pngs: tuple[Path, ...]


def load_target_results(csv_path: Path, baseline_path: Path | None = None) -> TargetResults:
    """Rows of one results CSV; refuses another schema or an empty file with a clear message."""
    from harness.targets import load_target

    if not csv_path.is_file():
        raise HarnessError(f"results file {csv_path} does not exist: run harness bench --target {csv_path.stem} first")
    rows = read_rows(csv_path)
    if not rows:
        raise HarnessError(f"results file {csv_path} has no rows: run harness bench --target {csv_path.stem} --update")
    name = rows[0].target
    try:
        profile = load_target(name)
    except HarnessError:
        profile = None  # a CSV from a profile this checkout lacks: drawn without budget lines
    baseline = None
    if baseline_path is not None:
        baseline = tuple(read_rows(baseline_path))
    return TargetResults(name, csv_path, tuple(rows), profile, baseline)


def _png_data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode()


def _table_html(results: TargetResults) -> str:
    rows = measured_rows(results.rows)
    front_keys = {rows[i].key for i in pareto_front([(r.p50_ms, r.quality_pct) for r in rows])}
    head = "".join(f"<th>{html.escape(label)}</th>" for _, label in TABLE_COLUMNS) + "<th>frontier</th>"
    body = []
    for r in results.rows:
        cells = []
        for name, _ in TABLE_COLUMNS:
            value = shown_cell(name, getattr(r, name))
            cells.append(f"<td>{html.escape(value) if value else 'not measured'}</td>")
        on_front = "yes" if r.key in front_keys else ""
        css = "fits" if r.verdict == "fits" else "over"
        body.append(f"<tr class='{css}'>{''.join(cells)}<td>{on_front}</td></tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _machine_html(results: TargetResults) -> str:
    first = results.rows[0]
    dates = sorted(r.measured_at for r in results.rows)
    when = dates[0] if dates[0] == dates[-1] else f"{dates[0]} to {dates[-1]}"
    return (f"<p class='machine'>Measured {html.escape(when)} on {html.escape(first.cpu_model)} "
            f"({first.cpu_count} cores, {html.escape(first.cpu_isa)}), ONNX Runtime "
            f"{html.escape(first.ort_version)}, harness {html.escape(first.harness_version)}, "
            f"{first.threads} thread(s); source: {html.escape(str(results.source))}</p>")


STYLE = """body{font-family:system-ui,sans-serif;margin:2em;color:#222;max-width:1200px}
table{border-collapse:collapse;font-size:13px;margin:1em 0}th,td{border:1px solid #ccc;padding:3px 7px;text-align:right}
th{background:#f2f2f2}td:nth-child(-n+3){text-align:left}tr.over td{color:#a00}img{max-width:100%;border:1px solid #ddd}
.machine{color:#555;font-size:13px}"""


def render_report(targets: list[TargetResults], out_dir: Path) -> ReportFiles:
    """Write one PNG per target, one per model and target, and index.html embedding them."""
    out_dir.mkdir(parents=True, exist_ok=True)
    pngs, sections = [], []
    for results in targets:
        trade_off = trade_off_figure(results, out_dir / f"trade_off_{_slug(results.name)}.png")
        pngs.append(trade_off)
        parts = [f"<h2>target {html.escape(results.name)}</h2>", _machine_html(results)]
        if results.profile is not None:
            p = results.profile
            parts.append(f"<p>{html.escape(p.description)}: {p.device.threads} thread(s); budgets: p95 ≤ {p.budgets.p95_budget_ms:g} ms, "
                         f"{p.budgets.memory_quantity} memory ≤ {p.budgets.memory_budget_mb:g} MB, quality drop ≤ {p.budgets.max_miou_drop:g} pts "
                         f"(0 = no budget)</p>")
        parts.append(f"<img alt='speed against accuracy, target {html.escape(results.name)}' src='{_png_data_uri(trade_off)}'>")
        parts.append(_table_html(results))
        history = _history_page(results, out_dir)
        if history is not None:
            parts.append(f"<p>History: <a href='{html.escape(history.name)}'>{html.escape(history.name)}</a>, this target's "
                         f"models at their earlier revisions measured beside today's (<code>harness history</code>)</p>")
        for model in sorted({r.model for r in results.rows}):
            figure = variants_figure(results, model, out_dir / f"variants_{_slug(results.name)}_{_slug(model)}.png")
            pngs.append(figure)
            parts.append(f"<img alt='variants of {html.escape(model)}' src='{_png_data_uri(figure)}'>")
        sections.append("\n".join(parts))
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>harness report</title><style>{STYLE}</style>"
            f"</head><body><h1>harness report</h1><p>Every figure below was measured by <code>harness bench</code>; "
            f"rows that could not be measured say so. Frontier: no other row is both faster (p50) and more accurate.</p>"
            f"{''.join(sections)}</body></html>")
    index = out_dir / "index.html"
    index.write_text(page)
    return ReportFiles(index, tuple(pngs))


def _history_page(results: TargetResults, out_dir: Path) -> Path | None:
    """`harness history`'s page for this target (beside the latest CSV), copied next to the report; None if none."""
    import shutil

    name = f"history-{_slug(results.name)}.html"
    for folder in (results.source.parent, results.source.parent / "latest"):
        if (folder / name).is_file():
            if (folder / name).resolve() != (out_dir / name).resolve():
                shutil.copyfile(folder / name, out_dir / name)
            return out_dir / name
    return None


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in text)
