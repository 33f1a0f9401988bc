"""Semantic segmentation: images/ + index masks/, one logit map per class, scored by mIoU."""

from __future__ import annotations

from pathlib import Path

from harness.data import find_split, load_split
from harness.metrics import Quality, scores_from_confusion
from harness.tasks.registry import Task, register_task


class Segmentation(Task):
    name = "segmentation"
    quality_metric = "mIoU"
    layout = "images/ and masks/"

    def find_split(self, path, split, ignore_index):
        return find_split(path, split, ignore_index)

    def load(self, path, split, ignore_index, input_hw, num_classes, limit=None):
        return load_split(find_split(path, split, ignore_index), input_hw, num_classes, limit)

    def output_shape(self, num_classes, input_hw):
        return (num_classes, *input_hw)

    def quality(self, confusion) -> Quality:
        scores = scores_from_confusion(confusion)
        per_class = "; ".join(f"{c}: {'n/a' if v is None else f'{v:.1f}'}" for c, v in enumerate(scores.per_class_iou_pct))
        return Quality(self.quality_metric, scores.miou_pct, scores.pixel_accuracy_pct, per_class)

    def classes_in(self, root: Path) -> int | None:
        names = Path(root) / "classes.txt"
        if not names.is_file():
            return None
        return len([line for line in names.read_text().splitlines() if line.strip()])


SEGMENTATION = register_task(Segmentation())
