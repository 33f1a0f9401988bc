"""timm-style model registry: a decorator stores a factory under its function name.

It imports no model: `harness.models` imports the built-in factories, which register themselves.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from harness.errors import HarnessError
from harness.registry import Registry


@dataclass(frozen=True)
class RegisteredModel:
    name: str
    factory: Callable
    input_stride: int  # both input sides must be multiples of this
    description: str
    task: str = "segmentation"  # or "classification": (N, C, H, W) logits, or (N, C) scores


MODELS: Registry[RegisteredModel] = Registry("model", " (harness models lists them)")


def register_model(input_stride: int, task: str = "segmentation"):
    """Register `factory(num_classes, **kwargs) -> torch.nn.Module` under its own name."""

    def wrap(factory: Callable) -> Callable:
        doc = (factory.__doc__ or "").strip().splitlines()
        MODELS.add(factory.__name__, RegisteredModel(factory.__name__, factory, input_stride, doc[0] if doc else "", task))
        return factory

    return wrap


def list_models(pattern: str = "*") -> list[str]:
    return sorted(MODELS.names(pattern))


def get_model_info(name: str) -> RegisteredModel:
    return MODELS.get(name)


def create_model(name: str, num_classes: int, **kwargs):
    info = get_model_info(name)
    try:
        return info.factory(num_classes=num_classes, **kwargs)
    except TypeError as e:
        raise HarnessError(f"model '{name}' does not take these options {sorted(kwargs)}: {e}") from e
