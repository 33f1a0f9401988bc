"""Suites the benchmark scripts run on: parts of the built-in default, written to a scratch folder."""

from __future__ import annotations

import tomllib
from pathlib import Path

from harness.spec import ASSETS_DIR, DEFAULT_SUITE


def subset_suite(folder: Path, names: list[str], data_dir: Path | None = None) -> Path:
    """A copy of the default suite holding only the named models (in that order), paths made absolute."""
    default = tomllib.loads(DEFAULT_SUITE.read_text())
    models = {m["name"]: m for m in default["model"]}
    lines = ["[data]", f'dir = "{data_dir or ASSETS_DIR / default["data"]["dir"]}"',
             f'ignore_index = {default["data"]["ignore_index"]}', "", "[calibration]",
             f'dir = "{ASSETS_DIR / default["calibration"]["dir"]}"', ""]
    for name in names:
        m = models[name]
        lines += ["[[model]]", f'name = "{name}"', f'arch = "{m["arch"]}"', f'num_classes = {m["num_classes"]}',
                  f'input_size = {list(m["input_size"])}', f'checkpoint = "{ASSETS_DIR / m["checkpoint"]}"', ""]
    path = folder / "suite.toml"
    path.write_text("\n".join(lines))
    return path
