"""The `harness` command: parses arguments, runs one step, turns HarnessError into exit 2."""

from __future__ import annotations

import argparse
import dataclasses
import shlex
import sys
from pathlib import Path

from harness import __version__
from harness.errors import HarnessError, ParityError

EXIT_OK, EXIT_GATE_FAILED, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130


def _input_size(text: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not HEIGHTxWIDTH, e.g. 192x240") from None
    return h, w


def cmd_train(args) -> int:
    from harness.train import TrainConfig, train

    num_classes = args.num_classes or _classes_from_file(Path(args.data), args.task)
    cfg = TrainConfig(
        arch=args.model, data_dir=Path(args.data), out_path=Path(args.out), num_classes=num_classes,
        input_hw=args.input_size, ignore_index=args.ignore_index, max_epochs=args.epochs,
        patience_epochs=args.patience, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
        model_kwargs={"width": args.width} if args.width is not None else None, task=args.task,
        init_checkpoint=Path(args.init) if args.init else None,
    )
    from harness.registry import get_model_info

    get_model_info(cfg.arch)  # unknown names fail before data loading
    result = train(cfg, "harness " + shlex.join(sys.argv[1:]))
    print(f"best val {'top-1' if args.task == 'classification' else 'mIoU'} {result.best_val_quality_pct:.2f}% at epoch {result.best_epoch} "
          f"({result.epochs_run} epochs, {result.seconds:.0f} s); checkpoint {result.out_path}")
    return EXIT_OK


def _resolve_spec(args, suite):
    """MODEL is a suite entry, a registry architecture, or an ONNX file; CLI options override."""
    from harness.spec import ModelSpec, find_spec

    base = find_spec(suite, args.model)
    changes = {k: v for k, v in {
        "checkpoint": Path(args.checkpoint) if args.checkpoint else None,
        "num_classes": args.num_classes, "input_hw": args.input_size,
        "allow_pickle": True if args.allow_pickle else None,
    }.items() if v is not None}
    if base is not None:
        return dataclasses.replace(base, **changes)
    default_hw = suite.models[0].input_hw
    if args.model.endswith(".onnx"):
        source = {"onnx": Path(args.model)}
    else:
        from harness.registry import get_model_info

        stride = get_model_info(args.model).input_stride
        default_hw = tuple(-(-side // stride) * stride for side in default_hw)
        source = {"arch": args.model}
    changes.setdefault("input_hw", default_hw)
    changes.setdefault("num_classes", suite.models[0].num_classes)
    return ModelSpec(name=Path(args.model).stem, **source, **changes)


def cmd_export(args) -> int:
    import shutil

    from harness.bench import default_data_dir
    from harness.data import find_split, load_split
    from harness.export import export_spec
    from harness.render import export_table, make_console
    from harness.spec import load_suite

    suite = load_suite(args.suite)
    spec = _resolve_spec(args, suite)
    split = find_split(default_data_dir(suite, args.data), "val", suite.ignore_index)
    from harness.export import PARITY_IMAGES

    images_u8, _ = load_split(split, spec.input_hw, spec.num_classes, limit=PARITY_IMAGES)
    console = make_console()
    with console.status(f"exporting {spec.name} and checking parity on {len(images_u8)} real images"):
        exported = export_spec(spec, images_u8)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(exported.path, args.out)
        exported = dataclasses.replace(exported, path=Path(args.out))
    console.print(export_table(exported))
    return EXIT_OK


def cmd_bench(args) -> int:
    from harness.bench import run_bench
    from harness.budget import summarize
    from harness.gate import check_schema, run_gate
    from harness.render import gate_table, ladder_table, make_console, recipes_table, results_table
    from harness.results import merge_and_write, read_rows, records_to_csv_text, row_to_record, write_csv_atomic
    from harness.spec import load_suite
    from harness.targets import load_target

    target = load_target(args.target)
    suite = load_suite(args.suite)
    inputs = _bench_inputs(args, suite)
    record_path = Path(args.results_dir) / f"{target.name}.csv"
    recorded = None
    if record_path.is_file():  # an unreadable record fails now, not after minutes of measuring
        recorded = read_rows(record_path)
        check_schema(recorded, str(record_path))
    console = make_console()
    rows = run_bench(suite, target, inputs, console=console)
    console.print(results_table(target, rows))
    if len({r.model for r in rows}) > 1:
        console.print(ladder_table(rows, suite.models[0].name))
    console.print(recipes_table(rows))
    console.print(summarize(rows).line(target))

    records = [row_to_record(r) for r in rows]
    latest = Path(args.results_dir) / "latest" / f"{target.name}.csv"
    write_csv_atomic(latest, records_to_csv_text(records))  # harness compare RECORD LATEST shows the change
    if args.update or recorded is None:
        merge_and_write(record_path, rows)
        console.print(f"{'updated' if recorded is not None else 'recorded'} {record_path}"
                      f"{'' if recorded is not None else ' (first record: nothing to compare with)'}")
    report = run_gate(records, [] if args.update or recorded is None else recorded, target)
    if recorded is not None and not args.update:
        console.print(gate_table(report, record_path))
    if recorded is None or args.update:
        console.print(f"budgets of {target.name}: " + ("all shipped rows fit" if report.passed else
                      f"{len(report.failed)} row(s) over a budget or not measured"))
    else:
        console.print(report.summary(target.name))
    if args.report:
        from harness.report import load_target_results, render_report

        baseline = record_path if recorded is not None and not args.update else None
        files = render_report([load_target_results(latest, baseline)], Path(args.report))
        console.print(f"report written: {files.html} ({len(files.pngs)} PNG figures beside it)")
    if args.no_gate:
        console.print("--no-gate: reporting only, exit 0")
        return EXIT_OK
    return EXIT_OK if report.passed else EXIT_GATE_FAILED


def cmd_report(args) -> int:
    from harness.report import load_target_results, render_report

    results_dir = Path(args.results_dir)
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


def cmd_compare(args) -> int:
    from harness.gate import check_schema
    from harness.render import compare_table, make_console
    from harness.results import read_rows

    old, new = read_rows(Path(args.old)), read_rows(Path(args.new))
    check_schema(old, args.old)
    check_schema(new, args.new)
    make_console().print(compare_table(old, new, args.old, args.new))
    return EXIT_OK


def _bench_inputs(args, suite):
    from harness.bench import BenchInputs, default_data_dir
    from harness.quantize import default_options

    calibration = Path(args.calibration_data) if args.calibration_data else suite.calibration_dir
    options = default_options(
        calibration_method=args.calibration_method or suite.calibration_method,
        calibration_images=args.calibration_images or suite.calibration_images,
        activation_type=args.activation_type,
        keep_output_float=False if args.quantize_output else None,
    )
    return BenchInputs(default_data_dir(suite, args.data), calibration, options, args.max_miou_drop)


def cmd_quantize(args) -> int:
    import shutil

    from harness.bench import calibration_bar, make_variant
    from harness.data import find_split, load_split
    from harness.export import PARITY_IMAGES, export_spec
    from harness.render import make_console
    from harness.spec import load_suite

    suite = load_suite(args.suite)
    spec = _resolve_spec(args, suite)
    inputs = _bench_inputs(args, suite)
    images_u8, _ = load_split(find_split(inputs.data_dir, "val", suite.ignore_index), spec.input_hw,
                              spec.num_classes, limit=PARITY_IMAGES)
    console = make_console()
    with console.status(f"exporting {spec.name}"):
        exported = export_spec(spec, images_u8)
    variant = {"static": "int8-static", "dynamic": "int8-dynamic", "fp16": "fp16"}[args.method]
    from rich.progress import Progress

    with Progress(console=console, transient=True) as progress:
        task = progress.add_task(f"make {variant}", total=None)
        made = make_variant(suite, inputs, spec, exported, variant,
                            say=lambda message: progress.update(task, description=message),
                            on_calibration=calibration_bar(progress, spec.name))
    out = made.path
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(made.path, args.out)
        out = Path(args.out)
    console.print(f"{spec.name} {variant}: {out} ({made.file_mb:.2f} MB, fp32 {exported.file_mb:.2f} MB, "
                  f"{100 * made.file_mb / exported.file_mb:.0f} %){' [cached]' if made.cached else ''}")
    console.print(f"recipe: {made.recipe}")
    if made.nodes_in_float:
        console.print(f"left in float: {', '.join(made.nodes_in_float)}")
    console.print("accuracy and speed: run harness bench, which measures every variant against fp32 in one run")
    return EXIT_OK


def cmd_reduce(args) -> int:
    import torch

    from harness.checkpoint import build_model, read_checkpoint
    from harness.reduce import NEEDS_TRAINING, apply_recipe, count_params, swap_encoder
    from harness.registry import create_model, get_model_info
    from harness.spec import load_suite

    suite = load_suite(args.suite)
    spec = _resolve_spec(args, suite)
    if spec.arch is None:
        raise HarnessError(f"reduce works on registry models and their checkpoints; '{args.model}' is not one")
    if not 0 <= args.soft_weight <= 1 or args.temperature <= 0 or args.epochs < 0:
        raise HarnessError("--soft-weight must be between 0 and 1, --temperature above 0 and --epochs 0 or more")
    if args.recipe in NEEDS_TRAINING and not (args.data and args.epochs):
        raise HarnessError(f"{args.recipe}: the result is only as good as its training: pass --data DIR (with train/ "
                           f"and val/) and --epochs N")
    if args.epochs and not args.data:
        raise HarnessError("--epochs needs --data DIR (with train/ and val/ splits) to fine-tune on")
    if args.data and not all((Path(args.data) / split).is_dir() for split in ("train", "val")):
        raise HarnessError(f"--data {args.data} must hold train/ and val/ split folders to fine-tune on")
    teacher = _teacher_spec(args, suite, spec) if args.recipe == "distill" else None
    if teacher is not None and (teacher.num_classes, teacher.task) != (spec.num_classes, spec.task):
        raise HarnessError(f"distill: teacher {teacher.name} predicts {teacher.num_classes} classes ({teacher.task}) but "
                           f"{spec.name} {spec.num_classes} ({spec.task}); pick a teacher for the same classes")
    if args.recipe == "encoder" and not args.to:
        raise HarnessError("encoder: name the lighter architecture to move to with --to (see harness models)")

    model = build_model(spec).train(False)
    parents = read_checkpoint(spec.checkpoint, spec.allow_pickle)[1] if spec.checkpoint else []
    arch, reductions = spec.arch, parents
    if args.recipe == "encoder":
        info = get_model_info(args.to)
        if info.task != spec.task or any(side % info.input_stride for side in spec.input_hw):
            raise HarnessError(f"encoder: {args.to} cannot replace {spec.arch} ({info.task} model, input sides "
                               f"divisible by {info.input_stride}; this one is {spec.task} at {spec.input_hw[0]}x{spec.input_hw[1]})")
        new_model = create_model(args.to, spec.num_classes)
        carried = swap_encoder(model, new_model)
        note = (f"encoder: {spec.arch} -> {args.to}, parameters {count_params(model):,} -> {count_params(new_model):,} "
                f"({carried:,} carried over by name and shape, the rest untrained)")
        model, arch, reductions = new_model, args.to, []
    elif args.recipe == "distill":
        note = (f"distill: trained against {teacher.name}'s soft targets at T={args.temperature:g} "
                f"(loss {args.soft_weight:g} soft + {1 - args.soft_weight:g} labels)")
    else:
        reduction = apply_recipe(model, args.recipe, torch.zeros(1, 3, *spec.input_hw), args.ratio, args.width)
        note, reductions = reduction.note, parents + [args.recipe]

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    command = "harness " + shlex.join(sys.argv[1:])
    provenance = {"note": note, "parent": str(spec.checkpoint) if spec.checkpoint else None,
                  "history": _checkpoint_history(spec.checkpoint) + [note]}
    _save_reduced(out, model, arch, spec, reductions, command, provenance)
    if args.epochs:
        from harness.train import TrainConfig, train

        cfg = TrainConfig(
            arch=arch, data_dir=Path(args.data), out_path=out, num_classes=spec.num_classes, input_hw=spec.input_hw,
            ignore_index=suite.ignore_index, max_epochs=args.epochs, patience_epochs=args.patience or args.epochs,
            batch_size=args.batch_size, lr=args.lr, model_kwargs=dict(spec.model_kwargs) if arch == spec.arch else None,
            task=spec.task, init_checkpoint=out, teacher=teacher, temperature=args.temperature,
            soft_weight=args.soft_weight, provenance=provenance)
        result = train(cfg, command)
        trained = (f"{result.epochs_run} epochs of {'distillation' if teacher else 'training'} on {args.data}, "
                   f"best val {'top-1' if spec.task == 'classification' else 'mIoU'} {result.best_val_quality_pct:.2f}% "
                   f"(epoch {result.best_epoch})")
        note = f"{note}; {trained}"
        saved = torch.load(out, map_location="cpu", weights_only=True)
        saved.update(note=note, history=provenance["history"][:-1] + [note])
        _atomic_save(saved, out)
    print(f"{out}: {note}")
    return EXIT_OK


def _teacher_spec(args, suite, student):
    """--teacher: a suite entry, or a checkpoint made by harness (it records its architecture)."""
    import torch

    from harness.spec import ModelSpec, find_spec

    if not args.teacher:
        raise HarnessError("distill: name the teacher with --teacher (a suite entry or a harness checkpoint)")
    found = find_spec(suite, args.teacher)
    if found is not None:
        return found
    path = Path(args.teacher)
    if not path.is_file():
        raise HarnessError(f"--teacher {args.teacher} is neither an entry of {args.suite} nor a checkpoint file")
    saved = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(saved, dict) or "arch" not in saved:
        raise HarnessError(f"--teacher {path} does not record its architecture; add it to a suite and name the entry")
    return ModelSpec(name=path.stem, arch=saved["arch"], num_classes=int(saved.get("num_classes", student.num_classes)),
                     input_hw=student.input_hw, checkpoint=path, model_kwargs=dict(saved.get("model_kwargs") or {}),
                     task=student.task)


def _checkpoint_history(path) -> list[str]:
    import torch

    if path is None:
        return []
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # a foreign or pickled checkpoint has no history to carry
        return []
    history = saved.get("history") if isinstance(saved, dict) else None
    return list(history) if isinstance(history, list) else []


def _save_reduced(out, model, arch, spec, reductions, command, provenance) -> None:
    payload = {
        "state_dict": {k: v.detach().clone() for k, v in model.state_dict().items()},
        "arch": arch, "num_classes": spec.num_classes, "input_size": list(spec.input_hw),
        "model_kwargs": dict(spec.model_kwargs) if arch == spec.arch else {}, "reductions": reductions,
        "task": spec.task, "command": command, "harness_version": __version__, **provenance,
    }
    _atomic_save(payload, out)


def _atomic_save(payload: dict, out: Path) -> None:
    import torch

    tmp = out.with_name(out.name + ".tmp")
    torch.save(payload, tmp)
    tmp.replace(out)


def cmd_models(args) -> int:
    from rich.table import Table

    from harness.registry import get_model_info, list_models
    from harness.render import make_console

    table = Table("model", "task", "input sides divisible by", "description", title="registered models", title_justify="left")
    for name in list_models(args.pattern):
        info = get_model_info(name)
        table.add_row(name, info.task, str(info.input_stride), info.description)
    make_console().print(table)
    return EXIT_OK


def cmd_targets(args) -> int:
    from rich.table import Table

    from harness.render import make_console
    from harness.targets import list_target_files, load_target

    table = Table("target", "threads", "serving", "memory budget", "memory cap", "p95 budget", "max mIoU drop",
                  "variants", "file", title="target profiles", title_justify="left")
    for path in list_target_files():
        t = load_target(str(path))
        memory = f"{t.memory_budget_mb:g} MB ({t.memory_quantity})" if t.memory_budget_mb else "none"
        serving = ", ".join(t.serving_label(m) for m in t.serving)
        cap = f"{t.memory_cap_mb:g} MB RSS" if t.memory_cap_mb else "none"
        table.add_row(t.name, str(t.threads), serving, memory, cap,
                      f"{t.p95_budget_ms:g} ms" if t.p95_budget_ms else "none", f"{t.max_miou_drop:g} pt",
                      ", ".join(t.variants), _short_path(path))
    make_console().print(table)
    return EXIT_OK


def _short_path(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _classes_from_file(data_dir: Path, task: str = "segmentation") -> int:
    if task == "classification":
        from harness.data import find_class_split

        return len(find_class_split(data_dir, "train").classes)
    names = data_dir / "classes.txt"
    if not names.is_file():
        raise HarnessError(f"no --num-classes given and {names} does not exist: pass --num-classes N")
    return len([line for line in names.read_text().splitlines() if line.strip()])


def _add_model_options(p) -> None:
    p.add_argument("--checkpoint", help="state_dict (or, with --allow-pickle, a whole module) to load")
    p.add_argument("--allow-pickle", action="store_true", help="let the checkpoint hold a pickled module (trusted files only)")
    p.add_argument("--num-classes", type=int)
    p.add_argument("--input-size", type=_input_size, help="HEIGHTxWIDTH")


def _add_data_options(p) -> None:
    from harness.quantize import CALIBRATION_METHODS
    from harness.spec import DEFAULT_SUITE

    p.add_argument("--suite", default=str(DEFAULT_SUITE), help="suite TOML (default: the built-in suite)")
    p.add_argument("--data", help="evaluation images/ + masks/ folder (default: the suite's)")
    p.add_argument("--calibration-data", help="int8-static calibration images/ (+ masks/) folder (default: the suite's)")
    p.add_argument("--calibration-method", choices=CALIBRATION_METHODS, help="default: the suite's (percentile)")
    p.add_argument("--calibration-images", type=int, help="how many calibration images (default: the suite's, 32)")
    p.add_argument("--activation-type", choices=["uint8", "int8"], help="int8-static activations (default uint8: see README)")
    p.add_argument("--quantize-output", action="store_true",
                   help="int8-static: quantize the node that writes the logits too (ORT's plain default; off by default)")
    p.add_argument("--max-miou-drop", type=float, metavar="PTS",
                   help="int8-static: leave the fewest nodes in float until the mIoU drop is within PTS")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="harness", description="Export, quantize and benchmark vision models on edge targets.")
    parser.add_argument("--version", action="version", version=f"harness {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train a registry model from scratch on an image/mask dataset")
    p.add_argument("model", help="registry name (harness models)")
    p.add_argument("--data", required=True, help="dataset root with train/ and val/, each holding images/ and masks/")
    p.add_argument("--epochs", type=int, default=40, help="most epochs (early stop on val mIoU)")
    p.add_argument("--patience", type=int, default=6, help="stop after this many epochs without a better val mIoU")
    p.add_argument("--out", required=True, help="checkpoint path to write")
    p.add_argument("--num-classes", type=int, help="default: lines in DATA/classes.txt")
    p.add_argument("--ignore-index", type=int, default=255, help="mask value excluded from loss and mIoU")
    p.add_argument("--input-size", type=_input_size, default=(192, 240), help="HEIGHTxWIDTH the images are fitted to")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--width", type=float, help="width multiplier (unet_small, mobilenet_v2)")
    p.add_argument("--task", choices=["segmentation", "classification"], default="segmentation",
                   help="classification: DATA/train and DATA/val hold one folder of images per class")
    p.add_argument("--init", help="start from this checkpoint (fine-tune; e.g. after harness reduce prune)")
    p.set_defaults(func=cmd_train)

    from harness.spec import DEFAULT_SUITE

    p = sub.add_parser("export", help="export a model to ONNX and prove parity on real images")
    p.add_argument("model", help="suite entry, registry name, or a .onnx file of your own")
    p.add_argument("--out", help="also copy the ONNX file here")
    _add_model_options(p)
    p.add_argument("--suite", default=str(DEFAULT_SUITE), help="suite TOML (default: the built-in suite)")
    p.add_argument("--data", help="images/ + masks/ folder for the parity check (default: the suite's)")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("bench", help="measure every model of a suite under a target profile")
    p.add_argument("--target", required=True, help="target name (harness targets) or a .toml profile")
    _add_data_options(p)
    p.add_argument("--results-dir", default="results", help="where the record <target>.csv lives")
    p.add_argument("--update", action="store_true", help="rewrite the record with this run (other models' rows kept)")
    p.add_argument("--no-gate", action="store_true", help="measure and report; never exit 1")
    p.add_argument("--report", nargs="?", const="report", metavar="DIR",
                   help="also write the HTML report of this run (default folder: report)")
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("report", help="write an HTML page and PNG figures of the trade-offs from results CSVs")
    p.add_argument("--target", action="append", help="target name (or a results CSV); repeat for several; default: all")
    p.add_argument("--results-dir", default="results", help="where <target>.csv files are read")
    p.add_argument("--baseline", help="a folder of earlier results CSVs to show as the committed baseline")
    p.add_argument("--out", default="report", help="folder for index.html and the PNGs")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("compare", help="show the differences between two results CSVs")
    p.add_argument("old")
    p.add_argument("new")
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("quantize", help="make one int8 or fp16 variant of a model with ONNX Runtime")
    p.add_argument("model", help="suite entry, registry name, or a .onnx file of your own")
    p.add_argument("--method", required=True, choices=["static", "dynamic", "fp16"])
    p.add_argument("--out", help="also copy the variant's ONNX file here")
    _add_model_options(p)
    _add_data_options(p)
    p.set_defaults(func=cmd_quantize)

    from harness.reduce import RECIPES

    p = sub.add_parser("reduce", help="apply a reduction recipe to a model's checkpoint and write a smaller one")
    p.add_argument("recipe", choices=list(RECIPES))
    p.add_argument("model", help="suite entry or registry name")
    p.add_argument("--out", required=True, help="checkpoint to write")
    p.add_argument("--ratio", type=float, default=0.3, help="prune: share of channels to remove (default 0.3)")
    p.add_argument("--width", type=int, default=256, help="decoder-width: channels of the widest decoder layer after (default 256)")
    p.add_argument("--to", help="encoder: the registry architecture with the lighter encoder, e.g. pspnet_mobilenet_v2")
    p.add_argument("--teacher", help="distill: the teacher, a suite entry or a harness checkpoint")
    p.add_argument("--temperature", type=float, default=4.0, help="distill: softmax temperature T (default 4)")
    p.add_argument("--soft-weight", type=float, default=0.25, help="distill: weight of the soft-target loss; labels get the rest (default 0.25)")
    p.add_argument("--data", help="dataset root with train/ and val/ to (re)train on after the recipe")
    p.add_argument("--epochs", type=int, default=0, help="epochs of training after the recipe (default 0: none)")
    p.add_argument("--patience", type=int, help="stop after this many epochs without a better val score (default: never)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--suite", default=str(DEFAULT_SUITE), help="suite TOML (default: the built-in suite)")
    _add_model_options(p)
    p.set_defaults(func=cmd_reduce)

    p = sub.add_parser("models", help="list registered model architectures")
    p.add_argument("pattern", nargs="?", default="*")
    p.set_defaults(func=cmd_models)

    p = sub.add_parser("targets", help="list target profiles and their budgets")
    p.set_defaults(func=cmd_targets)
    return parser


INTERRUPT_GRACE_S = 15.0


def _on_interrupt(timers: list, signum, frame) -> None:
    """Ctrl-C unwinds normally; if unwinding hangs (a lock held mid-interrupt), leave anyway after a grace period.

    Leaving hard is safe: results CSVs are only ever replaced by rename, and measuring children die
    with their parent (PR_SET_PDEATHSIG).
    """
    import os
    import threading

    def leave() -> None:
        print("interrupted: results on disk are unchanged (stopped hard: clean-up hung)", file=sys.stderr)
        os._exit(EXIT_INTERRUPTED)

    timer = threading.Timer(INTERRUPT_GRACE_S, leave)
    timer.daemon = True
    timer.start()
    timers.append(timer)
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    import functools
    import signal
    import threading

    parser = build_parser()
    args = parser.parse_args(argv)
    in_main_thread = threading.current_thread() is threading.main_thread()
    timers: list = []
    previous = signal.signal(signal.SIGINT, functools.partial(_on_interrupt, timers)) if in_main_thread else None
    try:
        return _run(args)
    finally:
        for timer in timers:  # unwinding finished: no hard stop needed
            timer.cancel()
        if in_main_thread:
            signal.signal(signal.SIGINT, previous)


def _run(args) -> int:
    try:
        return args.func(args)
    except ParityError as e:  # the export ran but is not faithful: a failed check, not bad input
        if args.debug:
            raise
        print(f"error: {e}", file=sys.stderr)
        return EXIT_GATE_FAILED
    except HarnessError as e:
        if args.debug:
            raise
        print(f"error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("interrupted: results on disk are unchanged", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
