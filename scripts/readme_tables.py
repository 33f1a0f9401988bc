"""Print the README's watch table from a results CSV (the record), so the README shows what the record holds.

    python scripts/readme_tables.py results/watch.csv
"""

from __future__ import annotations

import sys
from pathlib import Path

from harness.results import read_rows


def watch_table(path: Path) -> str:
    lines = ["| model | variant | file MB | p50 ms | p95 ms | vs fp32 | peak RSS MB | model MB | mIoU % | ΔmIoU | verdict |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    order = {"fp32": 0, "int8-static": 1, "int8-dynamic": 2, "fp16": 3}
    rows = read_rows(path)
    models = list(dict.fromkeys(r.model for r in rows))
    baseline = "pspnet_resnet18"
    models = [baseline] + [m for m in ("pspnet_resnet18_decoder256", "pspnet_resnet18_pruned30", "pspnet_mobilenet_v2",
                                       "pspnet_resnet18_factorized_distilled") if m in models] + \
             [m for m in models if m not in (baseline, "pspnet_resnet18_decoder256", "pspnet_resnet18_pruned30",
                                              "pspnet_mobilenet_v2", "pspnet_resnet18_factorized_distilled")]
    for model in models:
        for r in sorted((r for r in rows if r.model == model), key=lambda r: order.get(r.variant, 9)):
            drop = -r.quality_drop_pts if r.quality_drop_pts is not None else None
            lines.append(f"| {r.model} | {r.variant} | {r.file_mb:.2f} | {r.p50_ms:.2f} | {r.p95_ms:.2f} | "
                         f"{r.speedup_vs_fp32:.2f}x | {r.peak_rss_mb:.1f} | {r.model_mb:.1f} | {r.quality_pct:.2f} | "
                         f"{drop:+.2f} | {r.verdict} |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(watch_table(Path(sys.argv[1] if len(sys.argv) > 1 else "results/watch.csv")))
