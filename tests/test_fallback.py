"""The accuracy-aware fallback on a small real model: it keeps nodes in float only when it must."""

import pytest
import torch

from harness.data import find_split, load_split
from harness.export import export_spec
from harness.variants.fallback import find_fallback, quantized_nodes
from harness.variants.quantize import QuantizeOptions
from harness.variants import variant_of
from harness.models import create_model
from harness.spec import ASSETS_DIR, ModelSpec

HW = (96, 128)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    images, masks = load_split(find_split(ASSETS_DIR / "camvid_train32", "train", 11), HW, 11, limit=6)
    torch.manual_seed(1)
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    torch.save(create_model("unet_small", num_classes=11, width=0.125).state_dict(), path)
    spec = ModelSpec(name="tiny", arch="unet_small", num_classes=11, input_hw=HW, checkpoint=path,
                     model_kwargs={"width": 0.125})
    return export_spec(spec, images[:2]), images, masks


def test_quantized_nodes_are_the_ones_reading_dequantized_tensors(setup):
    exported, images, _ = setup
    made = variant_of(exported, "int8-static", QuantizeOptions(calibration_images=6), images)
    nodes = quantized_nodes(made.path)
    assert sum("conv" in n.lower() for n in nodes) >= 10  # unet_small has 11 convolutions


def test_loose_limit_keeps_everything_quantized(setup):
    exported, images, masks = setup
    result = find_fallback(exported, QuantizeOptions(calibration_images=6), images, masks, 11, 11, max_drop_pts=100.0)
    assert result.reached and result.nodes_in_float == () and result.trials == 1


def test_tight_limit_leaves_nodes_in_float_and_meets_it(setup):
    exported, images, masks = setup
    options = QuantizeOptions(calibration_images=6)
    result = find_fallback(exported, options, images, masks, 11, 11, max_drop_pts=0.01)
    assert result.fp32_miou_pct - result.final_miou_pct <= 0.01 or not result.reached
    if result.fp32_miou_pct - result.int8_miou_pct > 0.01:
        assert result.reached and len(result.nodes_in_float) >= 1
    # the variant made with that set really keeps those nodes out of quantization
    import dataclasses

    made = variant_of(exported, "int8-static", dataclasses.replace(options, nodes_to_exclude=result.nodes_in_float), images)
    assert set(result.nodes_in_float).isdisjoint(quantized_nodes(made.path))
    assert made.nodes_in_float == result.nodes_in_float


def test_unreachable_limit_is_said_plainly(setup):
    exported, images, masks = setup
    result = find_fallback(exported, QuantizeOptions(calibration_images=6), images, masks, 11, 11, max_drop_pts=-50.0)
    assert not result.reached
    assert "NOT reached" in result.describe()
