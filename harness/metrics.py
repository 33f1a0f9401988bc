"""Quality figures from a confusion matrix (the child counts the matrix: harness.measure.evaluate)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class SegmentationScores:
    miou_pct: float
    pixel_accuracy_pct: float
    per_class_iou_pct: tuple[float | None, ...]  # None: class absent from both masks and predictions


def scores_from_confusion(conf: np.ndarray) -> SegmentationScores:
    """mIoU averages only classes that occur in the masks or the predictions."""
    conf = conf.astype(np.float64)
    tp = np.diag(conf)
    union = conf.sum(0) + conf.sum(1) - tp
    per_class = [float(100 * tp[c] / union[c]) if union[c] > 0 else None for c in range(len(tp))]
    present = [v for v in per_class if v is not None]
    miou = float(np.mean(present)) if present else float("nan")
    total = conf.sum()
    pixel_acc = float(100 * tp.sum() / total) if total > 0 else float("nan")
    return SegmentationScores(miou, pixel_acc, tuple(per_class))


@dataclass(frozen=True)
class Quality:
    """The quality figure a row reports, whatever the task."""

    metric: str  # "mIoU" or "top-1"
    pct: float
    pixel_accuracy_pct: float | None  # segmentation only
    per_class: str  # "class: IoU" (segmentation) or "class: precision/recall" (classification), '; '-joined


def classification_scores(conf: np.ndarray) -> tuple[float, list[float | None], list[float | None]]:
    """Top-1 accuracy and per-class precision and recall (None where a class was never predicted / present)."""
    conf = conf.astype(np.float64)
    tp = np.diag(conf)
    predicted, actual = conf.sum(0), conf.sum(1)
    precision = [float(100 * tp[c] / predicted[c]) if predicted[c] else None for c in range(len(tp))]
    recall = [float(100 * tp[c] / actual[c]) if actual[c] else None for c in range(len(tp))]
    total = conf.sum()
    return (float(100 * tp.sum() / total) if total else float("nan")), precision, recall
