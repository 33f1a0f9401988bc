"""Image classification: one folder of images per class, one score per class, scored by top-1."""

from __future__ import annotations

from pathlib import Path

from harness.data import find_class_split, load_class_split
from harness.metrics import Quality, classification_scores
from harness.tasks.registry import Task, register_task


class Classification(Task):
    name = "classification"
    quality_metric = "top-1"
    layout = "one folder per class"

    def find_split(self, path, split, ignore_index):
        return find_class_split(path, split)

    def load(self, path, split, ignore_index, input_hw, num_classes, limit=None):
        return load_class_split(find_class_split(path, split), input_hw, num_classes, limit)

    def output_shape(self, num_classes, input_hw):
        return (num_classes,)

    def quality(self, confusion) -> Quality:
        top1, precision, recall = classification_scores(confusion)

        def fmt(value):
            return "n/a" if value is None else f"{value:.1f}"

        per_class = "; ".join(f"{c}: {fmt(p)}/{fmt(r)}" for c, (p, r) in enumerate(zip(precision, recall)))
        return Quality(self.quality_metric, top1, None, per_class)

    def classes_in(self, root: Path) -> int | None:
        return len(find_class_split(root, "train").classes)


CLASSIFICATION = register_task(Classification())
