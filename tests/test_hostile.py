"""Hostile and unusual input: every one gets one line on stderr, exit 2, no traceback, and the record untouched."""

import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from onnx import TensorProto, helper

from harness.onnx_graph import save_graph

from conftest import results_csv_text, run_cli


def _one_line(proc, *fragments):
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in proc.stderr, proc.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.fixture
def record(tmp_path):
    """A results folder holding a record that must come through every bad run byte for byte."""
    results = tmp_path / "results"
    results.mkdir()
    (results / "fast.csv").write_text(results_csv_text("fast", "kept_model"))
    return results


def _bench(tiny_suite, fast_target, results, *extra):
    return run_cli("bench", "--target", str(fast_target), "--suite", str(tiny_suite), "--results-dir", str(results), *extra)


@pytest.mark.parametrize("victim, damage, message", [
    ("images", lambda b: b"this is not a png", "cannot be read as an image"),
    ("images", lambda b: b[:200], "cannot be read as an image"),
    ("masks", lambda b: b[:120], "cannot be read as an image"),
])
def test_broken_image_files(tiny_suite, fast_target, small_split, record, victim, damage, message):
    path = sorted((small_split / victim).iterdir())[2]
    path.write_bytes(damage(path.read_bytes()))
    before = (record / "fast.csv").read_bytes()
    _one_line(_bench(tiny_suite, fast_target, record), message, path.name)
    assert (record / "fast.csv").read_bytes() == before


def test_a_record_that_is_not_utf8_text(tiny_suite, fast_target, record):
    (record / "fast.csv").write_bytes(b"\xff\xfe\x00garbage\x80\x81\n")
    _one_line(_bench(tiny_suite, fast_target, record), "is not a CSV written by harness")
    _one_line(run_cli("compare", str(record / "fast.csv"), str(record / "fast.csv")), "is not a CSV written by harness")


def test_a_truncated_record(tiny_suite, fast_target, record):
    header, row = (record / "fast.csv").read_text().splitlines()[:2]
    (record / "fast.csv").write_text(f"{header}\n{row[: len(row) // 2]}")  # cut off mid-row, as a full disk would
    _one_line(_bench(tiny_suite, fast_target, record), "truncated or damaged at line 2")


def test_output_places_that_cannot_be_written(tmp_path, tiny_suite, fast_target):
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    _one_line(_bench(tiny_suite, fast_target, a_file), "--results-dir", "is a file, not a folder")
    _one_line(run_cli("report", "--out", str(a_file)), "--out", "is a file")
    _one_line(run_cli("export", "tiny_unet", "--suite", str(tiny_suite), "--out", str(a_file / "m.onnx")),
              "--out", "is a file, not a folder")
    _one_line(run_cli("export", "tiny_unet", "--suite", str(tiny_suite), "--out", str(tmp_path)), "is a folder")


def test_zero_calibration_images(tiny_suite, fast_target, record):
    _one_line(_bench(tiny_suite, fast_target, record, "--calibration-images", "0"), "calibration images = 0")


def test_mask_class_out_of_range_names_the_suite_key(tmp_path, small_split, fast_target, record):
    suite = tmp_path / "s.toml"
    suite.write_text(f'[data]\ndir = "{small_split}"\nignore_index = 255\n\n[[model]]\nname = "m"\narch = "unet_small"\n'
                     f'num_classes = 11\ninput_size = [184, 240]\nkwargs = {{ width = 0.125 }}\n')
    _one_line(_bench(suite, fast_target, record), "ignore_index in the suite's [data] table")


def _user_onnx_suite(tmp_path, small_split, nodes, out_channels, num_classes=11):
    save_graph(tmp_path / "mine.onnx", "g", nodes,
               [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["n", 3, 184, 240])],
               [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["n", out_channels, 184, 240])])
    suite = tmp_path / "onnx_suite.toml"
    suite.write_text(f'[data]\ndir = "{small_split}"\nignore_index = 11\n\n[[model]]\nname = "mine"\nonnx = "mine.onnx"\n'
                     f'num_classes = {num_classes}\ninput_size = [184, 240]\n')
    return suite


def test_user_onnx_that_parses_but_cannot_run(tmp_path, small_split, fast_target, record):
    suite = _user_onnx_suite(tmp_path, small_split, [helper.make_node("NoSuchOperator", ["image"], ["logits"])], 11)
    before = (record / "fast.csv").read_bytes()
    _one_line(_bench(suite, fast_target, record), "is not a model ONNX Runtime can run")
    assert (record / "fast.csv").read_bytes() == before


def test_user_onnx_with_the_wrong_class_count_is_refused_before_measuring(tmp_path, small_split, fast_target, record):
    suite = _user_onnx_suite(tmp_path, small_split, [helper.make_node("Identity", ["image"], ["logits"])], 3)
    _one_line(_bench(suite, fast_target, record), "outputs shape [None, 3, 184, 240]", "11 classes")


UNCALLABLE_MODELS = """
from torch import nn


class Conv(nn.Conv2d):
    def __init__(self):
        super().__init__(3, 11, 1)


class TwoInputs(Conv):
    def forward(self, x, y):
        return super().forward(x) + y


class TupleOut(Conv):
    def forward(self, x):
        return super().forward(x), x


class DictOut(Conv):
    def forward(self, x):
        return {"logits": super().forward(x)}
"""


@pytest.mark.parametrize("cls, said", [
    ("TwoInputs", "forward on a 1x3x184x240 image failed (TypeError: TwoInputs.forward() missing 1 required positional "
                  "argument: 'y'); the harness calls forward with one image tensor"),
    ("TupleOut", "forward returned a tuple; the factory's model must return the logits tensor"),
    ("DictOut", "forward returned a dict with keys ['logits']; the factory's model must return the logits tensor, or "
                "a dict holding it under output = \"out\""),
])
def test_a_model_the_harness_cannot_call_or_read_is_a_failed_row_and_the_others_are_measured(
        tmp_path, small_split, fast_target, record, cls, said):
    (tmp_path / "uncallable.py").write_text(UNCALLABLE_MODELS)
    suite = tmp_path / "suite.toml"
    suite.write_text(f'[data]\ndir = "{small_split}"\nignore_index = 11\n\n'
                     + "".join(f'[[model]]\nname = "{name}"\nfactory = "uncallable:{factory}"\nnum_classes = 11\n'
                               f'input_size = [184, 240]\n\n' for name, factory in (("bad", cls), ("good", "Conv"))))
    proc = _bench(suite, fast_target, record)
    assert proc.returncode == 1 and "Traceback" not in proc.stdout + proc.stderr, proc.stdout + proc.stderr
    lines = [line for line in proc.stdout.splitlines() if line.startswith("not measured: ")]
    assert len(lines) == 1 and lines[0].startswith("not measured: bad: export failed: model 'bad': ") and said in lines[0], lines
    assert re.search(r"good +fp32 .* (pass|new)", proc.stdout), proc.stdout  # the other model measured, and fits
    if cls == "DictOut":  # naming the key makes it work
        suite.write_text(suite.read_text().replace('factory = "uncallable:DictOut"', 'factory = "uncallable:DictOut"\noutput = "logits"'))
        assert _bench(suite, fast_target, record, "--no-gate").returncode == 0


def test_a_pytorch_model_with_the_wrong_class_count_is_refused_after_export(tmp_path, small_split, fast_target, record):
    """Parity holds (ONNX matches PyTorch), but 3 class maps cannot be scored as 11 classes: refused before measuring."""
    (tmp_path / "three.py").write_text("from torch import nn\n\ndef build():\n    return nn.Conv2d(3, 3, 1)\n")
    suite = tmp_path / "three.toml"
    suite.write_text(f'[data]\ndir = "{small_split}"\nignore_index = 11\n\n[[model]]\nname = "three"\n'
                     f'factory = "three:build"\nnum_classes = 11\ninput_size = [184, 240]\n')
    proc = _bench(suite, fast_target, record)
    _one_line(proc, "model 'three' outputs shape [None, 3, 184, 240]", "11 classes")
    assert "harness.measure.worker" not in proc.stdout


def test_stale_scratch_folders_of_killed_runs_are_removed():
    from harness.bench import WORKDIR_PREFIX, remove_stale_workdirs

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = Path(tempfile.gettempdir()) / f"{WORKDIR_PREFIX}{dead.pid}-test"
    live = Path(tempfile.gettempdir()) / f"{WORKDIR_PREFIX}{os.getpid()}-test"
    for folder in (stale, live):
        folder.mkdir(exist_ok=True)
        (folder / "eval.npz").write_bytes(b"x" * 1000)
    try:
        removed = remove_stale_workdirs()
        assert stale in removed and not stale.exists() and live.exists()
    finally:
        shutil.rmtree(live, ignore_errors=True)
        shutil.rmtree(stale, ignore_errors=True)


def test_a_model_name_that_is_not_an_identifier_is_one_line_and_makes_no_folder(tmp_path, small_split, fast_target, record):
    """Names label rows and become folder names: '../..' climbed out of results/, '[/red]' crashed rich (exit 3)."""
    deep = tmp_path / "a" / "b"
    deep.mkdir(parents=True)
    suite = deep / "s.toml"
    for name, command in (("../../../../escape4", ("bench", "--target", str(fast_target), "--results-dir", str(record),
                                                   "--update", "--profile")),
                          ("[/red]oops[bold", ("profile", "[/red]oops[bold", "--target", str(fast_target)))):
        suite.write_text(f'[data]\ndir = "{small_split}"\nignore_index = 11\n\n[[model]]\nname = "{name}"\n'
                         f'arch = "unet_small"\nnum_classes = 11\ninput_size = [96, 128]\nkwargs = {{ width = 0.125 }}\n')
        before = (record / "fast.csv").read_bytes()
        _one_line(run_cli(*command, "--suite", str(suite), cwd=deep), f"model name '{name}' is refused",
                  "letters, digits and _ - . + only")
        assert (record / "fast.csv").read_bytes() == before
    assert not (tmp_path.parent / "escape4_onnxruntime").exists() and not list(tmp_path.rglob("escape4*"))
    assert not (record / "latest").exists()  # refused before anything was written


def test_a_full_disk_is_the_users_disk_not_a_bug():
    """A real ENOSPC (from /dev/full) becomes one line naming the path and where to point instead."""
    from harness.errors import HarnessError
    from harness.files import disk_error

    with pytest.raises(OSError) as caught:
        with open("/dev/full", "w") as f:
            f.write("x" * 10)
    trouble = disk_error(caught.value, Path("/data/results"), "pass --results-dir a folder on a disk with room")
    assert isinstance(trouble, HarnessError)
    assert str(trouble).startswith("no space left on the disk holding /data/results (No space left on device)")
    assert isinstance(disk_error(OSError(5, "Input/output error"), Path("/x"), ""), OSError)  # not the user's: unchanged


@pytest.fixture
def tiny_disk(tmp_path):
    """A 256 KB tmpfs: a disk that really fills up. Mounting needs root with CAP_SYS_ADMIN."""
    mount = tmp_path / "tiny_disk"
    mount.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)], capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({proc.stderr.strip()}); the /dev/full test covers the message")
    yield mount
    subprocess.run(["umount", str(mount)], check=False)


def test_the_disk_filling_during_update_is_one_line_and_the_record_is_untouched(tiny_suite, fast_target, tiny_disk):
    results = tiny_disk / "results"
    assert _bench(tiny_suite, fast_target, results, "--update").returncode == 0
    before = (results / "fast.csv").read_bytes()
    fd = os.open(tiny_disk / "filler", os.O_WRONLY | os.O_CREAT)  # fill the disk to its last byte
    try:
        while os.write(fd, b"\0" * 4096):
            pass
    except OSError:
        pass
    finally:
        os.close(fd)
    proc = _bench(tiny_suite, fast_target, results, "--update")
    _one_line(proc, "no space left on the disk holding", str(results), "--results-dir")
    assert (results / "fast.csv").read_bytes() == before
    assert not [p for p in results.rglob(".*.tmp")]  # no half-written temporary file left behind
