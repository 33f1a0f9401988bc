"""`harness history --target T --model M`: a model's versions at earlier revisions, measured beside today's in one run."""

from __future__ import annotations

from pathlib import Path

from rich.markup import escape

from harness.cli.options import add_data_options, bench_inputs
from harness.errors import EXIT_OK, HarnessError


def add_parser(sub) -> None:
    p = sub.add_parser("history", help="measure a model's versions at its last N revisions side by side with today's")
    add_common(p)
    span = p.add_mutually_exclusive_group()
    span.add_argument("--last", type=int, default=10, metavar="N",
                      help="the last N revisions that touched the model's inputs (default 10)")
    span.add_argument("--since", metavar="REV", help="every revision since this one (itself included)")
    p.add_argument("--group-size", type=int, default=6, metavar="K",
                   help="versions per lockstep group, today's included (default 6); more versions: several groups, "
                        "each with today's")
    p.add_argument("--fresh", action="store_true",
                   help="measure every version in this run (default: reuse the paired ratios an earlier history run "
                        "on this machine kept for the same files, and measure only what changed plus the anchors)")
    p.set_defaults(run=run)


def add_common(p) -> None:
    """The options history and bisect share."""
    p.add_argument("--target", required=True, help="target name (harness targets) or a .toml profile")
    p.add_argument("--model", action="append", default=[], metavar="PATTERN", required=True,
                   help="the model (a glob; repeatable for history: each matching model in turn)")
    p.add_argument("--variant", action="append", default=[], metavar="NAME",
                   help="the variant(s) to measure (default: those the target ships; fp32 is measured too)")
    p.add_argument("--results-dir", help="where latest/ lives (default: results/ of the project)")
    add_data_options(p)


def prepared(args, pattern: str, console):
    """The suite narrowed to one model, the target, and the bench inputs (the project's calibration book)."""
    import dataclasses
    import fnmatch

    from harness.cli.bench import results_folder
    from harness.history import narrowed
    from harness.spec import load_suite
    from harness.targets import load_target
    from harness.variants.book import FOLDER

    suite, target = load_suite(args.suite), load_target(args.target)
    if not any(fnmatch.fnmatchcase(m.name, pattern) for m in suite.models):
        raise HarnessError(f"no model of {suite.path} matches --model {pattern}; its models: "
                           f"{', '.join(m.name for m in suite.models)}")
    args.results_dir = results_folder(args.results_dir, console)
    suite, target = narrowed(suite, target, pattern, tuple(args.variant))
    inputs = dataclasses.replace(bench_inputs(args, suite), calibration_book=Path(args.results_dir) / FOLDER)
    return suite, target, inputs


def run(args) -> int:
    import fnmatch

    from harness.files import write_text_atomic
    from harness.history import run_history
    from harness.report.history import history_csv, history_page, history_summary, history_table
    from harness.report.render import make_console
    from harness.spec import load_suite

    if args.last is not None and args.last < 1:
        raise HarnessError(f"--last {args.last}: give at least 1 revision")
    if args.group_size < 2:
        raise HarnessError(f"--group-size {args.group_size}: a group holds today's version and at least one other")
    console = make_console()
    names = [m.name for m in load_suite(args.suite).models if any(fnmatch.fnmatchcase(m.name, p) for p in args.model)]
    if not names:
        raise HarnessError(f"no model of {args.suite} matches --model {' '.join(args.model)}")
    histories = []
    for name in names:
        suite, target, inputs = prepared(args, name, console)
        history = run_history(suite, target, inputs, None if args.since else args.last, args.since, args.group_size, console,
                              args.fresh)
        histories.append(history)
        console.print(history_table(history, target.name))
        for line in history_summary(history):
            console.print(escape(line))
    latest = Path(args.results_dir) / "latest"
    csv_path = latest / f"history-{target.name}.csv"
    write_text_atomic(csv_path, history_csv(histories, target.name))
    page = history_page(histories, target.name, latest)
    console.print(escape(f"written: {csv_path}, {page}"))
    return EXIT_OK
