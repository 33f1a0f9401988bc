import numpy as np
import pytest

from harness.data import find_split, fit_to_input, load_split
from harness.errors import HarnessError

from conftest import CAMVID_CLASSES, CAMVID_IGNORE, SAMPLE_DIR


def test_shipped_sample_loads_and_pads_to_stride():
    split = find_split(SAMPLE_DIR, "val", CAMVID_IGNORE)
    assert len(split) == 24
    images, masks = load_split(split, (184, 240), CAMVID_CLASSES, limit=3)
    assert images.shape == (3, 184, 240, 3) and images.dtype == np.uint8
    assert masks.shape == (3, 184, 240)
    assert (masks[:, 180:, :] == CAMVID_IGNORE).all()  # padding never counts
    assert (masks[:, :180, :] != CAMVID_IGNORE).any()


def test_dataset_root_with_split_folders_is_accepted(tmp_path, small_split):
    (tmp_path / "root").mkdir()
    small_split.rename(tmp_path / "root" / "val")
    assert len(find_split(tmp_path / "root", "val", CAMVID_IGNORE)) == 6


def test_larger_image_is_shrunk_keeping_aspect_then_padded():
    image = np.full((360, 480, 3), 200, dtype=np.uint8)
    mask = np.ones((360, 480), dtype=np.int64)
    out, out_mask = fit_to_input(image, mask, (184, 240), ignore_index=255)
    assert out.shape == (184, 240, 3)
    assert (out_mask[:180] == 1).all() and (out_mask[180:] == 255).all()


def test_missing_mask_is_named(small_split):
    victim = sorted((small_split / "masks").iterdir())[2]
    victim.unlink()
    with pytest.raises(HarnessError, match=f"image {victim.name} has no mask"):
        find_split(small_split, "val", CAMVID_IGNORE)


def test_missing_folder_is_named(tmp_path):
    with pytest.raises(HarnessError, match="does not exist"):
        find_split(tmp_path / "nope", "val", 255)


def test_mask_class_outside_model_classes_is_refused(small_split):
    split = find_split(small_split, "val", CAMVID_IGNORE)
    with pytest.raises(HarnessError, match="outside 0..4"):
        load_split(split, (184, 240), num_classes=5)
