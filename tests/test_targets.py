import re

import pytest

from harness.errors import HarnessError
from harness.runners import check_fits_this_machine
from harness.targets import list_target_files, load_target


def test_builtin_targets_load():
    names = {p.stem for p in list_target_files()}
    assert {"watch", "phone", "cloud"} <= names
    watch = load_target("watch")
    assert watch.device.threads == 1 and watch.budgets.memory_budget_mb == 15 and not watch.runtime.enable_mem_pattern
    assert watch.budgets.ships("int8-static") and not watch.budgets.ships("fp16")
    cloud = load_target("cloud")
    assert cloud.scenario.images_at_once == 10 and cloud.scenario.serving == ("batched", "concurrent", "http")
    assert cloud.scenario.row_modes == ("batched", "concurrent", "http-burst", "http-closed", "http-open")
    assert cloud.budgets.memory_cap_mb == 512


@pytest.mark.parametrize("body, message", [
    ("threads = 1\nspeed = 3\n", "unknown key 'speed'"),
    ("threads = 1\nmemory_budget_mb = -5\n", "memory_budget_mb = -5.0 is negative"),
    ("threads = 64\n", "threads = 64 but this machine"),
    ("threads = [1\n", "not valid TOML"),
    ("threads = 'two'\n", "threads must be int"),
    ("memory_budget_mb = 5\n", "missing key 'threads'"),
    ("threads = 1\n[openvino]\nstreams = 2\n", r"\[openvino\] has no option 'streams'; its options: performance_hint, num_streams"),
    ("threads = 1\n[openvino]\nnum_streams = '2'\n", r"\[openvino\] num_streams must be int, got '2'"),
    ("threads = 1\n[litert]\nthreads = 2\n", r"\[litert\] has no option 'threads'; its options: none"),
    ("threads = 1\nallow_spinning = true\n[onnxruntime]\nallow_spinning = false\n", "set both flat and in"),
    ("threads = 1\nbackend_options = []\n", "unknown key 'backend_options'"),
])
def test_bad_target_files_name_file_and_key(tmp_path, body, message):
    path = tmp_path / "bad.toml"
    path.write_text(body)
    with pytest.raises(HarnessError, match=message) as info:
        check_fits_this_machine(load_target(str(path)))
    assert "bad" in str(info.value)


def test_unknown_target_lists_known_ones():
    with pytest.raises(HarnessError, match="known targets are cloud, phone, watch"):
        load_target("toaster")


def test_http_load_settings_are_checked():
    from harness.targets import TargetProfile

    with pytest.raises(HarnessError, match="http_bursts and http_max_connections must be at least 1"):
        TargetProfile.from_flat("t", threads=1, serving=("http",), http_bursts=0)
    with pytest.raises(HarnessError, match="serving \\['udp'\\]; use one or more of batched, concurrent, http"):
        TargetProfile.from_flat("t", threads=1, serving=("udp",))


@pytest.mark.parametrize("file_name, body, message", [
    ("[red]x.toml", "threads = 1\n", "target name '[red]x' is refused"),
    ("ok.toml", 'threads = 1\nvariants = ["fp32", "../x"]\n', "variants: variant name '../x' is refused"),
    ("ok.toml", 'threads = 1\nvariants = ["fp32"]\nship = ["a/b"]\n', "ship: variant name 'a/b' is refused"),
])
def test_target_and_variant_names_are_identifiers(tmp_path, file_name, body, message):
    path = tmp_path / file_name
    path.write_text(body)
    with pytest.raises(HarnessError, match=re.escape(f"{message}: a name is letters, digits and _ - . + only")):
        load_target(str(path))


def test_a_target_name_that_could_climb_out_of_targets_is_refused():
    with pytest.raises(HarnessError, match="--target .*target name '../../x' is refused"):
        load_target("../../x")


def test_every_shipped_target_passes_the_name_rule():
    from harness.files import check_name

    for path in list_target_files():
        target = load_target(str(path))
        for variant in target.scenario.variants:
            check_name("variant", variant, str(path))


def test_a_target_starting_with_a_utf8_bom_is_read(tmp_path):
    path = tmp_path / "bom.toml"
    path.write_bytes(b"\xef\xbb\xbf" + 'description = "written on Windows"\nthreads = 1\n'.encode())
    target = load_target(str(path))
    assert target.name == "bom" and target.description == "written on Windows" and target.device.threads == 1


def test_a_backends_table_holds_its_options_and_onnxruntimes_are_its_session_options(tmp_path):
    path = tmp_path / "tuned.toml"
    path.write_text('threads = 1\nbackends = ["onnxruntime", "openvino"]\n[onnxruntime]\nallow_spinning = false\n'
                    '[openvino]\nperformance_hint = "THROUGHPUT"\nnum_streams = 2\n')
    target = load_target(str(path))
    assert not target.runtime.allow_spinning and target.runtime.options_for("onnxruntime") == {
        "enable_cpu_mem_arena": True, "enable_mem_pattern": True, "allow_spinning": False}
    assert target.runtime.options_for("openvino") == {"performance_hint": "THROUGHPUT", "num_streams": 2}
    from harness.targets import with_changes

    assert with_changes(target, threads=1).runtime.options_for("openvino")["num_streams"] == 2  # kept by a narrowing
