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


def _save(path, image, **options):
    image.save(path, **options)
    return path


def test_16_bit_grey_is_scaled_by_its_bit_depth_not_clipped(tmp_path):
    from PIL import Image

    from harness.data import read_rgb

    ramp = np.array([[0, 257, 32768, 65535]], dtype=np.uint16)  # 257 = 1/255 of the 16-bit range
    for path, mode in ((tmp_path / "g.png", "I;16"), (tmp_path / "g.tif", "I;16B")):
        _save(path, Image.fromarray(ramp if mode == "I;16" else ramp.astype(">u2")))
        with Image.open(path) as opened:
            assert opened.mode == mode
        assert read_rgb(path)[0, :, 0].tolist() == [0, 1, 128, 255]
        assert (read_rgb(path)[..., 0] == read_rgb(path)[..., 2]).all()


def test_a_12_bit_tiff_is_scaled_by_its_declared_depth(tmp_path):
    """A sensor's 12-bit TIFF (packed samples, BitsPerSample 12): Pillow opens it as I;16 holding 0..4095."""
    import struct

    from PIL import Image

    from harness.data import read_rgb

    path = _save(tmp_path / "sensor.tif", Image.fromarray(np.zeros((1, 4), dtype=np.uint16)))
    with Image.open(path) as opened:
        strip = opened.tag_v2[273][0]
    data = bytearray(path.read_bytes())
    tag = data.find(struct.pack("<HHIH", 258, 3, 1, 16))  # BitsPerSample: 16 -> 12
    data[tag + 8:tag + 10] = struct.pack("<H", 12)
    bits = "".join(f"{v:012b}" for v in (0, 2048, 4095, 1))
    data[strip:strip + 6] = int(bits, 2).to_bytes(6, "big")
    path.write_bytes(bytes(data))
    with Image.open(path) as opened:
        assert opened.mode == "I;16" and np.asarray(opened).tolist() == [[0, 2048, 4095, 1]]
    assert read_rgb(path)[0, :, 0].tolist() == [0, 128, 255, 0]


def test_transparent_pixels_show_the_padding_colour_and_opaque_ones_are_unchanged(tmp_path):
    from PIL import Image

    from harness.data import MEAN_RGB, read_rgb

    rgba = np.zeros((2, 2, 4), dtype=np.uint8)
    rgba[0] = (10, 20, 30, 255)  # opaque row
    rgba[1] = (200, 200, 200, 0)  # transparent row: its colour is not part of the picture
    rgb = read_rgb(_save(tmp_path / "a.png", Image.fromarray(rgba, "RGBA")))
    assert rgb[0].tolist() == [[10, 20, 30]] * 2
    assert rgb[1].tolist() == [np.round(MEAN_RGB * 255).astype(int).tolist()] * 2
    palette = Image.fromarray(np.array([[0, 1]], dtype=np.uint8), "P")
    palette.putpalette([255, 0, 0, 0, 0, 255])
    rgb = read_rgb(_save(tmp_path / "p.png", palette, transparency=0))
    assert rgb[0, 1].tolist() == [0, 0, 255] and rgb[0, 0].tolist() == np.round(MEAN_RGB * 255).astype(int).tolist()


@pytest.mark.parametrize("mode, pixel, expected", [
    ("L", 77, [77, 77, 77]), ("1", 1, [255, 255, 255]), ("LA", (77, 255), [77, 77, 77]),
    ("CMYK", (0, 0, 0, 0), [255, 255, 255]), ("RGB", (1, 2, 3), [1, 2, 3]),
])
def test_8_bit_modes_keep_their_values(tmp_path, mode, pixel, expected):
    from PIL import Image

    from harness.data import read_rgb

    path = _save(tmp_path / ("x.tif" if mode == "CMYK" else "x.png"), Image.new(mode, (3, 2), pixel))
    assert read_rgb(path)[1, 2].tolist() == expected


def test_float_and_32_bit_images_are_refused_by_file_and_mode(tmp_path):
    from PIL import Image

    from harness.data import read_rgb

    floats = _save(tmp_path / "f.tif", Image.fromarray(np.ones((2, 2), dtype=np.float32)))
    with pytest.raises(HarnessError, match=f"image {floats} has mode F \\(32-bit floats\\), which has no fixed range"):
        read_rgb(floats)
    wide = _save(tmp_path / "i.tif", Image.fromarray(np.full((2, 2), 70000, dtype=np.int32)))
    with pytest.raises(HarnessError, match=f"image {wide} has mode I with values 70000..70000 and no bit depth"):
        read_rgb(wide)


@pytest.mark.parametrize("mode, pixel", [("RGB", (1, 1, 1)), ("RGBA", (1, 1, 1, 255)), ("LA", (1, 255))])
def test_a_mask_that_cannot_hold_class_indices_is_refused_by_mode(tmp_path, mode, pixel):
    from PIL import Image

    from harness.data import read_mask

    path = _save(tmp_path / "m.png", Image.new(mode, (2, 2), pixel))
    with pytest.raises(HarnessError, match=f"mask {path} has mode {mode}, which cannot hold class indices faithfully"):
        read_mask(path)


def test_index_masks_keep_their_classes(tmp_path):
    from PIL import Image

    from harness.data import read_mask

    classes = np.array([[0, 3, 11, 300]], dtype=np.uint16)
    assert read_mask(_save(tmp_path / "m16.png", Image.fromarray(classes))).tolist() == [[0, 3, 11, 300]]
    assert read_mask(_save(tmp_path / "m8.png", Image.fromarray(classes.astype(np.uint8)[:, :3]))).tolist() == [[0, 3, 11]]
    assert read_mask(_save(tmp_path / "m1.png", Image.new("1", (2, 1), 1))).tolist() == [[1, 1]]


def _png_header_only(path, width: int, height: int):
    """A PNG whose header claims width x height: enough for Pillow to open lazily, never decoded here."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b""))
    return path


@pytest.mark.parametrize("width, height, size", [(10_000, 6_000, "10000x6000 = 60 Mpx"), (10_000, 9_000, "10000x9000 = 90 Mpx"),
                                                 (20_000, 10_000, "200 Mpx")])
def test_an_image_too_large_by_its_header_is_refused_before_decoding(tmp_path, width, height, size):
    import warnings

    from harness.data import read_mask, read_rgb

    path = _png_header_only(tmp_path / "huge.png", width, height)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # Pillow's own bomb warning would be a second line on stderr
        with pytest.raises(HarnessError, match=f"image {path} is {size} by its header, over the 50 Mpx limit"):
            read_rgb(path)
        with pytest.raises(HarnessError, match="mask .* over the 50 Mpx limit: shrink it or remove it \\(with its image\\)"):
            read_mask(path)


def test_a_16_bit_evaluation_split_loads_like_its_8_bit_copy(tmp_path, small_split):
    from PIL import Image

    for image in sorted((small_split / "images").iterdir())[:2]:
        grey = np.asarray(Image.open(image).convert("L"))
        Image.fromarray(grey).save(image)  # 8-bit grey
        Image.fromarray(grey.astype(np.uint16) * 257).save(tmp_path / image.name)  # the same picture in 16 bits
    eight, _ = load_split(find_split(small_split, "val", CAMVID_IGNORE), (184, 240), CAMVID_CLASSES, limit=2)
    for image in sorted((small_split / "images").iterdir())[:2]:
        (tmp_path / image.name).replace(image)
    sixteen, _ = load_split(find_split(small_split, "val", CAMVID_IGNORE), (184, 240), CAMVID_CLASSES, limit=2)
    assert np.array_equal(eight, sixteen)
