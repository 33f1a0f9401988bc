"""The calibration book: int8-static made from committed ranges is the same file as the one they were measured for,
without calibrating; the ranges really are what it is made from; other settings and a damaged entry are handled."""

import json
import os

import pytest
import torch

from harness.cache import file_sha256
from harness.data import find_split, load_split
from harness.errors import HarnessError
from harness.export import export_spec
from harness.models import create_model
from harness.spec import ASSETS_DIR, ModelSpec
from harness.variants import quantize, variant_of
from harness.variants.book import CalibrationBook
from harness.variants.quantize import QuantizeOptions, measured_ranges

HW = (96, 128)
OPTIONS = QuantizeOptions(calibration_method="minmax", calibration_images=8)


@pytest.fixture(scope="module")
def images():
    return load_split(find_split(ASSETS_DIR / "camvid_train32", "train", 11), HW, 11, limit=8)[0]


def _export(folder, images, seed: int):
    torch.manual_seed(seed)
    path = folder / f"tiny{seed}.pt"
    torch.save(create_model("unet_small", num_classes=11, width=0.25).state_dict(), path)
    spec = ModelSpec(name="tiny", arch="unet_small", num_classes=11, input_hw=HW, checkpoint=path, model_kwargs={"width": 0.25})
    return spec, export_spec(spec, images[:2])


@pytest.fixture
def fresh_cache(tmp_path, monkeypatch):
    """Each step in its own empty cache: a second machine, as CI's fresh runner is."""
    def use(name: str):
        monkeypatch.setenv("HARNESS_CACHE_DIR", str(tmp_path / name))
    return use


def _calibration_refused(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("calibrated although the book holds these ranges")
    monkeypatch.setattr(quantize, "_collect_ranges", refuse)


def test_a_second_machine_makes_the_same_file_from_the_book_without_calibrating(tmp_path, images, fresh_cache, monkeypatch):
    book = CalibrationBook(tmp_path / "results" / "calibration")
    fresh_cache("first")
    spec, exported = _export(tmp_path, images, 0)
    first = variant_of(exported, "int8-static", OPTIONS, images, spec=spec, book=book)
    assert first.calibration["model"] == exported.sha256 and "calibration book" not in first.recipe
    assert book.record("tiny", first.calibration, measured_ranges(first.calibration))
    assert not book.record("tiny", first.calibration, measured_ranges(first.calibration))  # unchanged: not rewritten
    entry = json.loads(book.file("tiny", first.calibration).read_text())
    assert entry["settings"] == first.calibration and entry["ranges"]["CLS"] == "TensorsData"

    fresh_cache("second")
    _calibration_refused(monkeypatch)
    spec, exported = _export(tmp_path, images, 0)
    second = variant_of(exported, "int8-static", OPTIONS, images, spec=spec, book=book)
    assert not second.cached and second.sha256 == first.sha256 == file_sha256(second.path)
    assert "ranges from the calibration book (tiny.minmax.json)" in second.recipe


def _recorded(tmp_path, images, fresh_cache):
    """A first machine's int8-static of the tiny export, its ranges written to a book."""
    book = CalibrationBook(tmp_path / "calibration")
    fresh_cache("first")
    spec, exported = _export(tmp_path, images, 0)
    first = variant_of(exported, "int8-static", OPTIONS, images, spec=spec, book=book)
    book.record("tiny", first.calibration, measured_ranges(first.calibration))
    return book, spec, exported, first


def test_the_file_is_made_from_the_books_ranges(tmp_path, images, fresh_cache):
    book, spec, exported, first = _recorded(tmp_path, images, fresh_cache)
    path = book.file("tiny", first.calibration)
    entry = json.loads(path.read_text())

    def wider(value):  # a float, or numpy's JSON form of one (a scalar or a list): other scales in the file
        if isinstance(value, dict):
            return {**value, "data": wider(value["data"])}
        return [wider(v) for v in value] if isinstance(value, list) else value * 4 + 1

    for data in entry["ranges"]["data"].values():
        data["highest"] = wider(data["highest"])
    path.write_text(json.dumps(entry))
    fresh_cache("second")
    assert variant_of(exported, "int8-static", OPTIONS, images, spec=spec, book=book).sha256 != first.sha256


def test_ranges_of_another_export_are_not_used(tmp_path, images, fresh_cache, monkeypatch):
    book, spec, exported, first = _recorded(tmp_path, images, fresh_cache)
    fresh_cache("second")
    spec, retrained = _export(tmp_path, images, 1)  # other weights: another export, other ranges
    assert retrained.sha256 != exported.sha256
    made = variant_of(retrained, "int8-static", OPTIONS, images, spec=spec, book=book)
    assert "calibration book" not in made.recipe and made.calibration["model"] == retrained.sha256
    assert book.lookup("tiny", made.calibration) is None
    assert book.record("tiny", made.calibration, measured_ranges(made.calibration))  # --update: the diff shows them


def test_a_damaged_entry_is_refused_with_what_to_do(tmp_path, images, fresh_cache):
    book, spec, exported, first = _recorded(tmp_path, images, fresh_cache)
    path = book.file("tiny", first.calibration)
    path.write_text(path.read_text()[: os.path.getsize(path) // 2])  # cut short
    with pytest.raises(HarnessError, match="calibration book entry .* is damaged .*git checkout"):
        book.lookup("tiny", first.calibration)


@pytest.mark.slow
def test_bench_records_the_ranges_beside_the_record_and_every_machine_uses_them(tmp_path, tiny_suite, fast_target):
    from harness.results import read_rows

    from conftest import run_cli

    tiny_suite.write_text(tiny_suite.read_text().replace(
        "ignore_index = 11\n", f'ignore_index = 11\n\n[calibration]\ndir = "{ASSETS_DIR / "camvid_train32"}"\nimages = 8\n'))
    fast_target.write_text(fast_target.read_text() + 'variants = ["fp32", "int8-static"]\n')
    results = tmp_path / "results"

    def bench(cache: str, *extra):
        proc = run_cli("bench", "--target", str(fast_target), "--suite", str(tiny_suite), "--results-dir", str(results),
                       *extra, env={"HARNESS_CACHE_DIR": str(tmp_path / cache)})
        assert proc.returncode == 0, proc.stdout + proc.stderr
        return {r.variant: r for r in read_rows(results / "latest" / "fast.csv")}

    recorded = bench("first")  # the first record: its int8 ranges go into the book beside it
    entry = results / "calibration" / "tiny_unet.percentile.json"
    assert entry.is_file() and json.loads(entry.read_text())["settings"]["images"]
    again = bench("second")  # a fresh machine's cache: the same int8 file, from the book
    assert again["int8-static"].onnx_sha256 == recorded["int8-static"].onnx_sha256
    assert "ranges from the calibration book (tiny_unet.percentile.json)" in again["int8-static"].recipe

    book = json.loads(entry.read_text())
    for data in book["ranges"]["data"].values():  # the ranges are what the file is made from: change them, it changes
        data["lowest"], data["highest"] = -64.0, 64.0
    entry.write_text(json.dumps(book))
    changed = bench("third", "--no-gate")
    assert changed["int8-static"].onnx_sha256 != recorded["int8-static"].onnx_sha256
    assert changed["fp32"].onnx_sha256 == recorded["fp32"].onnx_sha256

    # `harness quantize` in that project reads the same book: the file it writes is the one bench made from it
    out = tmp_path / "quantized.onnx"
    proc = run_cli("quantize", "tiny_unet", "--suite", str(tiny_suite), "--method", "static", "--out", str(out),
                   cwd=tmp_path, env={"HARNESS_CACHE_DIR": str(tmp_path / "fourth")})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert file_sha256(out) == changed["int8-static"].onnx_sha256  # the edited ranges: calibrated afresh it differs
