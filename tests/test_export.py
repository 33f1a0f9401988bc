"""Export parity on a small real model and real images; checkpoints that do not fit are refused."""

from pathlib import Path

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
    assert exported.how == again.how == "torch.export (dynamo), dynamic batch"  # the first path: no fallback taken


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


OUTSIDE_MODELS = (Path(__file__).parent / "fixtures" / "outside_models.py").read_text()


@pytest.fixture
def outside(tmp_path):
    (tmp_path / "outside_models.py").write_text(OUTSIDE_MODELS)
    return lambda cls: ModelSpec(name=cls.lower(), factory=f"outside_models:{cls}", search_path=tmp_path,
                                 num_classes=CAMVID_CLASSES, input_hw=HW)


def test_a_model_torch_export_refuses_is_exported_by_torchscript_with_parity(outside, real_images):
    exported = export_spec(outside("DataDependent"), real_images)
    assert exported.parity.passed
    assert exported.how.startswith("TorchScript exporter, dynamic batch (torch.export (dynamo), dynamic batch failed: ")
    assert "GuardOnDataDependentSymNode" in exported.how  # the real reason, not torch's wrapper text
    assert "export-datadependent.log" not in " ".join(p.name for p in exported.path.parent.iterdir())


def test_a_model_no_exporter_can_write_is_one_line_naming_the_first_error_and_the_log(outside, real_images):
    from harness.errors import ExportError
    from harness.export import EXPORT_PATHS, export_log_path

    with pytest.raises(ExportError) as caught:
        export_spec(outside("Unexportable"), real_images)
    message = str(caught.value)
    assert "\n" not in message and "torch.export (dynamo), dynamic batch: NotImplementedError: aten_histc" in message
    log = export_log_path(outside("Unexportable"))
    assert str(log) in message and f"all {len(EXPORT_PATHS)} ways tried" in message
    text = log.read_text()
    assert text.count("==== ") == len(EXPORT_PATHS) and "Traceback" in text and "UnsupportedOperatorError" in text


def test_a_batch_torch_fixes_at_one_is_said_in_the_recipe(outside, real_images):
    from harness.export import onnx_batch_dim

    exported = export_spec(outside("BatchOfOne"), real_images)
    assert exported.parity.passed and onnx_batch_dim(exported.path) == 1
    assert exported.how.startswith("torch.export (dynamo), dynamic batch, but torch fixed the batch at 1")


def test_a_model_without_checkpoint_exports_the_same_file_on_every_cache_miss(outside, real_images, tmp_path, monkeypatch):
    spec = ModelSpec(name="fresh", arch="unet_small", num_classes=CAMVID_CLASSES, input_hw=HW,
                     model_kwargs={"width": 0.125})
    first = export_spec(spec, real_images)
    torch.manual_seed(1234)  # whatever state the caller left behind
    monkeypatch.setenv("HARNESS_CACHE_DIR", str(tmp_path / "another_machine"))
    second = export_spec(spec, real_images)
    assert not second.cached and second.sha256 == first.sha256
    state = torch.random.get_rng_state()
    export_spec(outside("DataDependent"), real_images)
    assert torch.equal(torch.random.get_rng_state(), state)  # the caller's random state is left as it was


def test_a_pytorch_model_with_nan_weights_is_refused_before_it_is_measured(tmp_path, real_images):
    from harness.export import NonFiniteOutputError

    model = create_model("unet_small", num_classes=CAMVID_CLASSES, width=0.125)
    with torch.no_grad():
        next(model.parameters()).fill_(float("nan"))
    path = tmp_path / "nan.pt"
    torch.save(model.state_dict(), path)
    with pytest.raises(NonFiniteOutputError, match="NaN or inf logits on a real image"):
        export_spec(_spec(path), real_images)


def test_the_same_model_exported_from_another_folder_is_the_same_file(tmp_path, real_images, monkeypatch):
    """A clone elsewhere (another venv, a CI checkout) must not look like a changed model to the gate."""
    source = OUTSIDE_MODELS
    shas = []
    for folder, text in ((tmp_path / "clone_a", source), (tmp_path / "deeper" / "clone_b", "\n\n\n" + source)):
        folder.mkdir(parents=True)
        (folder / "outside_models.py").write_text(text)  # b: every line moved down by three
        monkeypatch.setenv("HARNESS_CACHE_DIR", str(folder / "cache"))
        spec = ModelSpec(name="healthy", factory="outside_models:Healthy", search_path=folder,
                         num_classes=CAMVID_CLASSES, input_hw=HW)
        exported = export_spec(spec, real_images)
        assert not exported.cached and exported.how == "torch.export (dynamo), dynamic batch"
        text_of_file = exported.path.read_bytes()
        assert str(folder).encode() not in text_of_file and b"site-packages" not in text_of_file
        shas.append(exported.sha256)
    assert shas[0] == shas[1]
