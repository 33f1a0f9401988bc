"""`harness train MODEL --data ROOT`: train a registry model on a dataset root (train/ and val/)."""

from __future__ import annotations

from pathlib import Path

from harness.cli.options import add_training_options, command_line, input_size, model_arg
from harness.errors import EXIT_OK, HarnessError


def add_parser(sub) -> None:
    from harness.tasks import list_tasks

    p = sub.add_parser("train", help="train a registry model from scratch on an image/mask dataset")
    p.add_argument("model", help="registry name (harness models)")
    p.add_argument("--data", required=True, help="dataset root with train/ and val/ splits (images/ and masks/, "
                                                 "or one folder per class)")
    p.add_argument("--epochs", type=int, default=40, help="most epochs (early stop on val quality)")
    p.add_argument("--patience", type=int, default=6, help="stop after this many epochs without a better val score")
    p.add_argument("--out", required=True, help="checkpoint path to write")
    p.add_argument("--num-classes", type=int, help="default: lines in DATA/classes.txt (or class folders)")
    p.add_argument("--ignore-index", type=int, default=255, help="mask value excluded from loss and mIoU")
    p.add_argument("--input-size", type=input_size, default=(192, 240), help="HEIGHTxWIDTH the images are fitted to")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--width-multiplier", "--width", dest="width_multiplier", type=float,
                   help="channel multiplier of the architecture (unet_small, mobilenet_v2), e.g. 0.5")
    p.add_argument("--model-arg", type=model_arg, action="append", default=[], metavar="KEY=VALUE",
                   help="keyword for the architecture (repeatable), e.g. --model-arg hidden_units=512")
    add_training_options(p)
    p.add_argument("--task", choices=list_tasks(), default="segmentation",
                   help="classification: DATA/train and DATA/val hold one folder of images per class")
    p.add_argument("--init", help="start from this checkpoint (fine-tune; e.g. after harness reduce prune)")
    p.set_defaults(run=run)


def run(args) -> int:
    from harness.models import get_model_info
    from harness.tasks import get_task
    from harness.reduce.train import TrainConfig, train

    get_model_info(args.model)  # unknown names fail before data loading
    _check_kwargs(args)
    task = get_task(args.task)
    num_classes = args.num_classes or task.classes_in(Path(args.data))
    if not num_classes:
        raise HarnessError(f"no --num-classes given and {Path(args.data) / 'classes.txt'} does not exist: pass --num-classes N")
    cfg = TrainConfig(
        arch=args.model, data_dir=Path(args.data), out_path=Path(args.out), num_classes=num_classes,
        input_hw=args.input_size, ignore_index=args.ignore_index, max_epochs=args.epochs,
        patience_epochs=args.patience, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
        model_kwargs=_model_kwargs(args) or None, task=args.task,
        init_checkpoint=Path(args.init) if args.init else None, device=args.device, weights_dtype=args.weights_dtype,
    )
    result = train(cfg, command_line())
    print(f"best val {task.quality_metric} {result.best_val_quality_pct:.2f}% at epoch {result.best_epoch} "
          f"({result.epochs_run} epochs, {result.seconds:.0f} s); checkpoint {result.out_path}")
    return EXIT_OK


def _model_kwargs(args) -> dict:
    kwargs = dict(args.model_arg)
    if args.width_multiplier is not None:
        kwargs["width"] = args.width_multiplier
    return kwargs


def _check_kwargs(args) -> None:
    """A keyword the factory does not take fails here in one line, before any data is read."""
    from harness.models import create_model

    create_model(args.model, 2, **_model_kwargs(args))
