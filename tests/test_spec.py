"""Suite files: names are identifiers, and a BOM at the start of the file is accepted."""

import pytest

from harness.errors import HarnessError
from harness.files import check_name
from harness.results import read_rows
from harness.spec import ASSETS_DIR, load_suite

from conftest import TINY_SUITE

REPO = ASSETS_DIR.parent.parent


def _suite(tmp_path, small_split, name: str):
    path = tmp_path / "s.toml"
    path.write_text(TINY_SUITE.format(data=small_split).replace('name = "tiny_unet"', f'name = "{name}"'), encoding="utf-8")
    return path


@pytest.mark.parametrize("name", ["../../../../escape4", "team/tiny", "[/red]oops[bold", ".hidden", "-flag", "",
                                  "a b", "x" * 65, "naïve", "a\\\\b"])
def test_a_model_name_that_is_not_an_identifier_is_refused_with_the_rule(tmp_path, small_split, name):
    with pytest.raises(HarnessError) as info:
        load_suite(_suite(tmp_path, small_split, name))
    message = str(info.value)
    assert "[[model]] #1: model name" in message and "letters, digits and _ - . +" in message
    assert "\n" not in message


@pytest.mark.parametrize("name", ["tiny_unet", "pspnet_resnet18", "v1.2", "model+aux", "a-b", "_x", "7", "x" * 64])
def test_an_identifier_is_a_name(tmp_path, small_split, name):
    assert load_suite(_suite(tmp_path, small_split, name)).models[0].name == name


def test_every_shipped_suite_and_record_passes_the_name_rule():
    for path in sorted(ASSETS_DIR.glob("*.toml")):
        assert load_suite(path).models, path
    for path in sorted((REPO / "results").glob("*.csv")):
        for row in read_rows(path):
            check_name("target", row.target, str(path))
            check_name("model", row.model, str(path))
            check_name("variant", row.variant, str(path))


def test_a_suite_starting_with_a_utf8_bom_is_read(tmp_path, small_split):
    path = _suite(tmp_path, small_split, "tiny_unet")
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())  # what Notepad writes
    suite = load_suite(path)
    assert suite.models[0].name == "tiny_unet" and suite.ignore_index == 11


def test_a_suite_that_is_not_utf8_is_one_line(tmp_path):
    path = tmp_path / "latin1.toml"
    path.write_bytes(b'[data]\ndir = "caf\xe9"\n')
    with pytest.raises(HarnessError, match="cannot be read \\(UnicodeDecodeError\\); pass a UTF-8 TOML file"):
        load_suite(path)
