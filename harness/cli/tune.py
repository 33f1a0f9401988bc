"""`harness tune MODEL --target T`: search runtime x precision x int8 settings x session options for the fastest
configuration that fits the target's budgets, prove it against the shipped variant, and write it as a named variant."""

from __future__ import annotations

import signal
from pathlib import Path

from rich.markup import escape

from harness.cli.options import add_data_options
from harness.errors import EXIT_INTERRUPTED, EXIT_OK, HarnessError


def add_parser(sub) -> None:
    p = sub.add_parser("tune", help="search the post-training space for the fastest configuration that fits a target")
    p.add_argument("model", nargs="?", help="the suite model to tune (default: each model of the suite in turn)")
    p.add_argument("--target", required=True, help="target name (harness targets) or a .toml profile")
    p.add_argument("--objective", default="p50", choices=["p50", "p95", "memory", "throughput"],
                   help="what the search maximizes among configurations that fit every budget (default p50: paired "
                        "speed-up)")
    p.add_argument("--trials", type=int, default=24, help="distinct candidates screened at most (default 24)")
    p.add_argument("--batch", type=int, default=6, help="candidates screened together beside fp32 (default 6)")
    p.add_argument("--survivors", type=int, default=6, help="measured again, longer, on every image (default 6)")
    p.add_argument("--finalists", type=int, default=3,
                   help="measured beside the shipped variant in one lockstep group (default 3)")
    p.add_argument("--screen-images", type=int, default=8, help="evaluation images a screen scores (default 8)")
    p.add_argument("--time-limit", type=float, metavar="S",
                   help="stop before a stage that would start after S seconds and report what was measured")
    p.add_argument("--backend", action="append", default=[], metavar="NAME",
                   help="search only this runtime (repeatable; default: every installed one)")
    p.add_argument("--serving", help="the serving mode measured (default: the target's first)")
    p.add_argument("--against", metavar="VARIANT", help="the variant to beat (default: the target's first shipped one)")
    p.add_argument("--min-gain", type=float, default=5.0, metavar="PCT",
                   help="write the winner only when faster than the shipped variant by this, interval and all (default 5)")
    p.add_argument("--cluster", metavar="ADDRESS",
                   help="measure on a Ray cluster (ray://HOST:PORT, HOST:PORT or auto): a screening batch per node side "
                        "by side; survivors and finalists each on one node (pip install 'harness[ray]')")
    p.add_argument("--seed", type=int, default=0, help="Optuna's seed: the same seed proposes the same first batch")
    p.add_argument("--name", help="the written variant's name (default tuned-MODEL)")
    p.add_argument("--no-write", action="store_true", help="report only: leave the target file as it is")
    p.add_argument("--results-dir", help="where latest/ and the calibration book live (default: results/ of the project)")
    add_data_options(p)
    p.set_defaults(run=run)


def settings_from(args):
    from harness.tune import TuneSettings

    return TuneSettings(trials=args.trials, batch=args.batch, survivors=args.survivors, finalists=args.finalists,
                        screen_images=args.screen_images, objective=args.objective, min_gain_pct=args.min_gain,
                        time_limit_s=args.time_limit, seed=args.seed, serving=args.serving or "",
                        backends=tuple(args.backend), shipped=args.against or "", cluster=args.cluster or "")


def last_winner(csv_path: Path):
    """The last search's winner from its CSV (its settings, JSON), or None; a note when the file is unreadable."""
    import csv
    import json

    from harness.tune.space import Candidate
    from harness.variants.named import NamedVariant

    if not csv_path.is_file():
        return None, ""
    try:
        with csv_path.open(newline="") as f:
            row = next((r for r in csv.DictReader(f) if r.get("outcome") == "winner"), None)
        if row is None:
            return None, ""
        return Candidate(NamedVariant.from_table("previous", json.loads(row["settings"]), str(csv_path))), ""
    except (OSError, ValueError, KeyError, TypeError, HarnessError) as e:
        return None, f"note: the last search's winner in {csv_path} cannot be read ({e}); not compared"


def run(args) -> int:
    import dataclasses

    from harness.cli.bench import results_folder
    from harness.cli.options import bench_inputs
    from harness.files import write_text_atomic
    from harness.report.render import make_console
    from harness.report.tune import tune_csv, tune_lines, tune_page, tune_table
    from harness.spec import load_suite
    from harness.targets import load_target
    from harness.tune import conclude, run_tune, winner_name
    from harness.variants.book import FOLDER

    import importlib.util

    if importlib.util.find_spec("optuna") is None:
        raise HarnessError("harness tune needs Optuna, in the tune extra: pip install 'harness[tune]'")
    settings = settings_from(args)
    console = make_console()
    suite, target = load_suite(args.suite), load_target(args.target)
    names = [m.name for m in suite.models]
    if args.model and args.model not in names:
        raise HarnessError(f"no model '{args.model}' in {suite.path}; its models: {', '.join(names)}")
    if args.name and not args.model and len(names) > 1:
        raise HarnessError("--name names one model's winner: name the model too (harness tune MODEL --name NAME)")
    for name in [args.model] if args.model else names:  # refused now, not after minutes of search
        winner_name(name, args.name or "")
    results_dir = Path(results_folder(args.results_dir, console))
    inputs = dataclasses.replace(bench_inputs(args, suite), calibration_book=results_dir / FOLDER)
    latest = results_dir / "latest"
    for name in [args.model] if args.model else names:
        one = dataclasses.replace(suite, models=[m for m in suite.models if m.name == name])
        csv_path = latest / f"tune-{target.name}-{name}.csv"
        previous, note = last_winner(csv_path)
        if note:
            console.print(escape(note), highlight=False)
        result = run_tune(one, target, inputs, settings, console,
                          say=lambda line: console.print(escape(line), highlight=False), previous=previous)
        signum = getattr(args, "stop", {}).get("signum")
        if result.stopped.startswith("interrupted") and signum not in (None, signal.SIGINT):
            from harness.cli import stopped_by

            result.stopped = stopped_by(signum)  # "terminated (SIGTERM)": how CI cancels a job, not a Ctrl-C
        latest.mkdir(parents=True, exist_ok=True)
        write_text_atomic(csv_path, tune_csv(result))  # what was measured is on disk before anything is written
        console.print(tune_table(result))
        conclusion = conclude(result, one, inputs, results_dir, write=not args.no_write, name=args.name or "")
        for line in tune_lines(result, conclusion):
            console.print(escape(line), highlight=False)
        page = tune_page(result, conclusion, latest)
        console.print(escape(f"every candidate: {csv_path} · the Pareto front: {page}"), highlight=False)
        if result.stopped.startswith(("interrupted", "terminated", "hung up")):  # reported what it had; no next model
            return EXIT_INTERRUPTED if signum in (None, signal.SIGINT) else 128 + signum
        target = load_target(str(conclusion.target_file)) if conclusion.target_file else target  # the next model's
    return EXIT_OK
