"""`harness bench --target T`: measure a suite under a target, print the tables, write the CSVs, gate."""

from __future__ import annotations

import json
from pathlib import Path

from rich.markup import escape

from harness.cli.options import add_data_options, bench_inputs, writable_file
from harness.files import writable_folder
from harness.errors import EXIT_FAILED, EXIT_OK, Interrupted


def add_parser(sub) -> None:
    p = sub.add_parser("bench", help="measure every model of a suite under a target profile")
    p.add_argument("--target", required=True, help="target name (harness targets) or a .toml profile")
    add_data_options(p)
    p.add_argument("--results-dir", help="where the record <target>.csv lives (default: results/ of the project, "
                                         "the nearest folder above holding results/ or targets/, or the git root)")
    p.add_argument("--update", action="store_true", help="rewrite the record with this run (other models' rows kept)")
    p.add_argument("--no-gate", action="store_true", help="measure and report; never exit 1")
    p.add_argument("--against", metavar="REV", help="A/B every model against its version at this git revision "
                                                     "(e.g. the pull request's base branch), measured in this run")
    p.add_argument("--strict", action="store_true", help="a row whose latency could not be gated, or stayed undecided on a noisy host, fails")
    p.add_argument("--force", action="store_true", help="record even a run in which every row failed")
    p.add_argument("--cluster", metavar="ADDRESS",
                   help="measure on a Ray cluster: ray://HOST:PORT, HOST:PORT or auto (pip install 'harness[ray]'); "
                        "one measurement per node at a time, each model on one node")
    p.add_argument("--report", nargs="?", const="report", metavar="DIR",
                   help="also write the HTML report of this run (default folder: report)")
    narrow = p.add_argument_group("narrowing a run (each repeatable; the gate judges only the rows measured)")
    narrow.add_argument("--model", action="append", default=[], metavar="PATTERN",
                        help="only models whose name matches this glob, e.g. 'pspnet_resnet18*'")
    narrow.add_argument("--variant", action="append", default=[], metavar="NAME",
                        help="only this variant of the target's (fp32 is measured too: every ratio needs it)")
    narrow.add_argument("--serving", action="append", default=[], metavar="MODE",
                        help="only this serving mode of the target's: batched, concurrent or http")
    narrow.add_argument("--backend", action="append", default=[], metavar="NAME",
                        help="only this backend's rows of the target's, e.g. openvino (ONNX Runtime's fp32 is "
                             "measured too: every ratio is against it)")
    out = p.add_argument_group("output for scripts and CI")
    out.add_argument("--verbose", action="store_true", help="print every table (results, ladder, recipes, the gate's "
                                                            "notes for every row) instead of the one-screen summary")
    out.add_argument("--json", action="store_true", help="print the rows and the gate's decisions as JSON on stdout "
                                                         "(the tables go to stderr)")
    out.add_argument("--profile", action="store_true", help="also profile each measured variant operator by operator "
                                                            "(as harness profile; traces in <results-dir>/latest/profile)")
    out.add_argument("--summary", metavar="FILE.md", help="append the results and gate tables as Markdown to this "
                                                          "file (e.g. \"$GITHUB_STEP_SUMMARY\")")
    p.set_defaults(run=run)


def run(args) -> int:
    from harness.bench.narrow import Narrowing
    from harness.bench.pipeline import BenchPipeline
    from harness.report.render import make_console
    from harness.spec import load_suite
    from harness.targets import load_target

    narrowing = Narrowing(tuple(args.model), tuple(args.variant), tuple(args.serving), tuple(args.backend))
    console = make_console(stderr=args.json)
    args.results_dir = results_folder(args.results_dir, console)
    full_target = load_target(args.target)
    suite, target = narrowing.apply(load_suite(args.suite), full_target)
    inputs = bench_inputs(args, suite, narrowing.backends)
    if args.summary:
        writable_file(args.summary, "--summary")
    if args.report:
        writable_folder(args.report, "--report")
    pipeline = BenchPipeline(suite, target, inputs, Path(args.results_dir), args.update, args.against, args.strict,
                             args.force, narrowing, full_target, args.cluster, console)
    run = pipeline.measure()
    if args.verbose:
        _print_tables(console, target, run.rows, suite.models[0].name)
    _print_not_measured(console, run.rows)
    for note in run.notes:
        console.print(f"[yellow]note[/yellow]: {escape(note)}")
    if args.profile:
        from harness.cli.profile import profile_bench_run

        profile_bench_run(console, target, suite, run, args)
    latest = pipeline.write(run)
    try:
        report = pipeline.gate(run, latest)
        _print_gate(console, pipeline, report, run.rows, latest, args)
    except KeyboardInterrupt:
        written = pipeline.record.path if args.update or pipeline.record.rows is None else latest
        raise Interrupted(f"interrupted after this run was written to {written}") from None
    _outputs(args, console, pipeline, run.rows, report, latest)
    if args.no_gate:
        console.print("--no-gate: reporting only, exit 0")
        return EXIT_OK
    return EXIT_OK if report.passed else EXIT_FAILED


def _outputs(args, console, pipeline, rows, report, latest: Path) -> None:
    """--json, --summary and --report."""
    record = pipeline.record
    if args.json:
        print(json.dumps({"target": pipeline.target.name, "rows": [r.cells() for r in rows],
                          "gate": json.loads(report.to_json())}, indent=1, default=str))
    if args.summary:
        from harness.report.summary import append_summary

        append_summary(Path(args.summary), pipeline.target, rows, report, record.path if record.rows is not None else None)
    if args.report:
        from harness.report import load_target_results, render_report

        baseline = record.path if record.rows is not None and not args.update else None
        files = render_report([load_target_results(latest, baseline)], Path(args.report))
        console.print(f"report written: {escape(str(files.html))} ({len(files.pngs)} PNG figures beside it)")


def _print_gate(console, pipeline, report, rows, latest: Path | None, args) -> None:
    from harness.report.render import gate_table
    from harness.report.screen import bench_screen

    target = pipeline.target
    if not args.verbose:
        from harness.report.render import served_table

        served = served_table(rows)  # a service's own figures (held rate, server memory) are what its rows are for
        if served is not None:
            console.print(served)
        record = pipeline.record.path if pipeline.comparing else None
        from harness.cli.options import DEFAULT_SUITE

        suite = None if args.suite == str(DEFAULT_SUITE) else args.suite  # the next command names a suite of the user's
        console.print(bench_screen(target, rows, report, record, latest, suite, updated=args.update))
    elif pipeline.comparing:
        console.print(gate_table(report, pipeline.record.path))
        console.print(report.summary(target.name))
    else:
        console.print(f"budgets of {target.name}: " + ("all shipped rows fit" if report.passed else
                      f"{len(report.failed)} row(s) over a budget or not measured"))


def results_folder(given: str | None, console) -> str:
    """--results-dir as given, else results/ of the project found from here upwards (said when it is not here)."""
    from harness.files import project_root

    if given:
        return given
    root = project_root()
    if root != Path.cwd().resolve():
        console.print(escape(f"project folder: {root} (found above {Path.cwd()}); records in {root / 'results'}"))
    return str(root / "results")


def _print_tables(console, target, rows, baseline_model: str) -> None:
    from harness.gate.budget import summarize
    from harness.report.render import ladder_table, recipes_table, results_table, served_table

    console.print(results_table(target, rows))
    served = served_table(rows)
    if served is not None:
        console.print(served)
    if len({r.model for r in rows}) > 1:
        console.print(ladder_table(rows, baseline_model))
    console.print(recipes_table(rows))
    console.print(summarize(rows).line(target))


def _print_not_measured(console, rows) -> None:
    """One line per model and reason a row could not be measured, on every output: no row fails silently."""
    for model, why in dict.fromkeys((r.model, r.status) for r in rows if r.status != "ok" and r.verdict == "not measured"):
        console.print(f"[red]not measured[/red]: {escape(model)}: {escape(why)}", soft_wrap=True)
