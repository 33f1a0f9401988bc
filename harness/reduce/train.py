"""Minimal but real training: AdamW, cross-entropy with ignore index, early stop on val mIoU."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from harness.models.checkpoint import write_checkpoint
from harness.data import normalize
from harness.errors import HarnessError
from harness.measure.evaluate import confusion_matrix
from harness.models import create_model, get_model_info
from harness.spec import ModelSpec
from harness.tasks import get_task


@dataclass(frozen=True)
class TrainConfig:
    arch: str
    data_dir: Path
    out_path: Path
    num_classes: int
    input_hw: tuple[int, int]
    ignore_index: int
    max_epochs: int
    patience_epochs: int
    batch_size: int = 8
    lr: float = 1e-3
    weight_decay: float = 1e-4
    seed: int = 0
    model_kwargs: dict | None = None
    task: str = "segmentation"
    init_checkpoint: Path | None = None  # fine-tune from these weights (reduced checkpoints included)
    teacher: ModelSpec | None = None  # distil: also match this model's softened outputs
    temperature: float = 4.0
    soft_weight: float = 0.25  # share of the loss on the teacher's soft targets; the rest on the labels
    provenance: dict | None = None  # extra fields saved in the checkpoint (e.g. the reduce note)
    device: str = "cpu"  # where the training runs ("cuda" on an accelerator); checkpoints are always CPU tensors
    weights_dtype: str = "float32"  # float16 halves the shipped file


@dataclass(frozen=True)
class TrainResult:
    out_path: Path
    best_epoch: int
    best_val_quality_pct: float  # mIoU, or top-1 for a classifier
    epochs_run: int
    seconds: float


def evaluate_torch(model, images_u8: np.ndarray, targets: np.ndarray, num_classes: int, ignore_index: int,
                   task: str = "segmentation", batch_size: int = 8, device: str = "cpu"):
    """mIoU (or top-1) of a PyTorch model on fitted images and their masks (or labels)."""
    model.eval()
    conf = np.zeros((num_classes, num_classes), dtype=np.int64)
    with torch.inference_mode():
        for i in range(0, len(images_u8), batch_size):
            logits = model(torch.from_numpy(normalize(images_u8[i:i + batch_size])).to(device))
            predicted = logits.argmax(1).cpu().numpy()
            conf += confusion_matrix(predicted, targets[i:i + batch_size], num_classes, ignore_index)
    return get_task(task).quality(conf)


def _check(cfg: TrainConfig) -> None:
    info = get_model_info(cfg.arch)
    if info.task != cfg.task:
        raise HarnessError(f"{cfg.arch} is a {info.task} model: pass --task {info.task} with matching data")
    if cfg.input_hw[0] % info.input_stride or cfg.input_hw[1] % info.input_stride:
        raise HarnessError(f"--input-size {cfg.input_hw[0]}x{cfg.input_hw[1]}: both sides must be divisible by "
                           f"{info.input_stride} for {cfg.arch}")
    for split in ("train", "val"):
        if not (Path(cfg.data_dir) / split).is_dir():
            raise HarnessError(f"--data {cfg.data_dir} must hold train/ and val/ split folders, each with "
                               f"{get_task(cfg.task).layout}")


@dataclass
class _Run:
    """The state one training run carries from epoch to epoch."""

    cfg: TrainConfig
    model: torch.nn.Module
    teacher: torch.nn.Module | None
    optimizer: torch.optim.Optimizer
    rng: np.random.Generator
    loss_fn: torch.nn.Module

    def epoch(self, train_x: np.ndarray, train_y: np.ndarray, on_step) -> float:
        """One pass over the training images in random order, with horizontal flips; the mean loss."""
        cfg, rng = self.cfg, self.rng
        self.model.train()
        order = rng.permutation(len(train_x))
        steps = -(-len(train_x) // cfg.batch_size)
        loss_sum = 0.0
        for step in range(steps):
            idx = order[step * cfg.batch_size:(step + 1) * cfg.batch_size]
            x, y = train_x[idx], train_y[idx]
            flip = rng.random(len(idx)) < 0.5  # horizontal flip keeps labels valid
            x = np.where(flip[:, None, None, None], x[:, :, ::-1], x)
            if y.ndim == 3:  # masks flip with their images; class labels do not change
                y = np.where(flip[:, None, None], y[:, :, ::-1], y)
            inputs = torch.from_numpy(normalize(x)).to(cfg.device)
            labels = torch.from_numpy(np.ascontiguousarray(y)).to(cfg.device)
            logits = self.model(inputs)
            loss = self.loss_fn(logits, labels)
            if self.teacher is not None:
                with torch.no_grad():
                    teacher_logits = self.teacher(inputs)
                soft = distillation_loss(logits, teacher_logits, labels, cfg.temperature, cfg.ignore_index)
                loss = (1 - cfg.soft_weight) * loss + cfg.soft_weight * soft
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            loss_sum += loss.item()
            on_step(loss_sum / (step + 1))
        return loss_sum / steps


def train(cfg: TrainConfig, command: str) -> TrainResult:
    """Train; keep the checkpoint of the best val quality; stop after `patience` flat epochs."""
    _check(cfg)
    if cfg.device.startswith("cuda") and not torch.cuda.is_available():
        raise HarnessError(f"--device {cfg.device}: PyTorch sees no CUDA device here; train with --device cpu")
    torch.manual_seed(cfg.seed)
    torch.backends.cudnn.benchmark = cfg.device.startswith("cuda")  # fixed input size: let cuDNN pick its kernels
    torch.set_num_threads(os.cpu_count() or 1)
    task = get_task(cfg.task)
    train_x, train_y = task.load(cfg.data_dir, "train", cfg.ignore_index, cfg.input_hw, cfg.num_classes)
    val_x, val_y = task.load(cfg.data_dir, "val", cfg.ignore_index, cfg.input_hw, cfg.num_classes)
    model, reductions = initial_model(cfg)
    model.to(cfg.device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=cfg.max_epochs)
    run = _Run(cfg, model, _teacher(cfg), optimizer, np.random.default_rng(cfg.seed),
               torch.nn.CrossEntropyLoss(ignore_index=cfg.ignore_index))
    best, best_epoch, epoch = -1.0, 0, 0
    started = time.perf_counter()
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[status]}"), TimeElapsedColumn(), TimeRemainingColumn())
    with Progress(*columns) as progress:
        epochs_bar = progress.add_task(f"train {cfg.arch}", total=cfg.max_epochs, status="")
        batch_bar = progress.add_task("epoch 1", total=-(-len(train_x) // cfg.batch_size), status="")
        for epoch in range(1, cfg.max_epochs + 1):
            progress.reset(batch_bar, description=f"epoch {epoch}")
            loss = run.epoch(train_x, train_y, lambda mean: progress.update(batch_bar, advance=1, status=f"loss {mean:.3f}"))
            scheduler.step()
            quality = evaluate_torch(model, val_x, val_y, cfg.num_classes, cfg.ignore_index, cfg.task, device=cfg.device)
            if quality.pct > best:
                best, best_epoch = quality.pct, epoch
                save_checkpoint(model, cfg, command, epoch, quality.pct, reductions)
            progress.update(epochs_bar, advance=1,
                            status=f"val {quality.metric} {quality.pct:.1f}% (best {best:.1f}% @ {best_epoch})")
            pixel = f", pixel acc {quality.pixel_accuracy_pct:.1f}%" if quality.pixel_accuracy_pct is not None else ""
            progress.console.log(f"epoch {epoch}: loss {loss:.3f}, val {quality.metric} {quality.pct:.2f}%{pixel}")
            if epoch - best_epoch >= cfg.patience_epochs:
                progress.console.log(f"val {quality.metric} has not improved for {cfg.patience_epochs} epochs: stopping")
                break
    return TrainResult(cfg.out_path, best_epoch, best, epoch, time.perf_counter() - started)


def distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor,
                      temperature: float, ignore_index: int) -> torch.Tensor:
    """Hinton's soft-target loss: KL(teacher || student) at temperature T, times T^2, over labelled pixels."""
    t = temperature
    log_student = torch.log_softmax(student_logits / t, dim=1)
    log_teacher = torch.log_softmax(teacher_logits / t, dim=1)
    per_item = (log_teacher.exp() * (log_teacher - log_student)).sum(dim=1)  # KL per pixel (or per image)
    keep = labels != ignore_index
    return per_item[keep].mean() * t * t if keep.any() else per_item.sum() * 0


def _teacher(cfg: TrainConfig):
    if cfg.teacher is None:
        return None
    from harness.models.checkpoint import build_model

    teacher = build_model(cfg.teacher).eval().to(cfg.device)
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher


def initial_model(cfg: TrainConfig):
    """A fresh registry model, or the weights (and recorded reductions) of --init to fine-tune."""
    if cfg.init_checkpoint is None:
        return create_model(cfg.arch, cfg.num_classes, **(cfg.model_kwargs or {})), []
    from harness.models.checkpoint import build_model, read_checkpoint

    spec = ModelSpec(name=cfg.arch, arch=cfg.arch, num_classes=cfg.num_classes, input_hw=cfg.input_hw,
                     checkpoint=cfg.init_checkpoint, model_kwargs=dict(cfg.model_kwargs or {}), task=cfg.task)
    return build_model(spec), read_checkpoint(cfg.init_checkpoint, False)[1]


def save_checkpoint(model, cfg: TrainConfig, command: str, epoch: int, val_quality_pct: float,
                    reductions: list[str] | None = None) -> None:
    extra = {"ignore_index": cfg.ignore_index, "parent": str(cfg.init_checkpoint) if cfg.init_checkpoint else None,
             "epoch": epoch, "val_quality_pct": val_quality_pct,  # mIoU, or top-1 for a classifier
             **(cfg.provenance or {})}  # a reduced checkpoint's note, history and its own parent win
    write_checkpoint(cfg.out_path, model, arch=cfg.arch, num_classes=cfg.num_classes, input_hw=cfg.input_hw,
                     model_kwargs=cfg.model_kwargs, reductions=reductions, task=cfg.task, command=command,
                     weights_dtype=cfg.weights_dtype, **extra)
