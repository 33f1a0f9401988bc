"""Image + index-mask folders, and the one place that fits an image to a model's input size.

Layout: DIR/images/NAME.* and DIR/masks/NAME.png (same stem), or ROOT/<split>/images and masks.
Imports numpy and Pillow only, so measurement workers can use it without torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from harness.errors import HarnessError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
# ImageNet statistics: the smp encoders expect them, with or without pretrained weights.
MEAN_RGB = np.array([0.485, 0.456, 0.406], dtype=np.float32)
STD_RGB = np.array([0.229, 0.224, 0.225], dtype=np.float32)


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
    """Decode a whole image now: a file that is not an image, or is cut short, is named in one line."""
    from PIL import Image

    try:
        im = Image.open(path)
        im.load()
        return im
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise HarnessError(f"{kind} {path} cannot be read as an image ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else 'truncated'}); "
                           f"replace it or remove it (with its {'mask' if kind == 'image' else 'image'})") from e


def read_rgb(path: Path) -> np.ndarray:
    with _open_image(path, "image") as im:
        return np.asarray(im.convert("RGB"), dtype=np.uint8)


def read_mask(path: Path) -> np.ndarray:
    with _open_image(path, "mask") as im:
        if im.mode not in ("L", "P", "I", "I;16"):
            raise HarnessError(f"mask {path} is {im.mode}, not an index mask: save one class index per pixel (8-bit)")
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
