"""`harness bisect --target T --model M --good REV --bad REV`: the first revision worse than the good one, by A/B."""

from __future__ import annotations

from rich.markup import escape

from harness.cli.history import add_common, prepared
from harness.errors import EXIT_FAILED, EXIT_OK


def add_parser(sub) -> None:
    p = sub.add_parser("bisect", help="find the first revision at which a model got slower (or worse in size, memory "
                                      "or quality) than at a good revision, by same-run A/Bs")
    add_common(p)
    p.add_argument("--good", required=True, metavar="REV", help="a revision whose model was fine")
    p.add_argument("--bad", default="HEAD", metavar="REV", help="a later revision whose model is worse (default HEAD)")
    p.set_defaults(run=run)


def run(args) -> int:
    from harness.errors import HarnessError
    from harness.history.bisect import run_bisect
    from harness.report.history import bisect_table
    from harness.report.render import make_console

    if len(args.model) != 1:
        raise HarnessError("bisect follows one model: give --model once")
    console = make_console()
    suite, target, inputs = prepared(args, args.model[0], console)
    bisection = run_bisect(suite, target, inputs, args.good, args.bad, console)
    if bisection.steps:
        console.print(bisect_table(bisection))
    console.print(escape(f"{bisection.verdict} ({bisection.ab_count} A/B(s) measured)"))
    return EXIT_OK if bisection.first_worse is not None else EXIT_FAILED
