"""Factories for architectures nobody in this project wrote: smp's and torchvision's, untrained (no hub here).

A suite names them as `factory = "outside_models:smp_model"` with kwargs; benchmarks/model_zoo.py does.
"""

from __future__ import annotations


def smp_model(arch: str = "Unet", classes: int = 11, encoder: str = "resnet18"):
    """A segmentation_models_pytorch architecture with a ResNet encoder and no pretrained weights."""
    import segmentation_models_pytorch as smp

    return getattr(smp, arch)(encoder_name=encoder, encoder_weights=None, classes=classes)


def torchvision_model(name: str = "lraspp_mobilenet_v3_large", classes: int = 11):
    """A torchvision segmentation model without weights; it returns {'out': logits}, the suite's default key."""
    import torchvision.models.segmentation as segmentation

    kwargs = {"weights": None, "weights_backbone": None, "num_classes": classes}
    if not name.startswith("lraspp"):
        kwargs["aux_loss"] = False
    return getattr(segmentation, name)(**kwargs)
