"""Calibration ranges committed beside the record (`results/calibration/<model>.<method>.json`), as TensorRT keeps a
calibration cache: any machine makes the byte-identical int8 file from them instead of its own float rounding of the
same ranges, and a changed model's new ranges show in the diff that changes its record.

A book entry is used only for exactly what it was measured from: the same fp32 export, calibration images, method
and ONNX Runtime release (its pre-processing names the tensors); anything else is calibrated here as before.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from harness.errors import HarnessError

FOLDER = "calibration"  # under the results folder, beside <target>.csv
ABOUT = ("ONNX Runtime calibration ranges for this model's int8-static file, written by `harness bench --update`; the "
         "harness uses them wherever `settings` match, so every machine makes the same int8 file")


@dataclass(frozen=True)
class CommittedRanges:
    """One book entry: ORT's calibration data (TensorsData JSON) and the tensors calibrated by MinMax instead."""

    path: Path
    ranges: dict
    fallback: list

    @property
    def digest(self) -> str:
        """What the int8 file is made from: part of the variant's cache key."""
        text = json.dumps([self.ranges, self.fallback], sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def write_for_quantizer(self, folder: Path) -> Path:
        """ranges.json (and fallback.json beside it) where ORT's quantizer and the recipe read them."""
        (folder / "fallback.json").write_text(json.dumps(self.fallback))
        path = folder / "ranges.json"
        path.write_text(json.dumps(self.ranges))
        return path


@dataclass(frozen=True)
class CalibrationBook:
    folder: Path

    def file(self, model: str, settings: dict) -> Path:
        from harness.files import path_under

        return path_under(self.folder, f"{model}.{settings['method']}.json")

    def lookup(self, model: str, settings: dict) -> CommittedRanges | None:
        """The committed ranges for exactly these settings; None when there are none (or they are for other ones)."""
        path = self.file(model, settings)
        if not path.is_file():
            return None
        try:
            entry = json.loads(path.read_text())
            if entry.get("settings") != settings:
                return None
            return CommittedRanges(path, dict(entry["ranges"]), list(entry.get("fallback", [])))
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise HarnessError(f"calibration book entry {path} is damaged ({type(e).__name__}: {e}); restore it from git "
                               f"(git checkout -- {path}) or delete it to calibrate afresh") from None

    def record(self, model: str, settings: dict, ranges: Path) -> bool:
        """Write the ranges `ranges` (ORT's JSON, fallback.json beside it) for `model`; True when the entry changed."""
        from harness.files import write_text_atomic

        fallback = ranges.with_name("fallback.json")
        entry = {"about": ABOUT, "settings": settings, "ranges": json.loads(ranges.read_text()),
                 "fallback": json.loads(fallback.read_text()) if fallback.is_file() else []}
        text = json.dumps(entry, indent=1, sort_keys=True) + "\n"
        path = self.file(model, settings)
        if path.is_file() and path.read_text() == text:
            return False
        write_text_atomic(path, text)
        return True
