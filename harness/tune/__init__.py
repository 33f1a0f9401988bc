"""`harness tune`: the fastest configuration that fits a target, found by search and proven by paired measurement.

`space.py` (what may be chosen), `measure.py` (one stage: candidates as a bench run measures variants),
`search.py` (Optuna's proposals, screen → survivors → finalists beside the shipped variant), `write.py` (the winner
as a named variant in the target, its ranges in the calibration book); here: the winner written and rebuilt.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from harness.bench import BenchInputs
from harness.measure.backends import DEFAULT_BACKEND
from harness.spec import Suite
from harness.tune.search import TuneResult, TuneSettings, run_tune
from harness.tune.space import build_space

__all__ = ["Conclusion", "TuneResult", "TuneSettings", "build_space", "calibration_unread", "conclude", "run_tune"]


@dataclass(frozen=True)
class Conclusion:
    """What became of the winner: written where (or why not), its ranges in the book, its file rebuilt."""

    name: str = ""
    target_file: Path | None = None
    copied_from: Path | None = None  # the built-in profile the project's copy started from
    book_file: Path | None = None
    rebuilt_sha256: str = ""  # the winner's file made again from what was written
    reproduced: bool | None = None  # None: not checked (nothing written)
    why_not_written: str = ""


def winner_name(model: str, given: str = "") -> str:
    """The written variant's name: --name, else tuned-MODEL; a TOML bare key (it names a table), not a registered
    variant's name."""
    import re

    from harness.errors import HarnessError
    from harness.variants.registry import VARIANTS

    name = given or "tuned-" + re.sub(r"[^A-Za-z0-9_-]", "_", model)
    if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", name):
        raise HarnessError(f"--name {name!r}: use letters, digits, _ and - only, at most 64 (it names a TOML table)")
    if name in VARIANTS.names():
        raise HarnessError(f"--name {name} is a registered variant's name; choose another")
    return name


def conclude(result: TuneResult, suite: Suite, inputs: BenchInputs, results_dir: Path, write: bool = True,
             name: str = "") -> Conclusion:
    """The winner written as a named variant (only when it beats the shipped variant), then its file rebuilt from
    the written settings and the book's ranges alone and compared byte for byte with the one measured."""
    if result.winner is None:
        return Conclusion(why_not_written=f"no winner: {result.stopped or 'no candidate fits every budget'}")
    if result.winner.is_shipped:
        return Conclusion(why_not_written=f"the winner is {result.shipped}'s own settings: {result.shipped} stays")
    if not result.beats_shipped:
        return Conclusion(why_not_written=f"the winner does not beat {result.shipped} by {result.settings.min_gain_pct:g} % "
                                          f"with its interval: {result.shipped} stays")
    if not write:
        return Conclusion(why_not_written="--no-write")
    from harness.tune.write import write_named_variant

    name = winner_name(result.model, name)
    vs = result.winner.vs_shipped
    margin = (f"p50 x{1 / vs.ratio:.3f} of {result.shipped}'s (95 % interval x{1 / vs.high:.3f}-x{1 / vs.low:.3f})"
              if vs is not None and vs.ratio else f"{result.settings.objective} objective, against {result.shipped}")
    note = (f"harness tune {result.model} --target {result.target.name}, {dt.date.today().isoformat()}: {margin}, "
            f"file {result.winner.row.onnx_sha256[:12]}")
    named = result.winner.candidate.renamed(name, models=(result.model,), note=note).named
    if named.quantize:  # what else the int8 file follows from, written out: another CPU would choose reduce_range
        made_with = {k: getattr(inputs.quantize, k) for k in ("calibration_images", "entropy_bins", "keep_output_float",
                                                              "reduce_range")}
        if result.winner.row.nodes_in_float_names:  # the accuracy fallback's choice (--max-miou-drop), kept as made
            made_with["nodes_to_exclude"] = tuple(result.winner.row.nodes_in_float_names.split(";"))
        named = dataclasses.replace(named, quantize=tuple(sorted({**made_with, **dict(named.quantize)}.items())))
    unread = calibration_unread(suite, inputs) if named.quantize else ""
    if unread:
        return Conclusion(why_not_written=unread)
    path, copied = write_named_variant(result.target, named)
    book = _record_ranges(result, suite, results_dir, named)
    sha = _rebuilt_sha(suite, path, inputs, results_dir, name, result.serving)
    return Conclusion(name, path, copied, book, sha, sha == result.winner.row.onnx_sha256)


def calibration_unread(suite: Suite, inputs: BenchInputs) -> str:
    """Why a calibrated winner cannot be written: it was calibrated on images `harness bench` does not read (its
    ranges and file follow from them); "" when the suite names the same folder."""
    given, read = inputs.calibration_dir, suite.calibration_dir
    if given is None or (read is not None and Path(given).resolve() == Path(read).resolve()):
        return ""
    return (f"calibrated on --calibration-data {given}, which harness bench does not read (the suite's [calibration] "
            f"dir is {read or 'not set'}): set it there, or tune without --calibration-data, so the written variant "
            f"makes the same file")


def _record_ranges(result: TuneResult, suite: Suite, results_dir: Path, named) -> Path | None:
    """The calibration ranges the winner's file was made from, into the book beside the record."""
    from harness.variants.book import FOLDER, CalibrationBook
    from harness.variants.named import resolve_variant
    from harness.variants.quantize import measured_ranges
    from harness.variants.registry import book_entry

    settings = result.stages["finalists"].calibrations.get(book_entry(result.model, resolve_variant(
        result.winner.candidate.name, (result.winner.candidate.named,))))
    if not settings:
        return None
    ranges = measured_ranges(settings)
    if ranges is None:
        return None
    book, entry = CalibrationBook(Path(results_dir) / FOLDER), book_entry(result.model, resolve_variant(named.name, (named,)))
    book.record(entry, settings, ranges)
    return book.file(entry, settings)


def _rebuilt_sha(suite: Suite, target_path: Path, inputs: BenchInputs, results_dir: Path, name: str, serving: str) -> str:
    """The named variant's file as `harness bench` makes it from the written target and the book."""
    from harness.bench import make_variant, plan_bench
    from harness.export import export_spec
    from harness.targets import load_target, with_changes
    from harness.variants.book import FOLDER

    target = load_target(str(target_path))
    target = with_changes(target, variants=("fp32", name), ship=(name,), backends=(DEFAULT_BACKEND,),
                          backends_if_installed=(), serving=(serving,))
    inputs = dataclasses.replace(inputs, calibration_book=Path(results_dir) / FOLDER, eval_images=None,
                                 max_miou_drop=None)  # the written nodes_to_exclude, not a new fallback search
    plan = plan_bench(suite, target, inputs)
    spec = suite.models[0]
    images = plan.task.load(inputs.data_dir, "val", suite.ignore_index, spec.input_hw, spec.num_classes, limit=4)[0]
    exported = export_spec(spec, images)
    return make_variant(plan, spec, exported, name).sha256
