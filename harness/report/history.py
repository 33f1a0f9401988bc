"""`harness history` and `harness bisect` for people: the versions table, its CSV, an HTML page with its figure,
and the bisection's steps."""

from __future__ import annotations

import csv
import html
import io
from pathlib import Path

from rich.markup import escape
from rich.table import Table

from harness.report.render import number_cell

CSV_COLUMNS = ("model", "version", "revisions", "first_commit", "subject", "today", "variant", "serving", "backend",
               "status", "p50_ms", "p95_ms", "file_mb", "model_mb", "quality_metric", "quality_pct", "p50_vs_today",
               "p50_vs_today_low", "p50_vs_today_high", "p50_decision", "p95_vs_today", "p95_decision", "group",
               "how", "onnx_sha256")


def _ratio(decision) -> str:
    if decision is None or decision.ratio is None:
        return "[dim]-[/dim]"
    return f"x{decision.ratio:.3f} ({decision.low:.3f}-{decision.high:.3f})"


def history_table(history, target_name: str) -> Table:
    """One row per version and measured run, oldest first: its figures and its p50 against today's, paired."""
    table = Table(title=f"{escape(history.model)} under {escape(target_name)}: {history.versions} distinct version(s) of "
                        f"{len(history.looked_at)} revision(s) that touched its inputs, each measured beside today's")
    for column in ("version", "brought by", "variant", "p50 ms", "p50 vs today (95 % interval)", "decision",
                   "p95 vs today", "file MB", "model MB", "quality"):
        table.add_column(column, justify="left" if column in ("version", "brought by", "variant", "decision") else "right")
    for f in history.figures:
        r, first = f.row, (f.revisions[0] if f.revisions else None)
        subject = escape(first.subject[:40]) if first is not None else "working tree"
        decision = "today" if f.today else (f.p50.outcome if f.p50 else escape(r.status))
        decision += "" if f.group >= 0 else " [dim](kept)[/dim]" if f.how.startswith("kept") else " [dim](chained)[/dim]"
        quality = number_cell(r.quality_pct, 2) if r.quality_pct is not None else "n/a"
        table.add_row(escape(f.label), subject, escape(r.variant), number_cell(r.p50_ms, 2),
                      "x1 (anchor)" if f.today else _ratio(f.p50), decision,
                      "" if f.today else _ratio(f.p95), number_cell(r.file_mb, 2), number_cell(r.model_mb, 1), quality)
    return table


def history_summary(history) -> list[str]:
    """Lines under the table: the oldest version against today's, and what was not built."""
    lines = []
    old = [f for f in history.figures if not f.today and f.p50 is not None and f.p50.ratio]
    if old:
        first = old[0]
        lines.append(f"today's {first.row.variant} p50 is x{1 / first.p50.ratio:.3f} of {first.label}'s "
                     f"(95 % interval x{1 / first.p50.high:.3f}-x{1 / first.p50.low:.3f}), measured beside it in this run")
    elif not history.looked_at:
        lines.append("no commit touched the model's inputs: today's version is the only one")
    elif history.versions == 1:
        lines.append("every revision looked at makes today's very files: one version, nothing changed")
    kept = len({f.label for f in history.figures if f.group < 0})
    lines.append(f"{history.measured_now} version(s) measured in this run (today's included)"
                 + (f", {kept} from paired ratios an earlier run on this machine kept (see the CSV's how)" if kept else ""))
    absent = [rev for rev, why in history.skipped if why.startswith(f"model {history.model} was not in the suite")]
    if absent:  # the model is younger than the span asked for: one line, not one per commit
        lines.append(f"{len(absent)} earlier revision(s) ({absent[0].short}-{absent[-1].short}) did not have "
                     f"{history.model} in the suite")
    for rev, why in (pair for pair in history.skipped if pair[0] not in absent):
        lines.append(f"{rev.short} not built: {why}")
    return lines


def history_csv(histories, target_name: str) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(("target", *CSV_COLUMNS))
    for h in histories:
        for f in h.figures:
            r, first = f.row, (f.revisions[0] if f.revisions else None)
            p50, p95 = f.p50, f.p95
            writer.writerow((target_name, h.model, f.label, " ".join(x.sha for x in f.revisions),
                             first.sha if first else "", first.subject if first else "working tree", f.today,
                             r.variant, r.key.serving, r.runtime, r.status, *(_cell(x) for x in (
                                 r.p50_ms, r.p95_ms, r.file_mb, r.model_mb)), r.quality_metric, _cell(r.quality_pct),
                             *(_cell(getattr(p50, k, None)) for k in ("ratio", "low", "high")),
                             p50.outcome if p50 else "", _cell(getattr(p95, "ratio", None)), p95.outcome if p95 else "",
                             f.group, f.how, r.onnx_sha256))
    return out.getvalue()


def _cell(value) -> str:
    return "" if value is None else f"{value:.4f}" if isinstance(value, float) else str(value)


def history_figure(history, out: Path) -> Path:
    """Each version's p50 against today's with its interval, oldest left; today's at 1."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(max(6.0, 1.1 * history.versions + 2), 4))
    for variant in dict.fromkeys(f.row.variant for f in history.figures):
        shown = [f for f in history.figures if f.row.variant == variant and (f.today or (f.p50 and f.p50.ratio))]
        ratios = [1.0 if f.today else f.p50.ratio for f in shown]
        low = [0.0 if f.today else f.p50.ratio - f.p50.low for f in shown]
        high = [0.0 if f.today else f.p50.high - f.p50.ratio for f in shown]
        ax.errorbar(range(len(shown)), ratios, yerr=[low, high], marker="o", capsize=4, label=variant)
        ax.set_xticks(range(len(shown)), [f.label for f in shown], rotation=30, ha="right", fontsize=8)
    ax.axhline(1.0, color="#888", linewidth=0.8)
    ax.set_ylabel("p50 / today's p50 (paired, 95 % interval)")
    ax.set_title(f"{history.model}: each version beside today's, one run")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def history_page(histories, target_name: str, out_dir: Path) -> Path:
    """history-<target>.html in out_dir: each model's figure and its table."""
    from harness.report import STYLE, _png_data_uri, _slug

    out_dir.mkdir(parents=True, exist_ok=True)
    sections = []
    for h in histories:
        png = history_figure(h, out_dir / f"history_{_slug(target_name)}_{_slug(h.model)}.png")
        rows = "".join(
            "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in (
                f.label, f.row.variant, number_cell(f.row.p50_ms, 2), "anchor" if f.today else _ratio(f.p50).replace(
                    "[dim]-[/dim]", "-"), "today" if f.today else (f.p50.outcome if f.p50 else f.row.status),
                number_cell(f.row.file_mb, 2), number_cell(f.row.model_mb, 1),
                "n/a" if f.row.quality_pct is None else f"{f.row.quality_pct:.2f}")) + "</tr>" for f in h.figures)
        head = "".join(f"<th>{c}</th>" for c in ("version", "variant", "p50 ms", "p50 vs today", "decision", "file MB",
                                                  "model MB", "quality"))
        sections.append(f"<h2>{html.escape(h.model)}</h2><img alt='history of {html.escape(h.model)}' "
                        f"src='{_png_data_uri(png)}'><table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"
                        + "".join(f"<p>{html.escape(line)}</p>" for line in history_summary(h)))
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>history, target {html.escape(target_name)}</title>"
            f"<style>{STYLE}</style></head><body><h1>history under target {html.escape(target_name)}</h1><p>Every "
            f"version was measured in lockstep beside today's in one run by <code>harness history</code>.</p>"
            f"{''.join(sections)}</body></html>")
    path = out_dir / f"history-{_slug(target_name)}.html"
    path.write_text(page)
    return path


def bisect_table(bisection) -> Table:
    table = Table(title=f"bisect {escape(bisection.model)}: --good {bisection.good.short} --bad {bisection.bad.short}, "
                        f"{bisection.ab_count} A/B(s)")
    for column in ("step", "revision", "subject", "outcome", "how", "why"):
        table.add_column(column)
    for index, step in enumerate(bisection.steps, 1):
        table.add_row(str(index), step.revision.short, escape(step.revision.subject[:40]), step.outcome,
                      "A/B in lockstep" if step.measured else "files compared", escape(step.why))
    return table
