"""Print the README's watch table (the default suite's rows) from a results CSV, so the README shows the record.

    python scripts/readme_tables.py results/watch.csv
"""

from __future__ import annotations

import sys
from pathlib import Path

from harness.results import read_rows
from harness.spec import DEFAULT_SUITE, load_suite


def watch_table(path: Path) -> str:
    lines = ["| model | variant | file MB | p50 ms | p95 ms | vs fp32 | peak RSS MB | model MB | mIoU % | ΔmIoU | verdict |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    order = {"fp32": 0, "int8-static": 1, "int8-dynamic": 2, "fp16": 3}
    rows = read_rows(path)
    # the default suite's models, in its order: the record also holds the other suites' rows
    models = [m.name for m in load_suite(DEFAULT_SUITE).models if any(r.model == m.name for r in rows)]
    for model in models:
        for r in sorted((r for r in rows if r.model == model), key=lambda r: order.get(r.variant, 9)):
            drop = -r.quality_drop_pts if r.quality_drop_pts is not None else None
            lines.append(f"| {r.model} | {r.variant} | {r.file_mb:.2f} | {r.p50_ms:.2f} | {r.p95_ms:.2f} | "
                         f"{r.speedup_vs_fp32:.2f}x | {r.peak_rss_mb:.1f} | {r.model_mb:.1f} | {r.quality_pct:.2f} | "
                         f"{drop:+.2f} | {r.verdict} |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(watch_table(Path(sys.argv[1] if len(sys.argv) > 1 else "results/watch.csv")))
