"""`harness targets`: the target profiles and their budgets."""

from __future__ import annotations

from harness.errors import EXIT_OK


def add_parser(sub) -> None:
    p = sub.add_parser("targets", help="list target profiles and their budgets")
    p.set_defaults(run=run)


def run(args) -> int:
    from harness.report.render import make_console, targets_table
    from harness.targets import list_target_files, load_target

    make_console().print(targets_table([load_target(str(path)) for path in list_target_files()]))
    return EXIT_OK
