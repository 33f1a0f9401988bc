"""Option groups several commands share, and how their values become a model spec or bench inputs."""

from __future__ import annotations

import argparse
import dataclasses
import shlex
import sys
from pathlib import Path

from harness.measure.backends import DEFAULT_BACKEND
from harness.errors import HarnessError
from harness.files import writable_folder
from harness.spec import DEFAULT_SUITE


def input_size(text: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not HEIGHTxWIDTH, e.g. 192x240") from None
    return h, w


def command_line() -> str:
    """This invocation, as a checkpoint records it."""
    return "harness " + shlex.join(sys.argv[1:])


def add_suite_option(p) -> None:
    p.add_argument("--suite", default=str(DEFAULT_SUITE), help="suite TOML (default: the built-in suite)")


def add_model_options(p) -> None:
    p.add_argument("--checkpoint", help="state_dict (or, with --allow-pickle, a whole module) to load")
    p.add_argument("--allow-pickle", action="store_true", help="let the checkpoint hold a pickled module (trusted files only)")
    p.add_argument("--num-classes", type=int)
    p.add_argument("--input-size", type=input_size, help="HEIGHTxWIDTH")


def add_training_options(p) -> None:
    """Where training runs and how the checkpoint stores its weights (train, and reduce when it retrains)."""
    p.add_argument("--device", default="cpu", help="torch device to train on: cpu (default) or cuda[:N]")
    p.add_argument("--weights-dtype", choices=["float32", "float16"], default="float32",
                   help="how the checkpoint stores float weights; float16 halves the file, loading casts back")


def model_arg(text: str) -> tuple[str, object]:
    """KEY=VALUE for the architecture's factory; numbers become int or float."""
    key, sep, value = text.partition("=")
    if not sep or not key.isidentifier():
        raise argparse.ArgumentTypeError(f"'{text}' is not KEY=VALUE, e.g. hidden_units=512")
    for kind in (int, float):
        try:
            return key, kind(value)
        except ValueError:
            pass
    return key, {"true": True, "false": False}.get(value.lower(), value)


def add_data_options(p) -> None:
    """Evaluation and calibration data, and how int8-static is made."""
    from harness.variants.quantize import CALIBRATION_METHODS, DEFAULT_CALIBRATION_IMAGES, DEFAULT_CALIBRATION_METHOD

    add_suite_option(p)
    p.add_argument("--data", help="evaluation data: a split folder (images/ + masks/, or one folder per class) or a "
                                  "dataset root holding val/ (default: the suite's)")
    p.add_argument("--calibration-data", help="calibration images: a split folder or a root holding train/ (default: the suite's)")
    p.add_argument("--calibration-method", choices=CALIBRATION_METHODS, help=f"default: the suite's ({DEFAULT_CALIBRATION_METHOD})")
    p.add_argument("--calibration-images", type=int, help=f"how many calibration images (default: the suite's, {DEFAULT_CALIBRATION_IMAGES})")
    p.add_argument("--activation-type", choices=["uint8", "int8"], help="int8-static activations (default uint8: see README)")
    p.add_argument("--quantize-output", action="store_true",
                   help="int8-static: quantize the node that writes the logits too (ORT's plain default; off by default)")
    p.add_argument("--max-miou-drop", type=float, metavar="PTS",
                   help="int8-static: leave the fewest nodes in float until the quality drop is within PTS")


def resolve_spec(args, suite):
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
        from harness.models import get_model_info

        stride = get_model_info(args.model).input_stride
        default_hw = tuple(-(-side // stride) * stride for side in default_hw)
        source = {"arch": args.model}
        changes = {**_recorded_by(args), **changes}
    changes.setdefault("input_hw", default_hw)
    changes.setdefault("num_classes", suite.models[0].num_classes)
    changes.setdefault("task", suite.task)
    return ModelSpec(name=Path(args.model).stem, **source, **changes)


def _recorded_by(args) -> dict:
    """What a harness checkpoint of this architecture records (classes, input size, keywords, task)."""
    from harness.models.checkpoint import checkpoint_fields

    saved = checkpoint_fields(Path(args.checkpoint)) if args.checkpoint and Path(args.checkpoint).is_file() else {}
    if saved.get("arch") != args.model:
        return {}
    recorded = {"num_classes": saved.get("num_classes"), "model_kwargs": saved.get("model_kwargs"), "task": saved.get("task"),
                "input_hw": tuple(saved["input_size"]) if saved.get("input_size") else None}
    return {k: v for k, v in recorded.items() if v is not None}


def bench_inputs(args, suite, backends_only: tuple[str, ...] = ()):
    """The data and quantization options of bench and quantize, from the suite with CLI overrides."""
    from harness.bench import BenchInputs, default_data_dir
    from harness.variants.quantize import default_options

    calibration = Path(args.calibration_data) if args.calibration_data else suite.calibration_dir
    images = args.calibration_images if args.calibration_images is not None else suite.calibration_images
    options = default_options(
        calibration_method=args.calibration_method or suite.calibration_method,
        calibration_images=images,
        activation_type=args.activation_type,
        keep_output_float=False if args.quantize_output else None,
    )
    return BenchInputs(default_data_dir(suite, args.data), calibration, options, args.max_miou_drop, backends_only)


def parity_images(suite, spec, data_arg: str | None):
    """The first few evaluation images, fitted to the spec's input: the export's parity check runs on them."""
    from harness.bench import default_data_dir
    from harness.export import PARITY_IMAGES
    from harness.tasks import get_task

    images_u8, _ = get_task(spec.task).load(default_data_dir(suite, data_arg), "val", suite.ignore_index, spec.input_hw,
                                           spec.num_classes, limit=PARITY_IMAGES)
    return images_u8


def writable_file(path: str | None, option: str) -> None:
    """An output file, checked before any work."""
    if not path:
        return
    if Path(path).is_dir():
        raise HarnessError(f"{option} {path} is a folder: pass a file name, e.g. {Path(path) / 'model.onnx'}")
    writable_folder(Path(path).parent, option)


def copy_out(path: Path, out: str | None) -> Path:
    """Also copy a made file to --out; return where the user should look."""
    import shutil

    if not out:
        return path
    try:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, out)
    except OSError as e:
        raise HarnessError(f"--out {out} cannot be written ({e.strerror}); pass a path you can write to") from e
    return Path(out)


def variant_file(args, suite, spec, variant: str, target=None):
    """The file of one variant of `spec` (exported and made as bench makes it, from the cache when it can); a named
    variant of `target` with its own settings."""
    from rich.markup import escape

    from harness.bench import make_variant, plan_bench
    from harness.export import export_spec
    from harness.report.render import make_console
    from harness.targets import TargetProfile
    from harness.variants.named import resolve_variant

    console = make_console()
    images_u8 = parity_images(suite, spec, args.data)
    with console.status(f"exporting {escape(spec.name)}"):
        exported = export_spec(spec, images_u8)
    if variant == "fp32":
        return exported.path
    named = target.scenario.named_variants if target is not None else ()
    one_variant = TargetProfile.from_flat(
        "one-variant", threads=1, variants=(variant,), named_variants=named,
        backends=tuple(dict.fromkeys((DEFAULT_BACKEND, *resolve_variant(variant, named).backends))))
    plan = plan_bench(suite, one_variant, bench_inputs(args, suite))
    with console.status(f"making {variant}"):
        made = make_variant(plan, spec, exported, variant, say=lambda message: None, on_calibration=None)
    console.print(escape(f"{spec.name} {variant}: {made.recipe}"), highlight=False)
    return made.path
