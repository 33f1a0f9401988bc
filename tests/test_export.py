"""Export parity on a small real model and real images; checkpoints that do not fit are refused."""

import numpy as np
import onnx
import pytest
import torch

from harness.data import find_split, load_split
from harness.errors import HarnessError
from harness.export import export_spec
from harness.models import create_model
from harness.spec import ModelSpec

from conftest import CAMVID_CLASSES, CAMVID_IGNORE, SAMPLE_DIR

HW = (184, 240)


@pytest.fixture(scope="module")
def real_images():
    images, _ = load_split(find_split(SAMPLE_DIR, "val", CAMVID_IGNORE), HW, CAMVID_CLASSES, limit=4)
    return images


@pytest.fixture
def tiny_checkpoint(tmp_path):
    torch.manual_seed(0)
    model = create_model("unet_small", num_classes=CAMVID_CLASSES, width=0.125)
    path = tmp_path / "tiny.pt"
    torch.save({"state_dict": model.state_dict(), "arch": "unet_small"}, path)
    return path


def _spec(checkpoint, num_classes=CAMVID_CLASSES):
    return ModelSpec(name="tiny", arch="unet_small", num_classes=num_classes, input_hw=HW,
                     checkpoint=checkpoint, model_kwargs={"width": 0.125})


def test_export_is_single_file_with_dynamic_batch_and_proven_parity(tiny_checkpoint, real_images):
    exported = export_spec(_spec(tiny_checkpoint), real_images)
    assert exported.parity.passed and exported.parity.images == 4
    assert exported.parity.argmax_agreement_pct >= 99.9 and exported.parity.max_abs_logit_diff < 1e-3
    assert not exported.cached
    assert sorted(p.name for p in exported.path.parent.iterdir()) == ["meta.json", "model.onnx"]  # no .onnx.data
    proto = onnx.load(str(exported.path))
    onnx.checker.check_model(proto, full_check=True)
    assert proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param  # symbolic batch axis
    torch_params = sum(p.numel() for p in create_model("unet_small", CAMVID_CLASSES, width=0.125).parameters())
    assert 0 <= exported.params_in_graph - torch_params <= 16  # plus a few Resize scale constants

    import onnxruntime as ort

    from harness.data import normalize

    session = ort.InferenceSession(str(exported.path), providers=["CPUExecutionProvider"])
    assert session.run(None, {"image": normalize(real_images[:3])})[0].shape == (3, CAMVID_CLASSES, *HW)

    again = export_spec(_spec(tiny_checkpoint), real_images)
    assert again.cached and again.sha256 == exported.sha256


def test_changed_checkpoint_is_exported_again(tiny_checkpoint, real_images):
    first = export_spec(_spec(tiny_checkpoint), real_images)
    state = torch.load(tiny_checkpoint, weights_only=True)
    state["state_dict"]["head.bias"] += 1.0
    torch.save(state, tiny_checkpoint)
    second = export_spec(_spec(tiny_checkpoint), real_images)
    assert not second.cached and second.sha256 != first.sha256


def test_checkpoint_with_wrong_class_count_is_refused(tmp_path, real_images):
    model = create_model("unet_small", num_classes=5, width=0.125)
    path = tmp_path / "five.pt"
    torch.save(model.state_dict(), path)
    with pytest.raises(HarnessError, match=r"head.weight is \[5, 8, 1, 1\] in the checkpoint but \[11, 8, 1, 1\]"):
        export_spec(_spec(path), real_images)


def test_pickled_module_needs_opt_in(tmp_path, real_images):
    path = tmp_path / "whole.pt"
    torch.save(create_model("unet_small", num_classes=CAMVID_CLASSES, width=0.125), path)
    with pytest.raises(HarnessError, match="allow_pickle"):
        export_spec(_spec(path), real_images)
    spec = ModelSpec(name="whole", arch="unet_small", num_classes=CAMVID_CLASSES, input_hw=HW,
                     checkpoint=path, allow_pickle=True)
    assert export_spec(spec, real_images).parity.passed


def test_user_onnx_with_wrong_channel_count_is_refused(tmp_path):
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, *HW])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1, *HW])])
    path = tmp_path / "gray.onnx"
    onnx.save(helper.make_model(graph), str(path))
    spec = ModelSpec(name="gray", onnx=path, num_classes=CAMVID_CLASSES, input_hw=HW)
    with pytest.raises(HarnessError, match=r"has shape \[1, 1, 184, 240\]"):
        export_spec(spec, np.zeros((1, *HW, 3), np.uint8))
