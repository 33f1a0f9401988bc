"""`harness compare OLD.csv NEW.csv`: the differences between two results files."""

from __future__ import annotations

from pathlib import Path

from harness.errors import EXIT_OK, HarnessError


def add_parser(sub) -> None:
    p = sub.add_parser("compare", help="show the differences between two results CSVs, or decide two raw latency files")
    p.add_argument("old", help="results CSV, or a .raw.json written beside one")
    p.add_argument("new")
    p.add_argument("--min-effect", type=float, default=10.0, metavar="PCT",
                   help="raw files: the smallest p50 change the rank rule may call slower or faster (default 10)")
    p.set_defaults(run=run)


def run(args) -> int:
    from harness.report.render import compare_table, make_console, rule_table
    from harness.results import read_rows

    if args.old.endswith(".raw.json") and args.new.endswith(".raw.json"):
        old, new = _per_process_p50s(Path(args.old)), _per_process_p50s(Path(args.new))
        make_console().print(rule_table(old, new, args.old, args.new, args.min_effect))
        return EXIT_OK
    old, new = read_rows(Path(args.old)), read_rows(Path(args.new))
    make_console().print(compare_table(old, new, args.old, args.new))
    return EXIT_OK


def _per_process_p50s(path: Path) -> dict:
    """Each row's per-process medians from a raw latency file (results/latest/<target>.raw.json)."""
    import json
    import statistics

    from harness.results import record_key

    try:
        doc = json.loads(path.read_text())
        return {record_key(r): tuple(statistics.median(p) for p in r["per_process_latencies_ms"] if p)
                for r in doc["rows"]}
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise HarnessError(f"{path} is not a raw latency file written by harness bench ({type(e).__name__}); "
                           f"pass two results/latest/<target>.raw.json files") from e
