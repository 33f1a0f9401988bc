"""`harness report`: an HTML page and PNG figures of every target's trade-offs, from results CSVs."""

from __future__ import annotations

from pathlib import Path

from harness.errors import EXIT_OK, HarnessError


def add_parser(sub) -> None:
    p = sub.add_parser("report", help="write an HTML page and PNG figures of the trade-offs from results CSVs")
    p.add_argument("--target", action="append", help="target name (or a results CSV); repeat for several; default: all")
    p.add_argument("--results-dir", help="where <target>.csv files are read (default: results/ of the project)")
    p.add_argument("--baseline", help="a folder of earlier results CSVs to show as the committed baseline")
    p.add_argument("--out", default="report", help="folder for index.html and the PNGs")
    p.set_defaults(run=run)


def run(args) -> int:
    from harness.report import load_target_results, render_report

    from harness.files import writable_folder

    writable_folder(args.out, "--out")
    from harness.files import project_root

    results_dir = Path(args.results_dir) if args.results_dir else project_root() / "results"
    names = args.target or sorted(p.stem for p in results_dir.glob("*.csv"))
    if not names:
        raise HarnessError(f"no results CSVs in {results_dir}: run harness bench --target NAME first, or pass --results-dir")
    baseline_dir = Path(args.baseline) if args.baseline else None
    targets = []
    for name in names:
        csv_path = Path(name) if name.endswith(".csv") else results_dir / f"{name}.csv"
        baseline = baseline_dir / csv_path.name if baseline_dir and (baseline_dir / csv_path.name).is_file() else None
        targets.append(load_target_results(csv_path, baseline))
    files = render_report(targets, Path(args.out))
    print(f"report written: {files.html} ({len(files.pngs)} PNG figures beside it)")
    return EXIT_OK
