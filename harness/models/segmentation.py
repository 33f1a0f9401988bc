"""Built-in segmentation factories. Weights always start random: no hub is reachable here."""

from __future__ import annotations

import torch
from torch import nn

from harness.models.registry import register_model


def _drop_unused_resnet_stages(model: nn.Module) -> nn.Module:
    """smp builds all ResNet stages even when encoder_depth skips some; drop those.

    They never run, so the export ignores them, but they would bloat checkpoints fourfold (PSPNet-R18:
    11.4 M parameters built, 0.89 M used). Checkpoints from plain smp still load: their keys for
    these stages are recorded as droppable.
    """
    encoder = model.encoder
    dropped = []
    for depth_needed, stage in ((4, "layer3"), (5, "layer4")):
        if encoder._depth < depth_needed and hasattr(encoder, stage):
            delattr(encoder, stage)
            dropped.append(f"encoder.{stage}.")
    if hasattr(encoder, "fc"):
        del encoder.fc
        dropped.append("encoder.fc.")
    model.droppable_state_prefixes = tuple(dropped)
    return model


def _pspnet(encoder: str, num_classes: int, **kwargs) -> nn.Module:
    import segmentation_models_pytorch as smp

    return _drop_unused_resnet_stages(smp.PSPNet(encoder, encoder_weights=None, classes=num_classes, **kwargs))


@register_model(input_stride=8)
def pspnet_resnet18(num_classes: int, **kwargs) -> nn.Module:
    """smp PSPNet, ResNet-18 encoder (depth 3)."""
    return _pspnet("resnet18", num_classes, **kwargs)


@register_model(input_stride=8)
def pspnet_resnet34(num_classes: int, **kwargs) -> nn.Module:
    """smp PSPNet, ResNet-34 encoder (depth 3)."""
    return _pspnet("resnet34", num_classes, **kwargs)


@register_model(input_stride=8)
def pspnet_resnet50(num_classes: int, **kwargs) -> nn.Module:
    """smp PSPNet, ResNet-50 encoder (depth 3: the same network as ResNet-101, whose extra blocks are in layer3)."""
    return _pspnet("resnet50", num_classes, **kwargs)


@register_model(input_stride=8)
def pspnet_resnet101(num_classes: int, **kwargs) -> nn.Module:
    """smp PSPNet, ResNet-101 encoder (depth 3)."""
    return _pspnet("resnet101", num_classes, **kwargs)


@register_model(input_stride=8)
def pspnet_mobilenet_v2(num_classes: int, **kwargs) -> nn.Module:
    """smp PSPNet, MobileNetV2 encoder (depth 3: its first 7 blocks, 32 channels at stride 8)."""
    import segmentation_models_pytorch as smp

    model = smp.PSPNet("mobilenet_v2", encoder_weights=None, classes=num_classes, **kwargs)
    # smp's encoder runs (and stores) blocks past the depth it returns; keep only those it uses
    used_blocks = {1: 2, 2: 4, 3: 7, 4: 14}.get(model.encoder._depth)
    if used_blocks is not None:
        model.encoder.features = model.encoder.features[:used_blocks]
        model.droppable_state_prefixes = tuple(f"encoder.features.{i}." for i in range(used_blocks, 19))
    return model


@register_model(input_stride=32)
def unet_mobilenet_v2(num_classes: int, **kwargs) -> nn.Module:
    """smp Unet, MobileNetV2 encoder."""
    import segmentation_models_pytorch as smp

    return smp.Unet("mobilenet_v2", encoder_weights=None, classes=num_classes, **kwargs)


def _double_conv(in_ch: int, out_ch: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_ch, out_ch, 3, padding=1), nn.ReLU(inplace=True),
        nn.Conv2d(out_ch, out_ch, 3, padding=1), nn.ReLU(inplace=True),
    )


class UNetSmall(nn.Module):
    """The plain 3-level UNet of the plant-segmentation report: 64/128/256 channels times `width`."""

    def __init__(self, num_classes: int, in_channels: int = 3, width: float = 1.0):
        super().__init__()
        c1, c2, c3 = (max(1, round(c * width)) for c in (64, 128, 256))
        self.down1 = _double_conv(in_channels, c1)
        self.down2 = _double_conv(c1, c2)
        self.bottom = _double_conv(c2, c3)
        self.pool = nn.MaxPool2d(2)
        self.up = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False)
        self.up2 = _double_conv(c3 + c2, c2)
        self.up1 = _double_conv(c2 + c1, c1)
        self.head = nn.Conv2d(c1, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s1 = self.down1(x)
        s2 = self.down2(self.pool(s1))
        b = self.bottom(self.pool(s2))
        u2 = self.up2(torch.cat([self.up(b), s2], dim=1))
        u1 = self.up1(torch.cat([self.up(u2), s1], dim=1))
        return self.head(u1)


@register_model(input_stride=4)
def unet_small(num_classes: int, width: float = 1.0, **kwargs) -> nn.Module:
    """Plain 3-level UNet (two 3x3 conv+ReLU per level, 64/128/256 x width)."""
    return UNetSmall(num_classes, width=width, **kwargs)


def _upsample_block(in_ch: int, out_ch: int, dropout: bool) -> nn.Sequential:
    """pix2pix's upsample: transposed conv (x2) -> batch-norm -> dropout -> ReLU."""
    layers = [nn.ConvTranspose2d(in_ch, out_ch, 4, stride=2, padding=1, bias=False), nn.BatchNorm2d(out_ch)]
    if dropout:
        layers.append(nn.Dropout(0.5))
    layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class MobileNetV2Pix2Pix(nn.Module):
    """The clothing-segmentation report's model: MobileNetV2 encoder, pix2pix upsampling decoder with skips."""

    SKIPS = (1, 3, 6, 13)  # torchvision features indices at strides 2, 4, 8, 16 (16, 24, 32, 96 channels)

    def __init__(self, num_classes: int):
        super().__init__()
        from torchvision.models import mobilenet_v2

        self.encoder = mobilenet_v2(weights=None).features[:17]  # up to stride 32, 160 channels
        self.up = nn.ModuleList([
            _upsample_block(160, 512, dropout=True),
            _upsample_block(512 + 96, 256, dropout=False),
            _upsample_block(256 + 32, 128, dropout=False),
            _upsample_block(128 + 24, 64, dropout=False),
        ])
        self.head = nn.ConvTranspose2d(64 + 16, num_classes, 4, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for index, layer in enumerate(self.encoder):
            x = layer(x)
            if index in self.SKIPS:
                skips.append(x)
        for block, skip in zip(self.up, reversed(skips)):
            x = torch.cat([block(x), skip], dim=1)
        return self.head(x)


@register_model(input_stride=32)
def mobilenet_v2_pix2pix(num_classes: int, **kwargs) -> nn.Module:
    """MobileNetV2 encoder + pix2pix decoder (transposed conv, batch-norm, dropout, ReLU)."""
    return MobileNetV2Pix2Pix(num_classes, **kwargs)
