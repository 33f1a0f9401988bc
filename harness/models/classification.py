"""Built-in classifiers (torchvision architectures, random weights: no hub is reachable here)."""

from __future__ import annotations

from torch import nn

from harness.models.registry import register_model


@register_model(input_stride=1, task="classification")
def alexnet(num_classes: int, hidden_units: int = 4096, pool_size: int = 6, **kwargs) -> nn.Module:
    """torchvision AlexNet classifier (the chest X-ray report's model); defaults are torchvision's.

    For small inputs the features end at 1x1, which the 6x6 pool only copies 36 times into a 37 M-weight
    first layer: `pool_size=1` and a narrower `hidden_units` keep the five convolutions and shrink the head.
    """
    from torchvision.models import alexnet as tv_alexnet

    model = tv_alexnet(weights=None, num_classes=num_classes, **kwargs)
    if (hidden_units, pool_size) != (4096, 6):
        dropout = model.classifier[0].p
        model.avgpool = nn.AdaptiveAvgPool2d((pool_size, pool_size))
        model.classifier = nn.Sequential(
            nn.Dropout(dropout), nn.Linear(256 * pool_size * pool_size, hidden_units), nn.ReLU(inplace=True),
            nn.Dropout(dropout), nn.Linear(hidden_units, hidden_units), nn.ReLU(inplace=True),
            nn.Linear(hidden_units, num_classes))
    return model


@register_model(input_stride=32, task="classification")
def mobilenet_v2(num_classes: int, width: float = 1.0, **kwargs) -> nn.Module:
    """torchvision MobileNetV2 classifier, `width` multiplier (the CIFAR-100 report's model)."""
    from torchvision.models import mobilenet_v2 as tv_mobilenet_v2

    return tv_mobilenet_v2(weights=None, num_classes=num_classes, width_mult=width, **kwargs)
