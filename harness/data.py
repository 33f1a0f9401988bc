"""Image + index-mask folders, and the one place that fits an image to a model's input size.

Layout: DIR/images/NAME.* and DIR/masks/NAME.png (same stem), or ROOT/<split>/images and masks.
Imports numpy and Pillow only, so measurement workers can use it without torch.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from harness.errors import HarnessError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
# ImageNet statistics: the smp encoders expect them, with or without pretrained weights.
MEAN_RGB = np.array([0.485, 0.456, 0.406], dtype=np.float32)
STD_RGB = np.array([0.229, 0.224, 0.225], dtype=np.float32)
# Per image or mask, by its header: 50 Mpx is ~150 MB as RGB, far past any model input; more is a mistake or a bomb.
MAX_PIXELS = 50_000_000
COLOUR_MODES = ("RGB", "RGBX", "L", "1", "CMYK", "YCbCr", "LAB", "HSV")  # Pillow converts these to RGB by their range
ALPHA_MODES = ("RGBA", "RGBa", "LA", "PA")
MASK_MODES = ("1", "L", "P", "I", "I;16", "I;16B", "I;16L", "I;16N")  # one integer per pixel: a class index each


@dataclass(frozen=True)
class SegmentationSplit:
    """A split on disk: paired image and mask files, sorted by name."""

    root: Path
    pairs: tuple[tuple[Path, Path], ...]
    ignore_index: int

    def __len__(self) -> int:
        return len(self.pairs)


def find_split(path: str | Path, split: str, ignore_index: int) -> SegmentationSplit:
    """Accept either a split folder (images/, masks/) or a dataset root holding <split>/."""
    root = Path(path)
    if not root.is_dir():
        raise HarnessError(f"data folder {root} does not exist: pass --data a folder holding images/ and masks/")
    if not (root / "images").is_dir() and (root / split / "images").is_dir():
        root = root / split
    image_dir, mask_dir = root / "images", root / "masks"
    for sub in (image_dir, mask_dir):
        if not sub.is_dir():
            raise HarnessError(
                f"data folder {root} has no {sub.name}/ folder: put images in {root}/images and "
                f"index masks with the same names in {root}/masks"
            )
    images = sorted(p for p in image_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not images:
        raise HarnessError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {image_dir}")
    masks = {p.stem: p for p in mask_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES}
    pairs = []
    for image in images:
        mask = masks.get(image.stem)
        if mask is None:
            raise HarnessError(f"image {image.name} has no mask: add {mask_dir}/{image.stem}.png or remove the image")
        pairs.append((image, mask))
    return SegmentationSplit(root, tuple(pairs), ignore_index)


def _open_image(path: Path, kind: str):
    """Decode a whole image now: one that is not an image, is cut short or is too large by its header is named in one line."""
    import warnings

    from PIL import Image

    other, image = "mask" if kind == "image" else "image", None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # MAX_PIXELS, lower, is checked below
            image = Image.open(path)
            check_pixels(image, f"{kind} {path}", f"shrink it or remove it (with its {other})")
            image.load()
        return image
    except BaseException as e:
        if image is not None:
            image.close()
        if isinstance(e, Image.DecompressionBombError):  # above Pillow's own limit: its message holds the pixel count
            found = re.search(r"\((\d+) pixels\)", str(e))
            size = f"{int(found[1]) / 1e6:.4g} Mpx" if found else "over Pillow's own limit"
            raise HarnessError(f"{kind} {path} is {size} by its header, over the {MAX_PIXELS / 1e6:g} Mpx limit: "
                               f"shrink it or remove it (with its {other})") from None
        if isinstance(e, (OSError, SyntaxError, ValueError)):
            raise HarnessError(f"{kind} {path} cannot be read as an image ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else 'truncated'}); "
                               f"replace it or remove it (with its {other})") from e
        raise


def check_pixels(image, source: str, remedy: str) -> None:
    """Refuse an opened image larger than MAX_PIXELS by its header, before decoding it (Pillow opens lazily)."""
    width, height = image.size
    if width * height > MAX_PIXELS:
        raise HarnessError(f"{source} is {width}x{height} = {width * height / 1e6:.4g} Mpx by its header, over the "
                           f"{MAX_PIXELS / 1e6:g} Mpx limit: {remedy}")


def image_to_rgb(image, source: str) -> np.ndarray:
    """An opened image as (H,W,3) uint8 RGB, each mode by its real range; a mode without one is refused naming `source`."""
    return np.asarray(rgb_image(image, source), dtype=np.uint8)


def rgb_image(image, source: str):
    """The opened image as a Pillow RGB image, each mode by its real range (the service shrinks it in Pillow after).

    16-bit grey is scaled by its bit depth (Pillow's own conversion clips it at 255); transparent pixels become the
    dataset mean, the colour of padding. Done in Pillow, at a few bytes per pixel: a service's memory bound counts them."""
    from PIL import Image

    if image.mode.startswith("I;16") or image.mode == "I":
        return _grey_by_depth(image, source).convert("RGB")
    if image.mode in ALPHA_MODES or image.mode == "P" or "transparency" in image.info:
        rgba = image if image.mode == "RGBA" else image.convert("RGBA")
        out = Image.new("RGB", rgba.size, tuple(int(v) for v in np.round(MEAN_RGB * 255)))
        out.paste(rgba, mask=rgba)  # alpha-weighted onto the padding colour (an RGBA mask is its alpha)
        return out
    if image.mode in COLOUR_MODES:
        return image.convert("RGB")
    raise HarnessError(f"{source} has mode {image.mode}{' (32-bit floats)' if image.mode == 'F' else ''}, which has no "
                       f"fixed range to map to 0-255: save it as 8-bit RGB or grey, or 16-bit grey")


def _grey_by_depth(image, source: str):
    """Integer grey scaled to 0-255 (mode L) by the bit depth its file declares (16, or e.g. 12 in a TIFF from a 12-bit
    sensor)."""
    grey = image.convert("I")  # 32-bit: Pillow's point and getextrema refuse some 16-bit layouts (I;16B)
    low, high = grey.getextrema()
    bits = 16 if image.mode.startswith("I;16") or image.format == "PNG" else None  # PNG's mode I is 16-bit grey
    declared = getattr(image, "tag_v2", {}).get(258)  # TIFF BitsPerSample
    declared = declared[0] if isinstance(declared, tuple) and declared else declared
    if isinstance(declared, int) and 1 <= declared <= 16:
        bits = declared
    if bits is None or low < 0 or high >= 2 ** bits:
        raise HarnessError(f"{source} has mode {image.mode} with values {low}..{high} and no bit depth of "
                           f"16 or less to scale them by: save it as 8-bit RGB or grey, or 16-bit grey")
    scale = 255 / (2 ** bits - 1)
    return grey.point(lambda v: v * scale + 0.5).convert("L")  # + 0.5: rounded, as the cast truncates


def read_rgb(path: Path) -> np.ndarray:
    with _open_image(path, "image") as im:
        return image_to_rgb(im, f"image {path}")


def read_mask(path: Path) -> np.ndarray:
    with _open_image(path, "mask") as im:
        if im.mode not in MASK_MODES:
            raise HarnessError(f"mask {path} has mode {im.mode}, which cannot hold class indices faithfully: save one "
                               f"class index per pixel as an 8-bit grey or palette PNG")
        return np.asarray(im, dtype=np.int64)


def fit_to_input(image: np.ndarray, mask: np.ndarray | None, input_hw: tuple[int, int], ignore_index: int):
    """Shrink to fit (keeping aspect) only if larger, then pad bottom/right to input_hw.

    Padding never changes a labelled pixel: padded image pixels are the dataset mean (zero after
    normalisation) and padded mask pixels are ignore_index, so they never count in loss or mIoU.
    This is why CamVid 180x240 becomes 184x240 for PSPNet (sides divisible by 8).
    """
    from PIL import Image

    h, w = image.shape[:2]
    th, tw = input_hw
    if h > th or w > tw:
        scale = min(th / h, tw / w)
        nh, nw = max(1, int(h * scale)), max(1, int(w * scale))
        image = np.asarray(Image.fromarray(image).resize((nw, nh), Image.BILINEAR))
        if mask is not None:
            mask = np.asarray(Image.fromarray(mask.astype(np.int32)).resize((nw, nh), Image.NEAREST), dtype=np.int64)
        h, w = nh, nw
    mean_u8 = np.round(MEAN_RGB * 255).astype(np.uint8)
    padded = np.empty((th, tw, 3), dtype=np.uint8)
    padded[...] = mean_u8
    padded[:h, :w] = image
    padded_mask = None
    if mask is not None:
        padded_mask = np.full((th, tw), ignore_index, dtype=np.int64)
        padded_mask[:h, :w] = mask
    return padded, padded_mask


def normalize(images_u8: np.ndarray) -> np.ndarray:
    """NHWC uint8 -> NCHW float32, ImageNet-normalised."""
    x = images_u8.astype(np.float32) / 255.0
    x = (x - MEAN_RGB) / STD_RGB
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


def load_split(split: SegmentationSplit, input_hw: tuple[int, int], num_classes: int, limit: int | None = None):
    """All pairs fitted to input_hw: (N,H,W,3) uint8 images and (N,H,W) int64 masks."""
    pairs = split.pairs[:limit] if limit else split.pairs
    images, masks = [], []
    for image_path, mask_path in pairs:
        image, mask = read_rgb(image_path), read_mask(mask_path)
        if image.shape[:2] != mask.shape:
            raise HarnessError(
                f"mask {mask_path.name} is {mask.shape[1]}x{mask.shape[0]} but its image is "
                f"{image.shape[1]}x{image.shape[0]}: masks must match their images pixel for pixel"
            )
        bad = (mask != split.ignore_index) & ((mask < 0) | (mask >= num_classes))
        if bad.any():
            raise HarnessError(
                f"mask {mask_path} holds class {int(mask[bad].max())}, outside 0..{num_classes - 1} and not the "
                f"ignore index {split.ignore_index}: set ignore_index in the suite's [data] table (harness train: --ignore-index) or the model's number of classes"
            )
        image, mask = fit_to_input(image, mask, input_hw, split.ignore_index)
        images.append(image)
        masks.append(mask)
    return np.stack(images), np.stack(masks)


@dataclass(frozen=True)
class ClassificationSplit:
    """A folder per class (ImageFolder layout): DIR/<class>/*.png, classes in sorted name order."""

    root: Path
    classes: tuple[str, ...]
    items: tuple[tuple[Path, int], ...]

    def __len__(self) -> int:
        return len(self.items)


def find_class_split(path: str | Path, split: str) -> ClassificationSplit:
    """Accept a split folder of class folders, or a dataset root holding <split>/ with them."""
    root = Path(path)
    if not root.is_dir():
        raise HarnessError(f"data folder {root} does not exist: pass --data a folder with one sub-folder of images per class")
    if (root / split).is_dir() and any(p.is_dir() for p in (root / split).iterdir()):
        root = root / split
    classes = tuple(sorted(p.name for p in root.iterdir() if p.is_dir()))
    if len(classes) < 2:
        raise HarnessError(f"data folder {root} holds {len(classes)} class folder(s): a classification split needs "
                           f"one sub-folder of images per class, at least two")
    items = []
    for label, name in enumerate(classes):
        files = sorted(p for p in (root / name).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        items += [(f, label) for f in files]
    if not items:
        raise HarnessError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in the class folders of {root}")
    return ClassificationSplit(root, classes, tuple(items))


def load_class_split(split: ClassificationSplit, input_hw: tuple[int, int], num_classes: int, limit: int | None = None):
    """All images fitted to input_hw, (N,H,W,3) uint8, and their labels (N,) int64."""
    if len(split.classes) != num_classes:
        raise HarnessError(f"{split.root} has {len(split.classes)} class folders but the model has {num_classes} classes; "
                           f"make them agree")
    items = split.items
    if limit:  # take images from every class in turn, so a short sample still covers them all
        by_class = [[it for it in items if it[1] == c] for c in range(num_classes)]
        items = [it for group in zip(*[g + [None] * (len(items) - len(g)) for g in by_class]) for it in group if it][:limit]
    images = [fit_to_input(read_rgb(path), None, input_hw, 0)[0] for path, _ in items]
    return np.stack(images), np.array([label for _, label in items], dtype=np.int64)
