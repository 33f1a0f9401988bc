"""The export cache key is read off the model as built: every change to what builds it is a new export, nothing else is."""

import textwrap

import pytest

from harness.data import find_split, load_split
from harness.export import export_spec
from harness.spec import load_suite

from conftest import SAMPLE_DIR, run_cli

BLOCKS = textwrap.dedent('''
    from torch import nn

    from pkg.helpers import act


    class Block(nn.Module):
        def __init__(self, width):
            super().__init__()
            self.conv = nn.Conv2d(width, width, 3, padding=1)

        def forward(self, x):
            return act(self.conv(x))


    def body(width, depth={depth}):
        return nn.Sequential(*[Block(width) for _ in range(depth)])
''')
HELPERS = "import torch\n\n\ndef act(x):\n    return torch.relu(x)\n"
MODELS = textwrap.dedent('''
    from torch import nn

    from pkg.blocks import body


    def build(classes=11, width=8):
        return nn.Sequential(nn.Conv2d(3, width, 3, padding=1), body(width), nn.Conv2d(width, classes, 1))
''')
SUITE = textwrap.dedent(f'''
    [data]
    dir = "{SAMPLE_DIR}"
    ignore_index = 11

    [calibration]
    dir = "{SAMPLE_DIR.parent / 'camvid_train32'}"
    images = 4

    [[model]]
    name = "layered"
    factory = "{{factory}}"
    num_classes = 11
    input_size = [64, 96]
''')


@pytest.fixture
def layered_suite(tmp_path):
    """A factory in pkg/models.py whose layers live in pkg/blocks.py, which uses pkg/helpers.py: the usual layout."""
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "models.py").write_text(MODELS)
    (pkg / "blocks.py").write_text(BLOCKS.format(depth=1))
    (pkg / "helpers.py").write_text(HELPERS)
    suite = tmp_path / "suite.toml"
    suite.write_text(SUITE.format(factory="pkg.models:build"))
    return suite


@pytest.fixture(scope="module")
def images():
    return load_split(find_split(SAMPLE_DIR, "val", 11), (64, 96), 11, limit=2)[0]


def _export(suite, images):
    return export_spec(load_suite(suite).models[0], images)


def test_an_unchanged_model_hits_the_cache_and_a_deeper_block_in_an_imported_module_exports_again(layered_suite, images):
    first = _export(layered_suite, images)
    again = _export(layered_suite, images)
    assert again.cached and again.sha256 == first.sha256
    (layered_suite.parent / "pkg" / "blocks.py").write_text(BLOCKS.format(depth=3))
    deeper = _export(layered_suite, images)
    assert not deeper.cached and deeper.params_in_graph > 2 * first.params_in_graph


def test_a_changed_function_the_forward_calls_exports_again_though_no_layer_changed(layered_suite, images):
    first = _export(layered_suite, images)
    (layered_suite.parent / "pkg" / "helpers.py").write_text(HELPERS.replace("torch.relu(x)", "torch.sigmoid(x)"))
    changed = _export(layered_suite, images)
    assert not changed.cached and changed.sha256 != first.sha256
    assert changed.params_in_graph == first.params_in_graph


def test_a_factory_file_beside_the_suite_imports_its_siblings(tmp_path, images):
    (tmp_path / "my_models.py").write_text(MODELS.replace("from pkg.blocks import body", "from my_blocks import body"))
    (tmp_path / "my_blocks.py").write_text(BLOCKS.format(depth=1).replace("from pkg.helpers import act",
                                                                            "from torch import relu as act"))
    suite = tmp_path / "suite.toml"
    suite.write_text(SUITE.format(factory="my_models:build"))
    first = _export(suite, images)
    assert first.parity.passed
    (tmp_path / "my_blocks.py").write_text((tmp_path / "my_blocks.py").read_text().replace("depth=1", "depth=2"))
    assert not _export(suite, images).cached


def _install_layers(site, version: str, scale: str = "1.0") -> None:
    """A layer library installed as pip would lay it out: the package and its dist-info under site-packages."""
    (site / "fakelayers").mkdir(parents=True, exist_ok=True)
    (site / "fakelayers" / "__init__.py").write_text(
        "import torch\nfrom torch import nn\n\n\nclass Scaled(nn.Conv2d):\n"
        f"    def forward(self, x):\n        return super().forward(x) * {scale}\n")
    info = site / "fakelayers-0.dist-info"
    info.mkdir(exist_ok=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: fakelayers\nVersion: {version}\n")
    (info / "top_level.txt").write_text("fakelayers\n")


def test_an_installed_layer_librarys_new_version_exports_again(tmp_path, images, monkeypatch):
    site = tmp_path / "lib" / "site-packages"
    _install_layers(site, "1.0")
    monkeypatch.syspath_prepend(str(site))
    (tmp_path / "uses_lib.py").write_text("from fakelayers import Scaled\n\n\ndef build():\n    return Scaled(3, 11, 1)\n")
    suite = tmp_path / "suite.toml"
    suite.write_text(SUITE.format(factory="uses_lib:build"))
    first = _export(suite, images)
    assert _export(suite, images).cached
    _install_layers(site, "1.1")  # the same code, another release: the key follows the version
    assert not _export(suite, images).cached
    # A patched install of the same release: its class file is hashed. (This process keeps the module it imported,
    # so only the key is checked here; a new run imports the patched file.)
    _install_layers(site, "1.1", scale="2.0")
    assert not _export(suite, images).cached
    assert first.parity.passed


GATE_TARGET = 'threads = 1\nmin_runs = 5\nmin_duration_s = 0.0\nprocesses = 1\nvariants = ["fp32"]\n'


@pytest.mark.slow
def test_the_gate_fails_a_network_made_deeper_in_a_module_the_factory_imports(layered_suite, tmp_path):
    target = tmp_path / "quick.toml"
    target.write_text(GATE_TARGET)
    results = tmp_path / "results"
    bench = ("bench", "--target", str(target), "--suite", str(layered_suite), "--results-dir", str(results))
    recorded = run_cli(*bench, "--update")
    assert recorded.returncode == 0, recorded.stdout + recorded.stderr
    unchanged = run_cli(*bench)
    assert unchanged.returncode == 0 and "gate quick: passed" in unchanged.stdout, unchanged.stdout + unchanged.stderr
    (layered_suite.parent / "pkg" / "blocks.py").write_text(BLOCKS.format(depth=3))
    deeper = run_cli(*bench)
    assert deeper.returncode == 1 and "gate quick: FAILED" in deeper.stdout, deeper.stdout + deeper.stderr
    assert "parameters" in deeper.stdout
