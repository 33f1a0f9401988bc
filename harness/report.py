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
from harness.gate import check_schema
from harness.results import read_rows, row_key
from harness.targets import TargetProfile

VARIANT_COLOURS = {"fp32": "#1f77b4", "int8-static": "#2ca02c", "int8-dynamic": "#ff7f0e", "fp16": "#9467bd"}
# With several models (a zoo), colour says the model and the marker's shape the variant: 20 text labels
# would cover each other.
VARIANT_MARKERS = {"fp32": "o", "int8-static": "s", "int8-dynamic": "^", "fp16": "D"}
MODEL_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#7f7f7f")
LABELLED_MODELS_MAX = 2
TABLE_COLUMNS = (("model", "model"), ("variant", "variant"), ("serving", "serving"), ("file_mb", "file MB"),
                 ("p50_ms", "p50 ms"), ("p95_ms", "p95 ms"), ("speedup_vs_fp32", "vs fp32"),
                 ("model_mb", "model MB"), ("peak_rss_mb", "peak RSS MB"), ("quality_metric", "quality"),
                 ("quality_pct", "quality %"), ("quality_drop_pts", "quality drop"), ("verdict", "verdict"))


@dataclass(frozen=True)
class TargetResults:
    """One target's rows as read from its CSV, with its profile when one is known."""

    name: str
    source: Path
    records: tuple[dict[str, str], ...]
    profile: TargetProfile | None
    baseline: tuple[dict[str, str], ...] | None = None


@dataclass(frozen=True)
class ReportFiles:
    html: Path
    pngs: tuple[Path, ...]


def _num(record: dict[str, str], name: str) -> float | None:
    value = record.get(name, "")
    return float(value) if value else None


def load_target_results(csv_path: Path, baseline_path: Path | None = None) -> TargetResults:
    """Rows of one results CSV; refuses another schema or an empty file with a clear message."""
    from harness.targets import load_target

    if not csv_path.is_file():
        raise HarnessError(f"results file {csv_path} does not exist: run harness bench --target {csv_path.stem} first")
    records = read_rows(csv_path)
    if not records:
        raise HarnessError(f"results file {csv_path} has no rows: run harness bench --target {csv_path.stem} --update")
    check_schema(records, str(csv_path))
    name = records[0]["target"]
    try:
        profile = load_target(name)
    except HarnessError:
        profile = None  # a CSV from a profile this checkout lacks: drawn without budget lines
    baseline = None
    if baseline_path is not None:
        baseline = tuple(read_rows(baseline_path))
        check_schema(list(baseline), str(baseline_path))
    return TargetResults(name, csv_path, tuple(records), profile, baseline)


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of points no other point beats: lower latency (x) and higher quality (y), ties kept."""
    front = []
    for i, (x, y) in enumerate(points):
        dominated = any((x2 <= x and y2 >= y) and (x2 < x or y2 > y) for j, (x2, y2) in enumerate(points) if j != i)
        if not dominated:
            front.append(i)
    return sorted(front, key=lambda i: points[i][0])


def _measured(records) -> list[dict[str, str]]:
    return [r for r in records if _num(r, "p50_ms") is not None and _num(r, "quality_pct") is not None]


def trade_off_figure(results: TargetResults, out: Path) -> Path:
    """p50 latency against quality (mIoU or top-1) for every row; size = model memory, budget lines, frontier."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = _measured(results.records)
    fig, ax = plt.subplots(figsize=(12, 5.5), dpi=110)
    points = [(_num(r, "p50_ms"), _num(r, "quality_pct")) for r in rows]
    memories = [max(_num(r, "model_mb") or 0.0, 0.0) for r in rows]
    biggest = max(memories, default=1.0) or 1.0
    models = list(dict.fromkeys(r["model"] for r in rows))
    several_models = len(models) > 1
    by_model = len(models) > LABELLED_MODELS_MAX
    servings = list(dict.fromkeys(r["serving"] for r in rows))

    def colour_of(r) -> str:
        if by_model:
            return MODEL_COLOURS[models.index(r["model"]) % len(MODEL_COLOURS)]
        return VARIANT_COLOURS.get(r["variant"], "#7f7f7f")

    for r, (x, y), mb in zip(rows, points, memories):
        p95 = _num(r, "p95_ms") or x
        colour = colour_of(r)
        ax.errorbar([x], [y], xerr=[[0], [p95 - x]], fmt="none", ecolor=colour, alpha=0.35, capsize=3)
        over = r["verdict"] != "fits"
        hollow = by_model and servings.index(r["serving"]) > 0  # a second serving mode: same point, no fill
        ax.scatter([x], [y], s=60 + 540 * mb / biggest, marker=VARIANT_MARKERS.get(r["variant"], "o") if by_model else "o",
                   color=colour, alpha=0.75, facecolors="none" if hollow else colour,
                   edgecolors="#d62728" if over else ("black" if not hollow else colour),
                   linewidths=2.0 if over or hollow else 0.6, zorder=3)
    ax.margins(x=0.3, y=0.2)
    ax.set_xlim(left=0)  # latency cannot be negative; the margin would otherwise show it
    fig.canvas.draw()  # fixes the axes limits, so label positions can be checked in pixels
    if not by_model:
        labels = [(f"{r['model']} " if several_models else "") + f"{r['variant']} · {r['serving']}" for r in rows]
        _place_labels(ax, points, labels, [(60 + 540 * mb / biggest) ** 0.5 / 2 for mb in memories])
    front = pareto_front(points)
    if len(front) > 1:
        ax.plot([points[i][0] for i in front], [points[i][1] for i in front], "--", color="#444444", lw=1,
                zorder=2, label="Pareto frontier (faster and more accurate than any other)")
    elif front:
        ax.scatter([points[front[0]][0]], [points[front[0]][1]], marker="*", s=220, color="#444444", zorder=4,
                   label="Pareto frontier")
    profile = results.profile
    budget_note = ""
    if profile is not None and profile.p95_budget_ms:
        right = max([_num(r, "p95_ms") or 0.0 for r in rows] + [1.0])
        if profile.p95_budget_ms <= 1.5 * right:  # a budget far off the data would squash every point
            ax.axvline(profile.p95_budget_ms, color="#d62728", lw=1.2, label=f"latency budget: p95 ≤ {profile.p95_budget_ms:g} ms")
        else:
            budget_note = f"\nlatency budget p95 ≤ {profile.p95_budget_ms:g} ms lies off the chart, right of every row"
    if profile is not None:
        for model in sorted({r["model"] for r in rows}):
            fp32 = next((r for r in rows if r["model"] == model and r["variant"] == "fp32"), None)
            if fp32 is not None:
                floor = _num(fp32, "quality_pct") - profile.max_miou_drop
                ax.axhline(floor, color=colour_of(fp32) if by_model else "#d62728", lw=1, ls=":",
                           label=f"{model}: accuracy budget (fp32 − {profile.max_miou_drop:g} pts = {floor:.1f} %)")
    ax.set_xlabel("p50 latency per call, ms (whisker: to p95)")
    metrics = sorted({r["quality_metric"] for r in rows}) or ["quality"]
    ax.set_ylabel(f"{' / '.join(metrics)} on the evaluation images, %")
    memory_note = ""
    if profile is not None and profile.memory_budget_mb:
        memory_note = f"; red edge: over a budget (memory budget {profile.memory_budget_mb:g} MB {profile.memory_quantity})"
    ax.set_title(f"target {results.name}: speed against accuracy\nmarker area ∝ model memory (largest {biggest:.1f} MB)"
                 f"{memory_note}{budget_note}", fontsize=10)
    if by_model:
        handles = [plt.Line2D([], [], marker="o", ls="", color=colour_of(next(r for r in rows if r["model"] == m)), label=m)
                   for m in models]
        handles += [plt.Line2D([], [], marker=VARIANT_MARKERS.get(v, "o"), ls="", color="#555555", label=v)
                    for v in dict.fromkeys(r["variant"] for r in rows)]
        if len(servings) > 1:
            handles.append(plt.Line2D([], [], marker="o", ls="", color="#555555", label=f"{servings[0]} (filled)"))
            handles += [plt.Line2D([], [], marker="o", ls="", color="#555555", markerfacecolor="none",
                                   label=f"{serving} (hollow)") for serving in servings[1:]]
    else:
        handles = [plt.Line2D([], [], marker="o", ls="", color=c, label=v) for v, c in VARIANT_COLOURS.items()
                   if any(r["variant"] == v for r in rows)]
    line_handles, _ = ax.get_legend_handles_labels()
    ax.legend(handles=handles + line_handles, fontsize=7.5, loc="upper left", bbox_to_anchor=(1.01, 1.0), framealpha=0.9)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)
    return out


def _place_labels(ax, points: list[tuple[float, float]], labels: list[str], radii_pt: list[float]) -> None:
    """Annotate each point beside its marker, in the first slot that covers no other label or marker."""
    scale = ax.figure.dpi / 72  # points to pixels
    centres = [ax.transData.transform(p) for p in points]
    boxes: list[tuple[float, float, float, float]] = []
    for index in sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1])):
        px, py = centres[index]
        width, height = 4.6 * len(labels[index]) * scale, 11 * scale
        gap = radii_pt[index] + 4
        for dx, dy in [(gap, 8), (gap, -16), (gap, 20), (gap, -30), (gap, 32), (gap, -44), (gap, 46), (gap, 8)]:
            x0, y0 = px + dx * scale, py + dy * scale - 2 * scale
            box = (x0, y0, x0 + width, y0 + height)
            free = all(box[2] < b[0] or box[0] > b[2] or box[3] < b[1] or box[1] > b[3] for b in boxes)
            clear = all(not (box[0] - r * scale <= cx <= box[2] + r * scale and box[1] - r * scale <= cy <= box[3] + r * scale)
                        for j, ((cx, cy), r) in enumerate(zip(centres, radii_pt)) if j != index)
            if free and clear:
                break
        boxes.append(box)
        ax.annotate(labels[index], points[index], textcoords="offset points", xytext=(dx, dy), fontsize=7.5,
                    color="#333333", arrowprops={"arrowstyle": "-", "color": "#999999", "lw": 0.5})


def variants_figure(results: TargetResults, model: str, out: Path) -> Path:
    """One model's variants side by side: file size, p50, model memory, quality; baseline as outlines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    order = list(VARIANT_COLOURS)
    rows = sorted((r for r in results.records if r["model"] == model),
                  key=lambda r: (order.index(r["variant"]) if r["variant"] in order else len(order), r["serving"]))
    baseline = {row_key(r): r for r in results.baseline or ()}
    labels = [f"{r['variant']}\n{r['serving']}" for r in rows]
    quantities = (("file_mb", "file, MB"), ("p50_ms", "p50 latency, ms"), ("model_mb", "model memory, MB"),
                  ("quality_pct", f"{rows[0]['quality_metric'] if rows else 'quality'}, %"))
    fig, axes = plt.subplots(1, 4, figsize=(13, 3.8), dpi=110)
    for ax, (name, title) in zip(axes, quantities):
        values = [_num(r, name) for r in rows]
        colours = [VARIANT_COLOURS.get(r["variant"], "#7f7f7f") for r in rows]
        positions = range(len(rows))
        ax.bar(positions, [v or 0.0 for v in values], color=colours, alpha=0.8)
        for x, v in zip(positions, values):
            text = "n/a" if v is None else (f"{v:.2f}" if name == "quality_pct" else f"{v:.3g}")
            ax.text(x, v or 0.0, text, ha="center", va="bottom", fontsize=7.5)
        profile = results.profile
        if name == "model_mb" and profile is not None and profile.memory_quantity == "model" and profile.memory_budget_mb:
            ax.axhline(profile.memory_budget_mb, color="#d62728", lw=1, label=f"budget {profile.memory_budget_mb:g} MB")
            ax.legend(fontsize=7, loc="lower right")
        old = [_num(baseline[row_key(r)], name) if row_key(r) in baseline else None for r in rows]
        if any(v is not None for v in old):
            ax.bar(positions, [v or 0.0 for v in old], fill=False, edgecolor="black", ls="--", lw=1,
                   label="committed baseline")
            ax.legend(fontsize=7, loc="lower right")
        ax.set_xticks(list(positions), labels, fontsize=7, rotation=30, ha="right")
        ax.set_title(title, fontsize=9)
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle(f"{model} on target {results.name}: its variants", fontsize=10)
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)
    return out


def _png_data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode()


def _table_html(results: TargetResults) -> str:
    rows = _measured(results.records)
    front_keys = {row_key(rows[i]) for i in pareto_front([(_num(r, "p50_ms"), _num(r, "quality_pct")) for r in rows])}
    head = "".join(f"<th>{html.escape(label)}</th>" for _, label in TABLE_COLUMNS) + "<th>frontier</th>"
    body = []
    for r in results.records:
        cells = []
        for name, _ in TABLE_COLUMNS:
            value = r.get(name, "")
            cells.append(f"<td>{html.escape(value) if value else 'not measured'}</td>")
        on_front = "yes" if row_key(r) in front_keys else ""
        css = "fits" if r["verdict"] == "fits" else "over"
        body.append(f"<tr class='{css}'>{''.join(cells)}<td>{on_front}</td></tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _machine_html(results: TargetResults) -> str:
    first = results.records[0]
    dates = sorted(r["measured_at"] for r in results.records)
    when = dates[0] if dates[0] == dates[-1] else f"{dates[0]} to {dates[-1]}"
    return (f"<p class='machine'>Measured {html.escape(when)} on {html.escape(first['cpu_model'])} "
            f"({html.escape(first['cpu_count'])} cores, {html.escape(first['cpu_isa'])}), ONNX Runtime "
            f"{html.escape(first['ort_version'])}, harness {html.escape(first['harness_version'])}, "
            f"{html.escape(first['threads'])} thread(s); source: {html.escape(str(results.source))}</p>")


STYLE = """body{font-family:system-ui,sans-serif;margin:2em;color:#222;max-width:1200px}
table{border-collapse:collapse;font-size:13px;margin:1em 0}th,td{border:1px solid #ccc;padding:3px 7px;text-align:right}
th{background:#f2f2f2}td:nth-child(-n+3){text-align:left}tr.over td{color:#a00}img{max-width:100%;border:1px solid #ddd}
.machine{color:#555;font-size:13px}"""


def render_report(targets: list[TargetResults], out_dir: Path) -> ReportFiles:
    """Write one PNG per target, one per model and target, and index.html embedding them."""
    out_dir.mkdir(parents=True, exist_ok=True)
    pngs, sections = [], []
    for results in targets:
        trade_off = trade_off_figure(results, out_dir / f"trade_off_{results.name}.png")
        pngs.append(trade_off)
        parts = [f"<h2>target {html.escape(results.name)}</h2>", _machine_html(results)]
        if results.profile is not None:
            p = results.profile
            parts.append(f"<p>{html.escape(p.description)}: {p.threads} thread(s); budgets: p95 ≤ {p.p95_budget_ms:g} ms, "
                         f"{p.memory_quantity} memory ≤ {p.memory_budget_mb:g} MB, quality drop ≤ {p.max_miou_drop:g} pts "
                         f"(0 = no budget)</p>")
        parts.append(f"<img alt='speed against accuracy, target {html.escape(results.name)}' src='{_png_data_uri(trade_off)}'>")
        parts.append(_table_html(results))
        for model in sorted({r["model"] for r in results.records}):
            figure = variants_figure(results, model, out_dir / f"variants_{results.name}_{_slug(model)}.png")
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


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in text)
