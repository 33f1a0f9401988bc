"""Built-in classifiers (torchvision architectures, random weights: no hub is reachable here)."""

from __future__ import annotations

from torch import nn

from harness.models.registry import register_model


@register_model(input_stride=1, task="classification")
def alexnet(num_classes: int, **kwargs) -> nn.Module:
    """torchvision AlexNet classifier (the chest X-ray report's model)."""
    from torchvision.models import alexnet as tv_alexnet

    return tv_alexnet(weights=None, num_classes=num_classes, **kwargs)


@register_model(input_stride=32, task="classification")
def mobilenet_v2(num_classes: int, width: float = 1.0, **kwargs) -> nn.Module:
    """torchvision MobileNetV2 classifier, `width` multiplier (the CIFAR-100 report's model)."""
    from torchvision.models import mobilenet_v2 as tv_mobilenet_v2

    return tv_mobilenet_v2(weights=None, num_classes=num_classes, width_mult=width, **kwargs)
