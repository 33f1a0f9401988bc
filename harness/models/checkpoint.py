"""Build a registry model and load a checkpoint into it, safely by default."""

from __future__ import annotations

import contextlib
import pickle
from pathlib import Path

import numpy as np
import torch
from torch import nn

from harness.errors import HarnessError
from harness.models import create_model, get_model_info
from harness.models.rebuild import rebuild
from harness.models.factory import import_factory, importable_from, user_output_to_stderr
from harness.spec import ModelSpec


def build_model(spec: ModelSpec) -> nn.Module:
    """The spec's module in eval mode, with its checkpoint loaded when it names one; what its code prints goes to stderr."""
    with user_output_to_stderr():
        return _build_model(spec)


def _build_model(spec: ModelSpec) -> nn.Module:
    if spec.module is not None:  # a module handed over in memory (harness.bench): a copy, so the caller's stays as it was
        import copy

        if not isinstance(spec.module, nn.Module):
            raise HarnessError(f"model '{spec.name}': {type(spec.module).__name__} is not a torch.nn.Module")
        return LogitsOf(copy.deepcopy(spec.module), spec.output, spec.name).eval()
    if spec.factory is not None:
        return _build_from_factory(spec)
    info = get_model_info(spec.arch)
    if info.task != spec.task:
        raise HarnessError(f"model '{spec.name}': {spec.arch} is a {info.task} model but the suite's data is for "
                           f"{spec.task}; set [data] task = \"{info.task}\" with matching data, or pick another model")
    h, w = spec.input_hw
    if h % info.input_stride or w % info.input_stride:
        raise HarnessError(
            f"model '{spec.name}': input_size {h}x{w} must have both sides divisible by {info.input_stride} "
            f"for {spec.arch}; use {-(-h // info.input_stride) * info.input_stride}x{-(-w // info.input_stride) * info.input_stride}"
        )
    if spec.checkpoint is None:
        with seeded_init():
            return create_model(spec.arch, spec.num_classes, **spec.model_kwargs).eval()
    loaded, reductions = read_checkpoint(spec.checkpoint, spec.allow_pickle)
    if isinstance(loaded, nn.Module):
        return loaded.eval()
    model = create_model(spec.arch, spec.num_classes, **spec.model_kwargs)
    if reductions:
        rebuild(model, reductions, loaded)
    load_state(model, loaded, spec)
    return model.eval()


def read_checkpoint(path: Path, allow_pickle: bool):
    """A state_dict (bare, or under 'state_dict'/'model') or a whole module when pickles are allowed,
    and the reductions the checkpoint records (see harness.reduce)."""
    try:
        obj = torch.load(path, map_location="cpu", weights_only=not allow_pickle)
    except pickle.UnpicklingError as e:
        raise HarnessError(
            f"checkpoint {path} holds more than tensors (a pickled module?): load it only if you trust it, "
            f"with allow_pickle = true in the suite or --allow-pickle"
        ) from e
    except Exception as e:  # a truncated or foreign file: torch raises several types
        raise HarnessError(f"checkpoint {path} could not be read ({type(e).__name__}: {e}); is it a torch.save file?") from e
    if isinstance(obj, nn.Module):
        return obj, []
    if isinstance(obj, dict):
        reductions = list(obj.get("reductions", [])) if isinstance(obj.get("reductions"), list) else []
        for key in ("state_dict", "model"):
            if isinstance(obj.get(key), dict):
                obj = obj[key]
                break
        if obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
            return obj, reductions
    raise HarnessError(f"checkpoint {path} is neither a state_dict nor a module: save model.state_dict() with torch.save")


def load_state(model: nn.Module, state: dict, spec: ModelSpec) -> None:
    droppable = getattr(model, "droppable_state_prefixes", ())
    state = {k: v for k, v in state.items() if not k.startswith(droppable)}
    own = model.state_dict()
    for key, tensor in state.items():
        if key in own and own[key].shape != tensor.shape:
            raise HarnessError(
                f"checkpoint {spec.checkpoint} does not fit {spec.arch or spec.factory} with {spec.num_classes} classes: "
                f"{key} is {list(tensor.shape)} in the checkpoint but {list(own[key].shape)} in the model; "
                f"check num_classes and the architecture"
            )
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        which = f"missing {missing[0]}" if missing else f"unexpected {unexpected[0]}"
        raise HarnessError(
            f"checkpoint {spec.checkpoint} does not fit {spec.arch or spec.factory}: {len(missing)} missing and "
            f"{len(unexpected)} unexpected keys ({which}); is it for another architecture?"
        )
    model.load_state_dict(state)


class LogitsOf(nn.Module):
    """A user's model whose forward returns a dict (torchvision's segmentation models: {'out': ..., 'aux': ...}),
    reduced to the one tensor of logits the harness exports and measures."""

    def __init__(self, model: nn.Module, key: str, name: str):
        super().__init__()
        self.model, self.key, self.name = model, key, name

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.model(x)
        if isinstance(out, torch.Tensor):
            return out
        if isinstance(out, dict) and isinstance(out.get(self.key), torch.Tensor):
            return out[self.key]
        found = f"a dict with keys {sorted(out)}" if isinstance(out, dict) else f"a {type(out).__name__}"
        raise HarnessError(f"model '{self.name}': forward returned {found}; the factory's model must return the "
                           f"logits tensor, or a dict holding it under output = \"{self.key}\" (set output in the suite)")


INIT_SEED = 0


@contextlib.contextmanager
def seeded_init():
    """Weights a model is built with are drawn under a fixed seed, so a model without a checkpoint exports the
    same file on every machine and cache miss (else each fresh CI machine sees a new export, an A/B, another
    mIoU). The caller's random state is restored afterwards."""
    import random

    python_state, numpy_state = random.getstate(), np.random.get_state()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(INIT_SEED)
        random.seed(INIT_SEED)
        np.random.seed(INIT_SEED)
        try:
            yield
        finally:
            random.setstate(python_state)
            np.random.set_state(numpy_state)


def _build_from_factory(spec: ModelSpec) -> nn.Module:
    factory = import_factory(spec)
    try:
        with seeded_init(), importable_from(spec.search_path, fresh=False):
            model = factory(**spec.model_kwargs)
    except Exception as e:
        raise HarnessError(f"model '{spec.name}': {spec.factory}(**{spec.model_kwargs}) failed: {type(e).__name__}: {e}") from e
    if not isinstance(model, nn.Module):
        raise HarnessError(f"model '{spec.name}': {spec.factory} returned {type(model).__name__}, not a torch.nn.Module")
    if spec.checkpoint is not None:
        loaded, reductions = read_checkpoint(spec.checkpoint, spec.allow_pickle)
        if isinstance(loaded, nn.Module):
            return LogitsOf(loaded, spec.output, spec.name).eval()
        if reductions:
            rebuild(model, reductions, loaded)
        load_state(model, loaded, spec)
    return LogitsOf(model, spec.output, spec.name).eval()


def write_checkpoint(out: Path, model: nn.Module, *, arch: str, num_classes: int, input_hw: tuple[int, int],
                     model_kwargs: dict | None, reductions: list[str] | None, task: str, command: str,
                     weights_dtype: str = "float32", **extra) -> None:
    """The one checkpoint writer: a plain state_dict on the CPU plus what rebuilds it, written atomically.

    It loads with `torch.load(weights_only=True)`; `reductions` are replayed on a fresh registry model
    before the weights load (harness.models.rebuild). Float weights may be stored as float16 to halve
    the file; loading casts them back into the float32 model.
    """
    from harness import __version__

    store = {"float32": torch.float32, "float16": torch.float16}[weights_dtype]
    payload = {
        "state_dict": {k: _stored(v, store) for k, v in model.state_dict().items()}, "weights_dtype": weights_dtype,
        "arch": arch, "num_classes": num_classes, "input_size": list(input_hw), "model_kwargs": dict(model_kwargs or {}),
        "reductions": list(reductions or []), "task": task, "command": command, "harness_version": __version__,
        "torch_version": str(torch.__version__), **extra,
    }
    _save_atomic(payload, Path(out))


def _stored(tensor: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    tensor = tensor.detach().to("cpu")
    return (tensor.to(dtype) if tensor.is_floating_point() else tensor).clone()


def update_checkpoint(path: Path, **fields) -> None:
    """Rewrite a harness checkpoint with some fields changed (e.g. its note after training)."""
    saved = torch.load(path, map_location="cpu", weights_only=True)
    saved.update(fields)
    _save_atomic(saved, Path(path))


def checkpoint_fields(path: Path | None) -> dict:
    """The metadata a harness checkpoint records (empty for a bare state_dict, a foreign or a pickled file)."""
    if path is None:
        return {}
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # a foreign or pickled checkpoint has no metadata to carry
        return {}
    return {k: v for k, v in saved.items() if k != "state_dict"} if isinstance(saved, dict) else {}


def _save_atomic(payload: dict, out: Path) -> None:
    import os

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, out)
