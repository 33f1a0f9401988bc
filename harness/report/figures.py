"""The report's figures, drawn with matplotlib's Agg backend: speed against accuracy, and each model's variants."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from harness.measure.backends import run_name
from harness.results import ResultRow
from harness.targets import TargetProfile

VARIANT_COLOURS = {"fp32": "#1f77b4", "int8-static": "#2ca02c", "int8-dynamic": "#ff7f0e", "fp16": "#9467bd",
                   "bf16": "#8c564b", "int8-nncf": "#17becf", "litert-fp32": "#bcbd22", "litert-int8": "#e377c2"}
# With several models (a zoo), colour says the model and the marker's shape the variant: 20 text labels
# would cover each other.
VARIANT_MARKERS = {"fp32": "o", "int8-static": "s", "int8-dynamic": "^", "fp16": "D"}
MODEL_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#7f7f7f")
LABELLED_MODELS_MAX = 2


@dataclass(frozen=True)
class TargetResults:
    """One target's rows as read from its CSV, with its profile when one is known."""

    name: str
    source: Path
    rows: tuple[ResultRow, ...]
    profile: TargetProfile | None
    baseline: tuple[ResultRow, ...] | None = None


def run_label(row: ResultRow) -> str:
    """The variant, with its backend in front where that is not ONNX Runtime (two int8-static bars otherwise look alike)."""
    return run_name(row.runtime, row.variant)


def measured_rows(rows) -> list[ResultRow]:
    return [r for r in rows if r.p50_ms is not None and r.quality_pct is not None]


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of points no other point beats: lower latency (x) and higher quality (y), ties kept."""
    front = []
    for i, (x, y) in enumerate(points):
        dominated = any((x2 <= x and y2 >= y) and (x2 < x or y2 > y) for j, (x2, y2) in enumerate(points) if j != i)
        if not dominated:
            front.append(i)
    return sorted(front, key=lambda i: points[i][0])


class _Palette:
    """Colour by variant for one or two models; with more, colour by model and shape by variant."""

    def __init__(self, rows: list[ResultRow]):
        self.models = list(dict.fromkeys(r.model for r in rows))
        self.servings = list(dict.fromkeys(r.serving for r in rows))
        self.by_model = len(self.models) > LABELLED_MODELS_MAX

    def colour(self, row: ResultRow) -> str:
        if self.by_model:
            return MODEL_COLOURS[self.models.index(row.model) % len(MODEL_COLOURS)]
        return VARIANT_COLOURS.get(row.variant, "#7f7f7f")

    def legend(self, plt, rows: list[ResultRow]) -> list:
        def marker(label: str, **style):
            return plt.Line2D([], [], ls="", label=label, **{"marker": "o", "color": "#555555", **style})

        if not self.by_model:
            return [marker(v, color=c) for v, c in VARIANT_COLOURS.items() if any(r.variant == v for r in rows)]
        handles = [marker(m, color=self.colour(next(r for r in rows if r.model == m))) for m in self.models]
        handles += [marker(v, marker=VARIANT_MARKERS.get(v, "o")) for v in dict.fromkeys(r.variant for r in rows)]
        if len(self.servings) > 1:
            handles.append(marker(f"{self.servings[0]} (filled)"))
            handles += [marker(f"{serving} (hollow)", markerfacecolor="none") for serving in self.servings[1:]]
        return handles


def trade_off_figure(results: TargetResults, out: Path) -> Path:
    """p50 latency against quality (mIoU or top-1) for every row; size = model memory, budget lines, frontier."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = measured_rows(results.rows)
    fig, ax = plt.subplots(figsize=(12, 5.5), dpi=110)
    points = [(r.p50_ms, r.quality_pct) for r in rows]
    memories = [max(r.model_mb or 0.0, 0.0) for r in rows]
    biggest = max(memories, default=1.0) or 1.0
    palette = _Palette(rows)
    sizes = [60 + 540 * mb / biggest for mb in memories]
    _draw_points(ax, rows, points, sizes, palette)
    ax.margins(x=0.3, y=0.2)
    ax.set_xlim(left=0)  # latency cannot be negative; the margin would otherwise show it
    fig.canvas.draw()  # fixes the axes limits, so label positions can be checked in pixels
    if not palette.by_model:
        labels = [(f"{r.model} " if len(palette.models) > 1 else "") + f"{run_label(r)} · {r.serving}" for r in rows]
        _place_labels(ax, points, labels, [size ** 0.5 / 2 for size in sizes])
    _draw_frontier(ax, points)
    budget_note = _draw_budgets(ax, rows, results.profile, palette)
    ax.set_xlabel("p50 latency per call, ms (whisker: to p95)")
    metrics = sorted({r.quality_metric for r in rows}) or ["quality"]
    ax.set_ylabel(f"{' / '.join(metrics)} on the evaluation images, %")
    ax.set_title(f"target {results.name}: speed against accuracy\nmarker area ∝ model memory (largest {biggest:.1f} MB)"
                 f"{budget_note}", fontsize=10)
    line_handles, _ = ax.get_legend_handles_labels()
    ax.legend(handles=palette.legend(plt, rows) + line_handles, fontsize=7.5, loc="upper left",
              bbox_to_anchor=(1.01, 1.0), framealpha=0.9)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)
    return out


def _draw_points(ax, rows: list[ResultRow], points, sizes, palette: _Palette) -> None:
    for r, (x, y), size in zip(rows, points, sizes):
        colour = palette.colour(r)
        ax.errorbar([x], [y], xerr=[[0], [(r.p95_ms or x) - x]], fmt="none", ecolor=colour, alpha=0.35, capsize=3)
        over = r.verdict != "fits"
        hollow = palette.by_model and palette.servings.index(r.serving) > 0  # a second serving mode: no fill
        ax.scatter([x], [y], s=size, marker=VARIANT_MARKERS.get(r.variant, "o") if palette.by_model else "o",
                   color=colour, alpha=0.75, facecolors="none" if hollow else colour,
                   edgecolors="#d62728" if over else ("black" if not hollow else colour),
                   linewidths=2.0 if over or hollow else 0.6, zorder=3)


def _draw_frontier(ax, points) -> None:
    front = pareto_front(points)
    if len(front) > 1:
        ax.plot([points[i][0] for i in front], [points[i][1] for i in front], "--", color="#444444", lw=1,
                zorder=2, label="Pareto frontier (faster and more accurate than any other)")
    elif front:
        ax.scatter([points[front[0]][0]], [points[front[0]][1]], marker="*", s=220, color="#444444", zorder=4,
                   label="Pareto frontier")


def _draw_budgets(ax, rows: list[ResultRow], profile: TargetProfile | None, palette: _Palette) -> str:
    """Latency and accuracy budget lines; returns what the title must add about budgets."""
    if profile is None:
        return ""
    budgets, note = profile.budgets, ""
    if budgets.p95_budget_ms:
        right = max([r.p95_ms or 0.0 for r in rows] + [1.0])
        if budgets.p95_budget_ms <= 1.5 * right:  # a budget far off the data would squash every point
            ax.axvline(budgets.p95_budget_ms, color="#d62728", lw=1.2, label=f"latency budget: p95 ≤ {budgets.p95_budget_ms:g} ms")
        else:
            note = f"\nlatency budget p95 ≤ {budgets.p95_budget_ms:g} ms lies off the chart, right of every row"
    for model in sorted({r.model for r in rows}):
        fp32 = next((r for r in rows if r.model == model and r.variant == "fp32"
                     and r.on_reference_backend), None)
        if fp32 is not None:
            floor = fp32.quality_pct - budgets.max_miou_drop
            ax.axhline(floor, color=palette.colour(fp32) if palette.by_model else "#d62728", lw=1, ls=":",
                       label=f"{model}: accuracy budget (fp32 − {budgets.max_miou_drop:g} pts = {floor:.1f} %)")
    if budgets.memory_budget_mb:
        note = (f"; red edge: over a budget (memory budget {budgets.memory_budget_mb:g} MB {budgets.memory_quantity})"
                + note)
    return note


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
    rows = sorted((r for r in results.rows if r.model == model),
                  key=lambda r: (order.index(r.variant) if r.variant in order else len(order), r.serving,
                                 not r.on_reference_backend, r.backend))
    baseline = {r.key: r for r in results.baseline or ()}
    labels = [f"{run_label(r)}\n{r.serving}" for r in rows]
    quantities = (("file_mb", "file, MB"), ("p50_ms", "p50 latency, ms"), ("model_mb", "model memory, MB"),
                  ("quality_pct", f"{rows[0].quality_metric if rows else 'quality'}, %"))
    # a few bars: the four quantities side by side; many (the cloud's servings times backends): one under another,
    # as wide as the bars need, so their labels do not overprint
    stacked = len(rows) > 8
    fig, axes = (plt.subplots(4, 1, figsize=(max(13, 0.42 * len(rows)), 13), dpi=110) if stacked else
                 plt.subplots(1, 4, figsize=(13, 3.8), dpi=110))
    for ax, (name, title) in zip(axes, quantities):
        values = [getattr(r, name) for r in rows]
        colours = [VARIANT_COLOURS.get(r.variant, "#7f7f7f") for r in rows]
        positions = range(len(rows))
        ax.bar(positions, [v or 0.0 for v in values], color=colours, alpha=0.8)
        for x, v in zip(positions, values):
            text = "n/a" if v is None else (f"{v:.2f}" if name == "quality_pct" else f"{v:.3g}")
            ax.text(x, v or 0.0, text, ha="center", va="bottom", fontsize=7.5)
        profile = results.profile
        if name == "model_mb" and profile is not None and profile.budgets.memory_quantity == "model" and profile.budgets.memory_budget_mb:
            ax.axhline(profile.budgets.memory_budget_mb, color="#d62728", lw=1, label=f"budget {profile.budgets.memory_budget_mb:g} MB")
            ax.legend(fontsize=7, loc="lower right")
        old = [getattr(baseline[r.key], name) if r.key in baseline else None for r in rows]
        if any(v is not None for v in old):
            ax.bar(positions, [v or 0.0 for v in old], fill=False, edgecolor="black", ls="--", lw=1,
                   label="committed baseline")
            ax.legend(fontsize=7, loc="lower right")
        ax.set_xticks(list(positions), labels if not stacked or name == quantities[-1][0] else [""] * len(rows),
                      fontsize=7, rotation=30 if not stacked else 45, ha="right")
        ax.set_title(title, fontsize=9)
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle(f"{model} on target {results.name}: its variants", fontsize=10)
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)
    return out


