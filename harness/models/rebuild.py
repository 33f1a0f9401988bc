"""Replaying a checkpoint's recorded reductions on a fresh registry model, so its weights fit (harness.reduce makes them).

Checkpoints stay plain state_dicts: the structural edits a recipe made are recorded by name, and building the
model replays them here before the weights are loaded.
"""

from __future__ import annotations

import torch
from torch import nn

from harness.errors import HarnessError

# Recipes that change the architecture in place; `rebuild` replays these before loading weights.
STRUCTURAL = ("decoder-width", "prune", "factorize")


def factorize(model: nn.Module) -> int:
    """Replace each eligible 3x3 convolution (ungrouped, 8+ channels each side) by depthwise + pointwise."""
    replaced = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if (isinstance(child, nn.Conv2d) and child.kernel_size == (3, 3) and child.groups == 1
                    and child.in_channels >= 8 and child.out_channels >= 8):
                separable = nn.Sequential(
                    nn.Conv2d(child.in_channels, child.in_channels, 3, child.stride, child.padding, child.dilation,
                              groups=child.in_channels, bias=False),
                    nn.Conv2d(child.in_channels, child.out_channels, 1, bias=child.bias is not None),
                )
                _init_from_rank1(separable, child)
                setattr(parent, name, separable)
                replaced += 1
    return replaced


@torch.no_grad()
def _init_from_rank1(separable: nn.Sequential, conv: nn.Conv2d) -> None:
    """Start the pair from the conv's weights: per input channel, the best rank-1 split (SVD) of its 3x3 x outputs.

    W[o, i] ~= pointwise[o, i] * depthwise[i], so a trained parent's features survive the swap and
    fine-tuning or distillation starts near the parent instead of from random weights.
    """
    weight = conv.weight.detach().permute(1, 0, 2, 3).reshape(conv.in_channels, conv.out_channels, 9)
    u, singular, vh = torch.linalg.svd(weight, full_matrices=False)
    scale = singular[:, 0].sqrt()
    separable[0].weight.copy_((scale[:, None] * vh[:, 0, :]).reshape(conv.in_channels, 1, 3, 3))
    separable[1].weight.copy_((u[:, :, 0] * scale[:, None]).T.reshape(conv.out_channels, conv.in_channels, 1, 1))
    if conv.bias is not None:
        separable[1].bias.copy_(conv.bias)


def fit_shapes(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Give each conv, batch-norm and linear layer the channel counts its saved weights have."""
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            prefix = _prefix(model, child)
            weight = state.get(prefix + "weight")
            if weight is None or weight.shape == getattr(child, "weight", torch.empty(0)).shape:
                continue
            if isinstance(child, nn.Conv2d):
                groups = child.groups if child.groups == 1 else weight.shape[0]  # depthwise stays depthwise
                new = nn.Conv2d(weight.shape[1] * groups, weight.shape[0], child.kernel_size, child.stride, child.padding,
                                child.dilation, groups=groups, bias=child.bias is not None)
            elif isinstance(child, nn.ConvTranspose2d):
                new = nn.ConvTranspose2d(weight.shape[0], weight.shape[1] * child.groups, child.kernel_size, child.stride,
                                         child.padding, child.output_padding, child.groups, child.bias is not None,
                                         child.dilation)
            elif isinstance(child, nn.BatchNorm2d):
                new = nn.BatchNorm2d(weight.shape[0], child.eps, child.momentum, child.affine, child.track_running_stats)
            elif isinstance(child, nn.Linear):
                new = nn.Linear(weight.shape[1], weight.shape[0], bias=child.bias is not None)
            else:
                continue
            setattr(parent, name, new)


def _prefix(root: nn.Module, module: nn.Module) -> str:
    for name, m in root.named_modules():
        if m is module:
            return f"{name}." if name else ""
    return ""


def rebuild(model: nn.Module, reductions: list[str], state: dict[str, torch.Tensor]) -> nn.Module:
    """Replay a checkpoint's recorded reductions on a fresh model so its weights fit."""
    for recipe in reductions:
        if recipe == "factorize":
            factorize(model)
        elif recipe not in STRUCTURAL:
            raise HarnessError(f"checkpoint records reduction '{recipe}', which this harness does not know")
    fit_shapes(model, state)
    return model
