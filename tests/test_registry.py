import pytest
import torch

from harness.errors import HarnessError
from harness.models import create_model, get_model_info, list_models

REQUIRED = {"pspnet_resnet18", "pspnet_resnet34", "pspnet_resnet50", "pspnet_resnet101", "pspnet_mobilenet_v2", "unet_mobilenet_v2", "unet_small",
            "mobilenet_v2_pix2pix", "alexnet", "mobilenet_v2"}


def test_required_models_are_registered():
    assert REQUIRED <= set(list_models())
    assert list_models("pspnet_*") == ["pspnet_mobilenet_v2", "pspnet_resnet101", "pspnet_resnet18", "pspnet_resnet34",
                                         "pspnet_resnet50"]


@pytest.mark.parametrize("name", sorted(REQUIRED))
def test_every_model_maps_an_image_to_class_logits(name):
    info = get_model_info(name)
    model = create_model(name, num_classes=5).eval()
    with torch.inference_mode():
        out = model(torch.zeros(1, 3, 2 * 32, 3 * 32))
    assert out.shape == ((1, 5) if info.task == "classification" else (1, 5, 64, 96))
    assert 64 % info.input_stride == 0


def test_unknown_name_suggests_close_ones():
    with pytest.raises(HarnessError, match="did you mean pspnet_resnet18"):
        get_model_info("pspnet_resnet19")


def test_unet_small_width_multiplier_scales_channels():
    full = create_model("unet_small", num_classes=3)
    half = create_model("unet_small", num_classes=3, width=0.5)
    assert full.down1[0].out_channels == 64 and full.bottom[0].out_channels == 256
    assert half.down1[0].out_channels == 32 and half.bottom[0].out_channels == 128
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(half) < 0.3 * count(full)


def test_pspnet_drops_encoder_stages_it_never_runs():
    model = create_model("pspnet_resnet18", num_classes=11)
    assert not hasattr(model.encoder, "layer3") and not hasattr(model.encoder, "layer4")
    assert sum(p.numel() for p in model.parameters()) < 1_000_000


def test_pspnet_resnet50_and_resnet101_are_one_network_at_encoder_depth_3():
    """smp's depth 3 runs conv1, layer1 and layer2 only: the same blocks in ResNet-50 and ResNet-101."""
    from harness.models import create_model

    r50, r101 = create_model("pspnet_resnet50", 11), create_model("pspnet_resnet101", 11)
    shapes = lambda m: {k: tuple(v.shape) for k, v in m.state_dict().items()}  # noqa: E731
    assert shapes(r50) == shapes(r101)
    assert sum(p.numel() for p in r101.parameters()) == 2_283_979
    assert sum(p.numel() for p in create_model("pspnet_resnet34", 11).parameters()) < 2_283_979


def test_alexnet_for_small_inputs_keeps_the_features_and_narrows_the_head():
    import torch

    from harness.models import create_model

    default = create_model("alexnet", 5)
    small = create_model("alexnet", 5, hidden_units=512, pool_size=1)
    assert small(torch.zeros(1, 3, 64, 64)).shape == (1, 5)
    features = lambda m: sum(p.numel() for p in m.features.parameters())  # noqa: E731
    assert features(small) == features(default)
    assert sum(p.numel() for p in small.parameters()) < sum(p.numel() for p in default.parameters()) / 15
