"""Tasks: the protocol and registry, and the built-in tasks (importing this registers them)."""

from harness.tasks import classification, segmentation  # noqa: F401  (each built-in task registers itself)
from harness.tasks.registry import Task, get_task, list_tasks, register_task

__all__ = ["Task", "get_task", "list_tasks", "register_task"]
