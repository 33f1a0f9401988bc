"""The task protocol: what a model's outputs mean, how its data is read and how its quality is scored.

A task is registered once by name; suites name it in `[data] task = "..."`. Evaluation is shared:
every task's model puts classes on axis 1 of its output, and predictions are the argmax over it, so
the measurement child and the parity check need no task code.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from harness.metrics import Quality
from harness.registry import Registry


class Task:
    """One kind of model output. Subclasses fill in the data layout and the quality figure."""

    name: str = ""
    quality_metric: str = ""  # the column's name in tables: "mIoU", "top-1"
    layout: str = ""  # how a split folder is laid out, for messages

    def find_split(self, path: str | Path, split: str, ignore_index: int):
        """The split on disk (an object with `.root` and a length); bad layouts raise HarnessError."""
        raise NotImplementedError

    def load(self, path: str | Path, split: str, ignore_index: int, input_hw: tuple[int, int], num_classes: int,
             limit: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Images fitted to input_hw, (N,H,W,3) uint8, and their targets (masks or labels)."""
        raise NotImplementedError

    def output_shape(self, num_classes: int, input_hw: tuple[int, int]) -> tuple[int, ...]:
        """One image's expected model output, without the batch axis."""
        raise NotImplementedError

    def quality(self, confusion: np.ndarray) -> Quality:
        """The row's quality figure from the confusion matrix (rows true class, columns predicted)."""
        raise NotImplementedError

    def classes_in(self, root: Path) -> int | None:
        """How many classes a dataset root declares, or None when it does not say."""
        return None


TASKS: Registry[Task] = Registry("task")


def register_task(task: Task) -> Task:
    if not task.name:
        raise ValueError("a task needs a name")
    return TASKS.add(task.name, task)


def list_tasks() -> list[str]:
    return TASKS.names()


def get_task(name: str) -> Task:
    return TASKS.get(name)
