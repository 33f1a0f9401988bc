"""Another runtime release beside the installed one: a side environment for the gate's runtime A/B.

When the record was measured with another onnxruntime (or another release of a backend's runtime, e.g.
OpenVINO) than the one installed, the gate measures the recorded release too, in the same run. It lives
in a virtual environment of its own under the harness cache (`runtimes/onnxruntime-X.Y.Z[-openvino-...]`),
holding only what the measuring child needs: numpy, those releases, and a copy of the child's harness
folders (re-copied every run, so the protocol always matches). Made once with pip from the package index; where the index cannot be reached the
gate says so in one line and does not gate that row.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from harness.measure.backends import DEFAULT_BACKEND, ENTRY_POINT_GROUP, backend_module, plugin_module
from harness.cache import cache_dir
from harness.runners import copy_child_package

PIP_TIMEOUT_S = 600


@dataclass(frozen=True)
class SideRuntime:
    """The interpreter of a side environment, or why there is none."""

    pins: dict  # distribution -> release: {"onnxruntime": "1.31.1"}, plus a backend's own where it changed
    python: str | None
    reason: str = ""


def _run(args: list[str], timeout_s: float) -> tuple[bool, str]:
    try:
        proc = subprocess.run(args, capture_output=True, text=True, timeout=timeout_s)
    except (OSError, subprocess.TimeoutExpired) as e:
        return False, f"{type(e).__name__}: {e}"
    last = (proc.stderr.strip() or proc.stdout.strip()).splitlines()
    return proc.returncode == 0, last[-1] if last else f"exit code {proc.returncode}"


def _python_of(folder: Path) -> Path:
    return folder / "bin" / "python"


def _stage_child_modules(folder: Path, plugins: tuple[str, ...] = ()) -> None:
    """The child's harness modules, importable in the side environment through a .pth file; and each plugin
    backend's module with its entry point (pip installed only the pinned releases there)."""
    child = folder / "harness-child"
    package = child / "harness"
    package.mkdir(parents=True, exist_ok=True)
    copy_child_package(package)
    for backend in plugins:
        _stage_plugin(child, backend)
    probe = subprocess.run([str(_python_of(folder)), "-c", "import site; print(site.getsitepackages()[0])"],
                           capture_output=True, text=True, timeout=60)
    Path(probe.stdout.strip(), "harness_child.pth").write_text(str(child) + "\n")


def _stage_plugin(child: Path, backend: str) -> None:
    import importlib.util

    module = plugin_module(backend)
    origin = Path(importlib.util.find_spec(module.split(".")[0]).origin)
    if origin.name == "__init__.py":
        shutil.copytree(origin.parent, child / origin.parent.name, dirs_exist_ok=True)
    else:
        shutil.copy(origin, child / origin.name)
    info = child / f"harness_plugin_{backend.replace('-', '_')}-0.dist-info"
    info.mkdir(exist_ok=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: harness-plugin-{backend}\nVersion: 0\n")
    (info / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\n{backend} = {module}\n")


def side_runtime(pins: dict[str, str] | str, numpy_version: str = "", make=True,
                 plugins: tuple[str, ...] = ()) -> SideRuntime:
    """A side environment with each distribution at its pinned release (made on first use); its python, or why not.
    A string pins the reference runtime (onnxruntime) alone; `plugins`: plugin backends its children must load."""
    reference = backend_module(DEFAULT_BACKEND).PACKAGE
    pins = {reference: pins} if isinstance(pins, str) else dict(sorted(pins.items()))
    named = ", ".join(f"{package} {release}" for package, release in pins.items())
    folder = cache_dir() / "runtimes" / "-".join(f"{package}-{release}" for package, release in pins.items())
    python = _python_of(folder)
    marker = folder / "ready"
    if not marker.is_file():
        if not make:
            return SideRuntime(pins, None, f"no side environment for {named}")
        shutil.rmtree(folder, ignore_errors=True)
        ok, said = _run([sys.executable, "-m", "venv", str(folder)], 120)
        if ok:
            wanted = [f"{package}=={release}" for package, release in pins.items()]
            ok, said = _run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *wanted,
                             f"numpy=={numpy_version}" if numpy_version else "numpy"], PIP_TIMEOUT_S)
            if not ok and numpy_version:  # that numpy may not exist for this Python: any numpy those releases accept
                ok, said = _run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *wanted,
                                 "numpy"], PIP_TIMEOUT_S)
        if not ok:
            shutil.rmtree(folder, ignore_errors=True)
            return SideRuntime(pins, None, f"could not install {named} into a side environment ({said})")
        marker.write_text(named + "\n")
    _stage_child_modules(folder, plugins)
    check = ("import sys, importlib.metadata as m, numpy, onnxruntime, harness.measure.worker; "
             "print(' '.join(m.version(p) for p in sys.argv[1:]))")
    ok, said = _run([str(python), "-c", check, *pins], 120)
    if not ok or said.split() != list(pins.values()):
        return SideRuntime(pins, None, f"the side environment for {named} does not work ({said})")
    return SideRuntime(pins, str(python))
