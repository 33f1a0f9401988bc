"""Another onnxruntime release beside the installed one: a side environment for the gate's runtime A/B.

When the record was measured with another onnxruntime than the one installed, the gate measures the
recorded release too, in the same run. It lives in a virtual environment of its own under the harness
cache (`runtimes/onnxruntime-X.Y.Z`), holding only what the measuring child needs: numpy, that
onnxruntime, and a copy of the child's few harness modules (re-copied every run, so the protocol
always matches). Made once with pip from the package index; where the index cannot be reached the
gate says so in one line and does not gate that row.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from harness.cache import cache_dir
from harness.runners.local import copy_child_modules

PIP_TIMEOUT_S = 600


@dataclass(frozen=True)
class SideRuntime:
    """The interpreter of a side environment, or why there is none."""

    ort_version: str
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


def _stage_child_modules(folder: Path) -> None:
    """The child's harness modules, importable in the side environment through a .pth file."""
    child = folder / "harness-child"
    package = child / "harness"
    package.mkdir(parents=True, exist_ok=True)
    copy_child_modules(package)
    probe = subprocess.run([str(_python_of(folder)), "-c", "import site; print(site.getsitepackages()[0])"],
                           capture_output=True, text=True, timeout=60)
    Path(probe.stdout.strip(), "harness_child.pth").write_text(str(child) + "\n")


def side_runtime(ort_version: str, numpy_version: str = "", make=True) -> SideRuntime:
    """A side environment with onnxruntime==`ort_version` (made on first use); its python, or why not."""
    folder = cache_dir() / "runtimes" / f"onnxruntime-{ort_version}"
    python = _python_of(folder)
    marker = folder / "ready"
    if not marker.is_file():
        if not make:
            return SideRuntime(ort_version, None, f"no side environment for onnxruntime {ort_version}")
        shutil.rmtree(folder, ignore_errors=True)
        ok, said = _run([sys.executable, "-m", "venv", str(folder)], 120)
        if ok:
            wanted = [f"onnxruntime=={ort_version}", f"numpy=={numpy_version}" if numpy_version else "numpy"]
            ok, said = _run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *wanted],
                            PIP_TIMEOUT_S)
            if not ok and numpy_version:  # that numpy may not exist for this Python: any numpy that release accepts
                ok, said = _run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                                 f"onnxruntime=={ort_version}", "numpy"], PIP_TIMEOUT_S)
        if not ok:
            shutil.rmtree(folder, ignore_errors=True)
            return SideRuntime(ort_version, None, f"could not install onnxruntime {ort_version} into a side environment "
                                                  f"({said})")
        marker.write_text(ort_version + "\n")
    _stage_child_modules(folder)
    ok, said = _run([str(python), "-c", "import onnxruntime, numpy, harness.measure.worker; print(onnxruntime.__version__)"], 120)
    if not ok or said.strip() != ort_version:
        return SideRuntime(ort_version, None, f"the side environment for onnxruntime {ort_version} does not work ({said})")
    return SideRuntime(ort_version, str(python))
