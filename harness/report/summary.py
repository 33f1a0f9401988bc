"""The run as Markdown for a CI job page (`--summary "$GITHUB_STEP_SUMMARY"`): results, then the gate's decisions."""

from __future__ import annotations

from pathlib import Path

from harness.results import ResultRow, shown_cell
from harness.targets import TargetProfile

RESULT_COLUMNS = (("model", "model"), ("variant", "variant"), ("serving", "serving"), ("backend", "backend"),
                  ("file_mb", "file MB"),
                  ("p50_ms", "p50 ms"), ("p95_ms", "p95 ms"), ("speedup_vs_fp32", "vs fp32"),
                  ("images_per_s", "img/s"), ("peak_rss_mb", "peak RSS MB"), ("model_mb", "model MB"),
                  ("quality_pct", "quality %"), ("verdict", "verdict"))


def _cell(text) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _table(headers: list[str], lines: list[list[str]]) -> str:
    out = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    out += ["| " + " | ".join(_cell(c) for c in line) + " |" for line in lines]
    return "\n".join(out)


def markdown_summary(target: TargetProfile, rows: list[ResultRow], report, record_path: Path | None) -> str:
    results = [[shown_cell(name, getattr(r, name)) if getattr(r, name) is not None else "n/a" for name, _ in RESULT_COLUMNS]
               for r in rows]
    for line, row in zip(results, rows):
        if row.status != "ok":
            line[-1] = f"{row.verdict}: {row.status}"
    parts = [f"## harness bench --target {target.name}", "", _table([h for _, h in RESULT_COLUMNS], results), ""]
    if record_path is not None:
        decisions = [[*c.shown, c.outcome, "; ".join(c.reasons) or "; ".join(c.notes[:1])] for c in report.checks]
        parts += [f"### gate against {record_path}", "", _table(["model", "variant", "serving", "backend", "outcome", "why"], decisions),
                  "", f"**{report.summary(target.name)}**", ""]
    else:
        parts += [f"**budgets of {target.name}: {'all shipped rows fit' if report.passed else f'{len(report.failed)} row(s) over a budget or not measured'}**", ""]
    return "\n".join(parts) + "\n"


def append_summary(path: Path, target: TargetProfile, rows: list[ResultRow], report, record_path: Path | None) -> None:
    """Appended, as GitHub's step summary expects (each step adds its part)."""
    from harness.files import disk_error

    try:
        with open(path, "a") as f:
            f.write(markdown_summary(target, rows, report, record_path))
    except OSError as e:
        raise disk_error(e, path, "pass another --summary file") from None
