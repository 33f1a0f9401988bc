"""timm-style model registry: a decorator stores a factory under its function name."""

from __future__ import annotations

import difflib
import fnmatch
from dataclasses import dataclass
from typing import Callable

from harness.errors import HarnessError


@dataclass(frozen=True)
class RegisteredModel:
    name: str
    factory: Callable
    input_stride: int  # both input sides must be multiples of this
    description: str
    task: str = "segmentation"  # or "classification": (N, C, H, W) logits, or (N, C) scores


_MODELS: dict[str, RegisteredModel] = {}


def register_model(input_stride: int, task: str = "segmentation"):
    """Register `factory(num_classes, **kwargs) -> torch.nn.Module` under its own name."""

    def wrap(factory: Callable) -> Callable:
        doc = (factory.__doc__ or "").strip().splitlines()
        _MODELS[factory.__name__] = RegisteredModel(factory.__name__, factory, input_stride, doc[0] if doc else "", task)
        return factory

    return wrap


def _ensure_loaded() -> None:
    import harness.models  # noqa: F401  (registers the built-in factories)


def list_models(pattern: str = "*") -> list[str]:
    _ensure_loaded()
    return sorted(n for n in _MODELS if fnmatch.fnmatch(n, pattern))


def get_model_info(name: str) -> RegisteredModel:
    _ensure_loaded()
    if name not in _MODELS:
        close = difflib.get_close_matches(name, _MODELS, n=3)
        hint = f"did you mean {', '.join(close)}?" if close else f"known: {', '.join(sorted(_MODELS))}"
        raise HarnessError(f"unknown model '{name}': {hint} (harness models lists them)")
    return _MODELS[name]


def create_model(name: str, num_classes: int, **kwargs):
    info = get_model_info(name)
    try:
        return info.factory(num_classes=num_classes, **kwargs)
    except TypeError as e:
        raise HarnessError(f"model '{name}' does not take these options {sorted(kwargs)}: {e}") from e
