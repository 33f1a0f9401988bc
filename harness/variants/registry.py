"""The variant registry: each variant is a name, whether it needs calibration, and a function that makes it.

Adding a variant (another quantizer, another runtime's format) is one decorated function anywhere:

    @register_variant("int4-weights", "4-bit weight-only quantization")
    def make_int4(job: VariantJob) -> str:
        ...write job.out...
        return "how it was made"

Made files are cached by what made them (the export's hash, the variant, its options and images).
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from harness.measure.backends import DEFAULT_BACKEND, backends_reading
from harness.cache import cached_entry, file_sha256
from harness.errors import HarnessError, VariantError
from harness.export import ExportedModel
from harness.registry import Registry
from harness.variants.quantize import book_settings, calibration_settings


@dataclass(frozen=True)
class VariantJob:
    """What a variant's maker gets: the export, where to write, its options and calibration images."""

    exported: ExportedModel
    out: Path  # the ONNX file to write
    workdir: Path  # scratch space beside it, removed afterwards
    options: object  # harness.variants.quantize.QuantizeOptions for the built-in quantizers
    calibration_images: np.ndarray | None  # uint8 NHWC, only for variants that need calibration
    on_progress: Callable[[int, int], None] | None = None
    spec: object | None = None  # the suite's ModelSpec: a converter that starts from the PyTorch model needs it
    committed: object | None = None  # harness.variants.book.CommittedRanges: calibrate from these, not from the images


@dataclass(frozen=True)
class Variant:
    name: str
    description: str
    make: Callable[[VariantJob], str] | None  # None: the export itself, unchanged
    needs_calibration: bool = False
    supports_fallback: bool = False  # the accuracy fallback can leave nodes of it in float
    runs_under: tuple[str, ...] | None = (DEFAULT_BACKEND,)  # the runtimes that measure it (harness.measure.backends)
    precision: str = ""  # the inference precision a backend is asked for (OpenVINO's hint); "" its f32 default
    suffix: str = ".onnx"  # the made file's: another runtime's format (".tflite") keeps its own
    named: object | None = None  # harness.variants.named.NamedVariant: a target's variant with settings of its own

    @property
    def base(self) -> str:
        """The registered variant whose maker makes the file: itself, or a named variant's base."""
        return self.named.base if self.named is not None else self.name

    @property
    def backends(self) -> tuple[str, ...]:
        """The runtimes that measure it; a variant registered with backends=None: every backend that reads its file
        as it is, a plugin registered later included."""
        return self.runs_under if self.runs_under is not None else backends_reading(self.suffix, self.name)


@dataclass(frozen=True)
class VariantModel:
    """One variant's ONNX file and how it was made."""

    variant: str
    path: Path
    file_mb: float
    recipe: str
    nodes_in_float: tuple[str, ...]
    cached: bool
    sha256: str = ""  # of the variant's ONNX file
    calibration: dict | None = None  # a calibrated variant: what its ranges follow from (a book entry's settings)


VARIANTS: Registry[Variant] = Registry("variant", " (a target's variants must be registered names)")


def register_variant(name: str, description: str, needs_calibration: bool = False, supports_fallback: bool = False,
                     backends: tuple[str, ...] | None = (DEFAULT_BACKEND,), precision: str = "", suffix: str = ".onnx"):
    """Register `make(job) -> recipe` as the variant `name`, measured by `backends` (None: every backend that reads
    its file as it is)."""

    def wrap(make: Callable[[VariantJob], str] | None):
        VARIANTS.add(name, Variant(name, description, make, needs_calibration, supports_fallback, backends, precision,
                                   suffix))
        return make

    return wrap


def list_variants(backend: str | None = None) -> list[str]:
    """Every registered variant, or those `backend` runs."""
    return [n for n in VARIANTS.names() if backend is None or backend in VARIANTS.get(n).backends]


def get_variant(name: str) -> Variant:
    return VARIANTS.get(name)


def variant_of(exported: ExportedModel, name: str | Variant, options, calibration_images: np.ndarray | None,
               on_progress: Callable[[int, int], None] | None = None, spec=None, book=None) -> VariantModel:
    """The variant's ONNX file, made now or taken from the cache; a calibrated one from the ranges committed in `book`
    (harness.variants.book.CalibrationBook) when it holds them for exactly this export and these images."""
    variant = name if isinstance(name, Variant) else get_variant(name)
    name = variant.name
    if variant.make is None:
        how = f" ({exported.how})" if exported.how else ""
        return VariantModel(name, exported.path, exported.file_mb, f"the export, unchanged{how}", (), True, exported.sha256)
    parts = {"sha": exported.sha256, "variant": variant.base}  # a named variant's file is its base's, by settings
    nodes_in_float: tuple[str, ...] = ()
    settings, committed = None, None
    if variant.needs_calibration:
        calibration_images = _checked_calibration(calibration_images, options.calibration_images)
        nodes_in_float = tuple(options.nodes_to_exclude)
        settings = book_settings(calibration_settings(calibration_images, options, exported.sha256))
        parts.update(asdict(options), calib=settings["images"])  # the images' digest, hashed once
        committed = book.lookup(book_entry(spec.name, variant), settings) if book is not None and spec is not None else None
        parts["ranges"] = committed.digest if committed else "calibrated here"

    def build(staging: Path) -> dict:
        job = VariantJob(exported, staging / f"model{variant.suffix}", staging, options, calibration_images, on_progress,
                         spec, committed)
        try:
            recipe = variant.make(job)
        except HarnessError:
            raise
        except Exception as e:  # ORT's quantizers raise many types; the row says which and why
            first_line = str(e).splitlines()[0] if str(e) else ""
            raise VariantError(f"{name} could not be made: {type(e).__name__}: {first_line}") from e
        for leftover in staging.iterdir():
            if leftover.name != job.out.name and leftover.is_file():
                leftover.unlink()
        return {"file_mb": os.path.getsize(job.out) / 1e6, "recipe": recipe, "nodes_in_float": list(nodes_in_float),
                "sha256": file_sha256(job.out)}

    entry = cached_entry("variants", parts, build)
    meta = entry.meta
    path = entry.folder / f"model{variant.suffix}"
    return VariantModel(name, path, meta["file_mb"], meta["recipe"], tuple(meta["nodes_in_float"]), entry.cached,
                        meta.get("sha256") or file_sha256(path), settings)


def book_entry(model: str, variant: Variant) -> str:
    """The calibration book's name for a variant's ranges: the model's; a named variant's own beside it."""
    return model if variant.named is None else f"{model}.{variant.name}"


def _checked_calibration(images: np.ndarray | None, wanted: int) -> np.ndarray:
    if images is None or len(images) == 0:
        raise HarnessError("int8-static needs calibration images: the suite's [calibration] dir, or --calibration-data")
    if len(images) < wanted:
        raise HarnessError(f"{wanted} calibration images asked for, {len(images)} available; "
                           f"lower --calibration-images or add images")
    return images[:wanted]
