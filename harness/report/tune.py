"""`harness tune` for people: the ranked table, why each rejected candidate stopped, the CSV, and an HTML page with
the Pareto front (speed against memory, quality drop as colour) of every candidate that fits."""

from __future__ import annotations

import csv
import html
import io
import json
from pathlib import Path

from rich.markup import escape
from rich.table import Table

from harness.gate.budget import memory_figure
from harness.report.render import number_cell

CSV_COLUMNS = ("rank", "candidate", "configuration", "stage", "outcome", "reason", "speedup_vs_fp32",
               "speedup_vs_shipped", "speedup_vs_shipped_low", "speedup_vs_shipped_high", "p50_ms", "p95_ms", "file_mb", "model_mb", "peak_rss_mb",
               "quality_metric", "quality_pct", "quality_drop_pts", "eval_images", "measured_on", "onnx_sha256", "settings")
STAGE_ORDER = {"finalists": 0, "survivors": 1, "screen": 2}


def ranked(result) -> list:
    """Every candidate, best first: by the last stage it reached, then by the objective (rejected ones last)."""
    def order(m):
        value = m.value(result.settings.objective)
        winner = result.winner is not None and m.candidate.name == result.winner.candidate.name
        return (not winner, STAGE_ORDER[m.stage], bool(m.rejected), -(value if value is not None else float("-inf")))

    return sorted(result.measured.values(), key=order)


def outcome(result, m) -> str:
    if result.winner is not None and m.candidate.name == result.winner.candidate.name:
        return "winner"
    if m.rejected:
        return "rejected"
    return {"finalists": "finalist", "survivors": "survivor", "screen": "screened"}[m.stage]


def speed_vs_shipped(m) -> str:
    """The candidate's p50 speed over the shipped variant's: shipped / candidate, interval inverted alike."""
    d = m.vs_shipped
    if m.is_shipped:
        return "(is it)"
    if d is None or d.ratio is None:
        return ""
    return f"x{1 / d.ratio:.3f} ({1 / d.high:.3f}-{1 / d.low:.3f})"


def tune_table(result) -> Table:
    table = Table(title=f"{escape(result.model)} under {escape(result.target.name)}: {len(result.measured)} candidates "
                        f"of {result.space.size()} in the space, {result.settings.objective} objective, against "
                        f"{escape(result.shipped)}")
    memory = "model MB" if result.target.budgets.memory_quantity == "model" else "process MB"
    for column in ("#", "configuration", "stage", "vs fp32", "vs shipped (95 %)", "p50 ms", "p95 ms", memory,
                   "quality", "drop", "outcome"):
        table.add_column(column, justify="left" if column in ("configuration", "stage", "outcome") else "right")
    for rank, m in enumerate(ranked(result), 1):
        r = m.row
        measured = r is not None and r.status == "ok"
        said = outcome(result, m)
        style = {"winner": "[bold green]", "rejected": "[dim]"}.get(said, "")
        table.add_row(str(rank), escape(m.candidate.describe()), m.stage,
                      f"x{r.speedup_vs_fp32:.2f}" if measured and r.speedup_vs_fp32 else "",
                      speed_vs_shipped(m), number_cell(r.p50_ms, 2) if measured else "",
                      number_cell(r.p95_ms, 2) if measured else "", number_cell(m.memory_mb, 1) if measured else "",
                      number_cell(r.quality_pct, 2) if measured and r.quality_pct is not None else "",
                      number_cell(r.quality_drop_pts, 2) if measured and r.quality_drop_pts is not None else "",
                      f"{style}{escape(said)}{'[/]' if style else ''}")
    return table


def tune_lines(result, conclusion) -> list[str]:
    """Under the table: the verdict with its evidence, why the rejected stopped, what was written, the wall time."""
    lines = []
    shipped = result.stages.get("finalists").shipped if "finalists" in result.stages else None
    if result.winner is not None:
        w, d = result.winner, result.winner.vs_shipped
        against = (f"p50 x{1 / d.ratio:.3f} of {result.shipped}'s (95 % interval x{1 / d.high:.3f}-x{1 / d.low:.3f}, "
                   f"{len(d.rounds)} paired rounds in one lockstep group)") if d is not None and d.ratio else \
            f"not paired with {result.shipped}"
        verdict = "beats" if result.beats_shipped else "does not beat"
        lines.append(f"winner: {w.candidate.describe()}: {result.shipped}'s own settings (measured once, as "
                     f"{result.shipped}); no other finalist was faster beside it: {result.shipped} stays" if w.is_shipped
                     else f"winner: {w.candidate.describe()}: {against}: {verdict} {result.shipped} (minimum gain "
                     f"{result.settings.min_gain_pct:g} %)")
        if shipped is not None and shipped.status == "ok":
            quantity = result.target.budgets.memory_quantity  # the memory the budget names: the model's, or the process's
            lines.append(f"{result.shipped} beside it: p50 {shipped.p50_ms:.2f} ms, {quantity} memory "
                         f"{_mb(memory_figure(shipped, result.target))}, {shipped.quality_metric} "
                         f"{_pct(shipped.quality_pct)}; winner: p50 {w.row.p50_ms:.2f} ms, {quantity} memory "
                         f"{_mb(w.memory_mb)}, {w.row.quality_metric} {_pct(w.row.quality_pct)} "
                         f"(drop {_pct(w.row.quality_drop_pts)} pts)")
    else:
        lines.append(f"no winner: {result.stopped or 'no finalist fits every budget'}")
    lines += _previous_lines(result)
    if result.stopped:
        lines.append(f"search cut short: {result.stopped}; everything above was measured before it stopped")
    for m in ranked(result):
        if m.rejected:
            lines.append(f"rejected {m.candidate.describe()} at {m.stage}: {m.rejected}")
    if conclusion.target_file is not None:
        copied = f" (a copy of the built-in {conclusion.copied_from.name})" if conclusion.copied_from else ""
        lines.append(f"written: [variant.{conclusion.name}] in {conclusion.target_file}{copied}, in its variants and "
                     f"ship; ranges in {conclusion.book_file or 'no book (no calibration)'}")
        lines.append(f"rebuilt from what was written: {'the same file' if conclusion.reproduced else 'A DIFFERENT FILE'} "
                     f"(sha256 {conclusion.rebuilt_sha256[:12]})")
    elif conclusion.why_not_written:
        lines.append(f"not written: {conclusion.why_not_written}")
    lines += [f"space: {note}" for note in result.space.notes]
    stages = ", ".join(f"{name} {wall:.0f} s" for name, wall in result.stage_wall_s.items())
    lines.append(f"search: {result.trials_asked} proposals, {len(result.measured)} distinct candidates measured, "
                 f"{result.wall_s:.0f} s wall ({stages})")
    return lines


def _previous_lines(result) -> list[str]:
    """The last search's winner met again: the same configuration, a tie within the interval, or a difference."""
    if result.previous is None or result.winner is None:
        return []
    if result.winner.candidate.key == result.previous.key:
        return ["the last search's winner won again: the same configuration"]
    d = result.against_previous
    if d is None or d.ratio is None:
        return [f"the last search's winner ({result.previous.describe()}) did not reach the finalists here: "
                f"{next((m.rejected for m in result.measured.values() if m.candidate.key == result.previous.key), '')}"]
    said = {"no change": "a tie within the interval", "undecided": "a tie within the interval (undecided)",
            "faster": "this winner is faster", "slower": "this winner is slower"}.get(d.outcome, d.outcome)
    return [f"the last search's winner ({result.previous.describe()}) measured beside this one: this one's speed "
            f"x{1 / d.ratio:.3f} of it (95 % interval x{1 / d.high:.3f}-x{1 / d.low:.3f}, minimum effect "
            f"{d.min_effect_pct:g} %): {said}"]


def _mb(value) -> str:
    return "not measured" if value is None else f"{value:.1f} MB"


def _pct(value) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def tune_csv(result) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for rank, m in enumerate(ranked(result), 1):
        r, d = m.row, m.vs_shipped
        ok = r is not None and r.status == "ok"
        speed = (1 / d.ratio, 1 / d.high, 1 / d.low) if d is not None and d.ratio else (None, None, None)
        figures = (r.speedup_vs_fp32, *speed, r.p50_ms,
                   r.p95_ms, r.file_mb, r.model_mb, r.peak_rss_mb, r.quality_metric, r.quality_pct, r.quality_drop_pts,
                   r.eval_images, r.measured_on, r.onnx_sha256) if ok else (None,) * 14 + (r.onnx_sha256 if r else "",)
        writer.writerow((rank, m.candidate.name, m.candidate.describe(), m.stage, outcome(result, m), m.rejected,
                         *(_cell(v) for v in figures), json.dumps(m.candidate.named.as_table(), sort_keys=True)))
    return out.getvalue()


def _cell(value) -> str:
    return "" if value is None else f"{value:.4f}" if isinstance(value, float) else str(value)


def pareto_front(points: list[tuple[float, float, object]]) -> list:
    """The points no other beats on both speed (higher) and memory (lower)."""
    return [p for p in points if not any(q[0] >= p[0] and q[1] <= p[1] and (q[0], q[1]) != (p[0], p[1]) for q in points)]


def tune_figure(result, out: Path) -> Path:
    """Every measured candidate that fits: speed-up over fp32 against model memory, the quality drop as colour."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = [(m.row.speedup_vs_fp32, m.memory_mb, m) for m in result.measured.values()
              if m.row is not None and m.row.status == "ok" and m.row.speedup_vs_fp32 and m.memory_mb is not None]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    fitting = [p for p in points if not p[2].rejected or p[2].rejected.startswith("below")]
    over = [p for p in points if p not in fitting]
    if over:
        ax.scatter([p[0] for p in over], [p[1] for p in over], marker="x", color="#bbb", label="over a budget")
    if fitting:
        drops = [p[2].row.quality_drop_pts or 0.0 for p in fitting]
        shown = ax.scatter([p[0] for p in fitting], [p[1] for p in fitting], c=drops, cmap="viridis_r", label="fits")
        fig.colorbar(shown, ax=ax, label="quality drop vs fp32 (pts)")
        front = sorted(pareto_front(fitting), key=lambda p: p[0])
        ax.plot([p[0] for p in front], [p[1] for p in front], color="#c33", linewidth=1, label="Pareto front")
    if result.winner is not None and result.winner.row is not None:
        ax.scatter([result.winner.row.speedup_vs_fp32], [result.winner.memory_mb], s=160, facecolors="none",
                   edgecolors="#c33", label="winner")
    ax.set_xlabel("p50 speed-up over fp32 (paired, same group)")
    ax.set_ylabel("model memory, MB (peak RSS over the runtime's floor)" if result.target.budgets.memory_quantity ==
                  "model" else "process memory, MB (peak RSS)")
    ax.set_title(f"{result.model} under {result.target.name}: every candidate measured")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def tune_page(result, conclusion, out_dir: Path) -> Path:
    """tune-<target>-<model>.html: the figure, the ranked table and the lines under it."""
    from harness.files import write_text_atomic
    from harness.report import STYLE, _png_data_uri, _slug

    out_dir.mkdir(parents=True, exist_ok=True)
    stem = f"tune-{_slug(result.target.name)}-{_slug(result.model)}"
    png = tune_figure(result, out_dir / f"{stem}.png")
    head = "".join(f"<th>{c}</th>" for c in ("#", "configuration", "stage", "vs fp32", "vs shipped", "p50 ms", "model MB",
                                             "quality", "outcome", "reason"))
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in (
        rank, m.candidate.describe(), m.stage,
        f"x{m.row.speedup_vs_fp32:.2f}" if m.row is not None and m.row.speedup_vs_fp32 else "",
        speed_vs_shipped(m), number_cell(m.row.p50_ms, 2) if m.row is not None and m.row.status == "ok" else "",
        number_cell(m.row.model_mb, 1) if m.row is not None and m.row.status == "ok" else "",
        "" if m.row is None or m.row.quality_pct is None else f"{m.row.quality_pct:.2f}", outcome(result, m),
        m.rejected)) + "</tr>" for rank, m in enumerate(ranked(result), 1))
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>tune {html.escape(result.model)}</title>"
            f"<style>{STYLE}</style></head><body><h1>harness tune: {html.escape(result.model)} under target "
            f"{html.escape(result.target.name)}</h1><img alt='Pareto front' src='{_png_data_uri(png)}'>"
            f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
            + "".join(f"<p>{html.escape(line)}</p>" for line in tune_lines(result, conclusion)) + "</body></html>")
    path = out_dir / f"{stem}.html"
    write_text_atomic(path, page)
    return path


def objective_figure(m, objective: str) -> str:
    value = m.value(objective)
    return {"p50": f"x{value:.2f} vs fp32", "p95": f"p95 x{value:.2f} vs fp32", "memory": f"{-value:.1f} MB",
            "throughput": f"{value:.1f} images/s"}[objective]


def stage_line(result, run, label: str) -> str:
    objective = result.settings.objective
    ranked = sorted((m for m in run.measured.values() if m.value(objective) is not None), key=lambda m: -m.value(objective))
    fitting = [m for m in ranked if not m.rejected]
    best = f"best that fits: {fitting[0].candidate.describe()} ({objective_figure(fitting[0], objective)})" \
        if fitting else "none fits the budgets"
    rounds = max((m.row.processes or 0 for m in run.measured.values() if m.row is not None and m.row.status == "ok"),
                 default=0)
    most = result.target.gate.ab_max_processes
    after = (f" after {rounds} paired rounds ({'the most gate_ab_max_processes allows' if rounds >= most else 'every margin decided'})"
             if label == "finalists" and rounds and result.settings.objective != "memory" else "")
    n = len(run.measured)
    return (f"{label}: {n} candidate{'' if n == 1 else 's'} in {run.wall_s:.0f} s{after}, {len(run.measured) - len(fitting)} "
            f"over a budget or failed; {best}")
