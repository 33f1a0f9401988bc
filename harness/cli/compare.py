"""`harness compare OLD.csv NEW.csv`: the differences between two results files."""

from __future__ import annotations

from pathlib import Path

from harness.errors import EXIT_OK


def add_parser(sub) -> None:
    p = sub.add_parser("compare", help="show the differences between two results CSVs")
    p.add_argument("old")
    p.add_argument("new")
    p.set_defaults(run=run)


def run(args) -> int:
    from harness.render import compare_table, make_console
    from harness.results import read_rows

    old, new = read_rows(Path(args.old)), read_rows(Path(args.new))
    make_console().print(compare_table(old, new, args.old, args.new))
    return EXIT_OK
