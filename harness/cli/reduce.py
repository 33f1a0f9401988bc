"""`harness reduce RECIPE MODEL --out F.pt`: apply one reduction recipe, write the checkpoint, then (re)train it."""

from __future__ import annotations

from pathlib import Path

from harness.cli.options import add_model_options, add_suite_option, add_training_options, command_line, resolve_spec
from harness.errors import EXIT_OK, HarnessError


# harness.reduce.RECIPES, named here so that parsing a command line does not import torch (a test holds them equal)
RECIPE_CHOICES = ("encoder", "decoder-width", "prune", "factorize", "distill")


def add_parser(sub) -> None:
    p = sub.add_parser("reduce", help="apply a reduction recipe to a model's checkpoint and write a smaller one")
    p.add_argument("recipe", choices=RECIPE_CHOICES)
    p.add_argument("model", help="suite entry or registry name")
    p.add_argument("--out", required=True, help="checkpoint to write")
    p.add_argument("--ratio", type=float, default=0.3, help="prune: share of channels to remove (default 0.3)")
    p.add_argument("--channels", "--width", dest="channels", type=int, default=256,
                   help="decoder-width: channels of the widest decoder layer after (default 256)")
    p.add_argument("--to", help="encoder: the registry architecture with the lighter encoder, e.g. pspnet_mobilenet_v2")
    p.add_argument("--teacher", help="distill: the teacher, a suite entry or a harness checkpoint")
    p.add_argument("--temperature", type=float, default=4.0, help="distill: softmax temperature T (default 4)")
    p.add_argument("--soft-weight", type=float, default=0.25, help="distill: weight of the soft-target loss; labels get the rest (default 0.25)")
    p.add_argument("--data", help="dataset root with train/ and val/ to (re)train on after the recipe")
    p.add_argument("--epochs", type=int, default=0, help="epochs of training after the recipe (default 0: none)")
    p.add_argument("--patience", type=int, help="stop after this many epochs without a better val score (default: never)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--lr", type=float, default=1e-3)
    add_training_options(p)
    add_suite_option(p)
    add_model_options(p)
    p.set_defaults(run=run)


def run(args) -> int:
    from harness.models.checkpoint import checkpoint_fields, update_checkpoint, write_checkpoint
    from harness.spec import load_suite

    suite = load_suite(args.suite)
    spec = resolve_spec(args, suite)
    teacher = _check(args, suite, spec)
    reduced = _reduce(spec, args)
    note = reduced.note
    if teacher is not None:
        note = (f"distill: trained against {teacher.name}'s soft targets at T={args.temperature:g} "
                f"(loss {args.soft_weight:g} soft + {1 - args.soft_weight:g} labels)")
    out = Path(args.out)
    history = list(checkpoint_fields(spec.checkpoint).get("history") or [])
    provenance = {"note": note, "parent": str(spec.checkpoint) if spec.checkpoint else None, "history": history + [note]}
    write_checkpoint(out, reduced.model, arch=reduced.arch, num_classes=spec.num_classes, input_hw=spec.input_hw,
                     model_kwargs=reduced.model_kwargs, reductions=reduced.reductions, task=spec.task,
                     command=command_line(), weights_dtype=args.weights_dtype, **provenance)
    if args.epochs:
        note = f"{note}; {_train(args, suite, spec, reduced, teacher, out, provenance)}"
        update_checkpoint(out, note=note, history=history + [note])
    print(f"{out}: {note}")
    return EXIT_OK


def _reduce(spec, args):
    """Build the spec's model (with its checkpoint) and apply the recipe; distill changes nothing here."""
    import torch

    from harness.models.checkpoint import build_model, read_checkpoint
    from harness.reduce import ReducedModel, apply_recipe, swap_to

    model = build_model(spec).train(False)
    parents = read_checkpoint(spec.checkpoint, spec.allow_pickle)[1] if spec.checkpoint else []
    if args.recipe == "encoder":
        return swap_to(spec, model, args.to)
    if args.recipe == "distill":
        return ReducedModel(model, spec.arch, dict(spec.model_kwargs), parents, "distill")
    reduction = apply_recipe(model, args.recipe, torch.zeros(1, 3, *spec.input_hw), args.ratio, args.channels)
    return ReducedModel(model, spec.arch, dict(spec.model_kwargs), parents + [args.recipe], reduction.note)


def _check(args, suite, spec):
    """Refuse what cannot work before anything is built; return the teacher's spec for distill."""
    from harness.reduce import NEEDS_TRAINING

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
    if args.recipe == "encoder" and not args.to:
        raise HarnessError("encoder: name the lighter architecture to move to with --to (see harness models)")
    if args.recipe != "distill":
        return None
    teacher = _teacher_spec(args, suite, spec)
    if (teacher.num_classes, teacher.task) != (spec.num_classes, spec.task):
        raise HarnessError(f"distill: teacher {teacher.name} predicts {teacher.num_classes} classes ({teacher.task}) but "
                           f"{spec.name} {spec.num_classes} ({spec.task}); pick a teacher for the same classes")
    return teacher


def _teacher_spec(args, suite, student):
    """--teacher: a suite entry, or a checkpoint made by harness (it records its architecture)."""
    from harness.models.checkpoint import checkpoint_fields
    from harness.spec import ModelSpec, find_spec

    if not args.teacher:
        raise HarnessError("distill: name the teacher with --teacher (a suite entry or a harness checkpoint)")
    found = find_spec(suite, args.teacher)
    if found is not None:
        return found
    path = Path(args.teacher)
    if not path.is_file():
        raise HarnessError(f"--teacher {args.teacher} is neither an entry of {args.suite} nor a checkpoint file")
    saved = checkpoint_fields(path)
    if "arch" not in saved:
        raise HarnessError(f"--teacher {path} does not record its architecture; add it to a suite and name the entry")
    return ModelSpec(name=path.stem, arch=saved["arch"], num_classes=int(saved.get("num_classes", student.num_classes)),
                     input_hw=student.input_hw, checkpoint=path, model_kwargs=dict(saved.get("model_kwargs") or {}),
                     task=student.task)


def _train(args, suite, spec, reduced, teacher, out: Path, provenance: dict) -> str:
    """Train the written checkpoint in place (best val epoch kept); say what the training did."""
    from harness.tasks import get_task
    from harness.reduce.train import TrainConfig, train

    cfg = TrainConfig(
        arch=reduced.arch, data_dir=Path(args.data), out_path=out, num_classes=spec.num_classes, input_hw=spec.input_hw,
        ignore_index=suite.ignore_index, max_epochs=args.epochs, patience_epochs=args.patience or args.epochs,
        batch_size=args.batch_size, lr=args.lr, model_kwargs=reduced.model_kwargs, task=spec.task,
        init_checkpoint=out, teacher=teacher, temperature=args.temperature, soft_weight=args.soft_weight,
        provenance=provenance, device=args.device, weights_dtype=args.weights_dtype)
    result = train(cfg, command_line())
    return (f"{result.epochs_run} epochs of {'distillation' if teacher else 'training'} on {args.data}, best val "
            f"{get_task(spec.task).quality_metric} {result.best_val_quality_pct:.2f}% (epoch {result.best_epoch})")
