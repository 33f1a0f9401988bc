"""A user's factory (`factory = "package.module:function"`): imported from the suite's folder, called, its output kept
off stdout."""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path

from harness.errors import HarnessError
from harness.spec import ModelSpec


def import_factory(spec: ModelSpec):
    """The callable a `factory = "package.module:function"` names, importable from the suite's folder.

    A single-file module beside the suite is loaded from that file every time, under a name of its own:
    two versions of one suite (this checkout and a recorded commit, for an A/B) never share a module.
    """
    module_name, _, function_name = spec.factory.partition(":")
    try:
        with importable_from(spec.search_path):
            module = _load_module(module_name, spec.search_path)
    except Exception as e:  # a user's module can fail in any way on import
        raise HarnessError(f"model '{spec.name}': cannot import {module_name} ({type(e).__name__}: {e}); "
                           f"put it beside the suite file or on PYTHONPATH") from e
    factory = getattr(module, function_name, None)
    if not callable(factory):
        raise HarnessError(f"model '{spec.name}': {module_name} has no function {function_name}")
    return factory


@contextlib.contextmanager
def importable_from(folder: Path | None, fresh: bool = True):
    """The suite's folder on sys.path while a factory is imported and called, so it can import the modules beside it.

    `fresh`: modules already imported from a file in that folder (or of the same name from another suite's folder:
    an A/B's older copy) are dropped first, so the files as they are now are what builds the model.
    """
    if folder is None:
        yield
        return
    folder = Path(folder).resolve()
    for name in [n for n in sys.modules if "." not in n and n not in sys.stdlib_module_names] if fresh else ():
        if (folder / f"{name}.py").is_file() or (folder / name / "__init__.py").is_file():
            for stale in [m for m in sys.modules if m == name or m.startswith(name + ".")]:
                del sys.modules[stale]
    added = str(folder) not in sys.path
    if added:
        sys.path.insert(0, str(folder))
    try:
        yield
    finally:
        if added and str(folder) in sys.path:
            sys.path.remove(str(folder))


def factory_module_name(spec: ModelSpec) -> str:
    """The name the factory's module is imported under (a file beside the suite gets one of its own)."""
    module_name = spec.factory.partition(":")[0]
    beside = _beside(module_name, spec.search_path)
    return module_name if beside is None else _unique_name(module_name, beside)


def _unique_name(module_name: str, beside: Path) -> str:
    import hashlib

    return f"harness_user_{module_name}_{hashlib.sha256(str(beside.resolve()).encode()).hexdigest()[:10]}"


def _beside(module_name: str, search_path: Path | None) -> Path | None:
    beside = Path(search_path) / f"{module_name}.py" if search_path is not None and "." not in module_name else None
    return beside if beside is not None and beside.is_file() else None


def _load_module(module_name: str, search_path: Path | None):
    import importlib
    import importlib.util

    beside = _beside(module_name, search_path)
    if beside is not None:
        unique = _unique_name(module_name, beside)
        loader_spec = importlib.util.spec_from_file_location(unique, beside)
        module = importlib.util.module_from_spec(loader_spec)
        sys.modules[unique] = module  # dataclasses and inspect look their module up by name
        loader_spec.loader.exec_module(module)
        return module
    return importlib.import_module(module_name)


@contextlib.contextmanager
def user_output_to_stderr():
    """What user code prints (Python or C++) goes to stderr: stdout belongs to the harness (`--json` is one document)."""
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        os.dup2(2, 1)
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved, 1)
        os.close(saved)
