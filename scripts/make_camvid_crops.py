"""Make the classification sample from CamVid: fixed-size crops labelled by their majority class.

Each 240x180 frame is cut into a 4x3 grid of 60x60 crops. A crop gets a label when one class covers
at least MIN_SHARE of its labelled (non-void) pixels and void covers at most a quarter of it; crops of
classes outside CLASSES are dropped. Up to PER_CLASS crops per class are kept per split, taken evenly
across the frames, written as OUT/<split>/<class>/<frame>_<row>_<col>.png (an ImageFolder layout).

    python scripts/make_camvid_crops.py ../shared/data/camvid harness/assets/camvid_crops
    python scripts/make_camvid_crops.py ../shared/data/camvid /tmp/camvid_crops_training --training
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image

CLASSES = {0: "sky", 1: "building", 3: "road", 4: "pavement", 5: "tree"}  # CamVid indices; cars never fill 75 % of a val crop
VOID, CROP, MIN_SHARE = 11, 60, 0.75
PER_CLASS = {"val": 16, "train": 8}  # the shipped sample: evaluation crops (val frames), calibration crops (train)
TRAINING_PER_CLASS = {"train": 200, "val": 1000}  # with --training: what the shipped classifier trained on


def labelled_crops(split_dir: Path):
    for mask_path in sorted((split_dir / "masks").iterdir()):
        image = np.asarray(Image.open(split_dir / "images" / mask_path.name).convert("RGB"))
        mask = np.asarray(Image.open(mask_path))
        for row in range(mask.shape[0] // CROP):
            for col in range(mask.shape[1] // CROP):
                window = (slice(row * CROP, (row + 1) * CROP), slice(col * CROP, (col + 1) * CROP))
                labels = mask[window]
                labelled = labels[labels != VOID]
                if labelled.size < 0.75 * labels.size:
                    continue
                counts = np.bincount(labelled, minlength=VOID)
                winner = int(counts.argmax())
                if winner in CLASSES and counts[winner] >= MIN_SHARE * labelled.size:
                    yield f"{mask_path.stem}_{row}_{col}", CLASSES[winner], image[window]


def main(source: str, out: str, *flags: str) -> int:
    for split, limit in (TRAINING_PER_CLASS if "--training" in flags else PER_CLASS).items():
        by_class: dict[str, list] = {name: [] for name in CLASSES.values()}
        for name, label, crop in labelled_crops(Path(source) / split):
            by_class[label].append((name, crop))
        for label, crops in by_class.items():
            picked = [crops[int(i)] for i in np.linspace(0, len(crops) - 1, min(limit, len(crops)))] if crops else []
            folder = Path(out) / split / label
            folder.mkdir(parents=True, exist_ok=True)
            for name, crop in picked:
                Image.fromarray(crop).save(folder / f"{name}.png")
            print(f"{split}/{label}: {len(picked)} of {len(crops)} eligible crops")
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
