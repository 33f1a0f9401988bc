"""What a built model is made of, for the export cache key: its structure, its weights and the code that defines it.

A key listed by hand (the factory's own file, say) misses the module its layers live in. This one is read off the
module as built: every submodule's class and settings, every tensor's bytes, the source of each user module
reachable from the factory and those classes, and the version of each installed library whose classes it uses.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import sys
import sysconfig
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

import torch
from torch import nn


@dataclass(frozen=True)
class ModelFingerprint:
    """Digests of a built module, and the code it came from (module name -> source sha256; library -> version)."""

    structure_sha256: str
    weights_sha256: str
    sources: dict[str, str] = field(default_factory=dict)
    libraries: dict[str, str] = field(default_factory=dict)

    def as_key(self) -> dict:
        return {"structure": self.structure_sha256, "weights": self.weights_sha256,
                "sources": dict(sorted(self.sources.items())), "libraries": dict(sorted(self.libraries.items()))}


def fingerprint(model: nn.Module, roots: tuple[str, ...] = ()) -> ModelFingerprint:
    """The model's fingerprint; `roots` are module names that built it (the factory's module) besides its classes'."""
    class_modules = {type(m).__module__ for m in model.modules()}
    sources, libraries = code_of(class_modules | set(roots), class_modules)
    return ModelFingerprint(structure_digest(model), weights_digest(model), sources, libraries)


def structure_digest(model: nn.Module) -> str:
    """Every submodule's place, class and settings (extra_repr: channels, kernel, stride...), in order."""
    digest = hashlib.sha256()
    for name, module in model.named_modules():
        cls = type(module)
        digest.update(f"{name}\0{cls.__module__}.{cls.__qualname__}\0{module.extra_repr()}\n".encode())
    return digest.hexdigest()


def weights_digest(model: nn.Module) -> str:
    """Every parameter and buffer: name, dtype, shape and bytes."""
    digest = hashlib.sha256()
    for name, tensor in model.state_dict(keep_vars=False).items():
        tensor = tensor.detach().cpu().contiguous()
        digest.update(f"{name}\0{tensor.dtype}\0{tuple(tensor.shape)}\n".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()


def code_of(seeds: set[str], class_modules: set[str]) -> tuple[dict[str, str], dict[str, str]]:
    """Sources of user modules reachable from `seeds` (through their globals) and versions of the libraries met.

    A library's classes' own files are hashed too, so a patched install is seen as well; code outside
    site-packages (the user's, an editable install) counts as the user's.
    """
    distributions = importlib.metadata.packages_distributions()
    sources: dict[str, str] = {}
    libraries: dict[str, str] = {}
    todo, seen = sorted(seeds), set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        module = sys.modules.get(name)
        path = _source_path(module)
        if module is None or path is None or _is_stdlib(name, path):
            continue
        library = _distribution(name, path, distributions)
        if library is not None:
            libraries[library[0]] = library[1]
            if name in class_modules:
                sources[name] = _file_sha256(path)
            continue
        sources[_stable_name(name)] = _file_sha256(path)
        todo.extend(sorted(_referenced_modules(module) - seen))
    return sources, libraries


def _referenced_modules(module: ModuleType) -> set[str]:
    """Names of the modules a module's globals come from: the modules it imported and those its imported names live in."""
    names = set()
    for value in list(vars(module).values()):
        if isinstance(value, ModuleType):
            names.add(value.__name__)
        else:
            owner = getattr(value, "__module__", None)
            if isinstance(owner, str):
                names.add(owner)
    return names


def _source_path(module: ModuleType | None) -> Path | None:
    path = getattr(module, "__file__", None)
    return Path(path) if path and Path(path).is_file() else None


def _stable_name(name: str) -> str:
    """A factory file beside a suite is loaded as harness_user_<name>_<hash of its path>: key it by <name> alone,
    so a clone at another path finds the same export."""
    if name.startswith("harness_user_"):
        return "user:" + name[len("harness_user_"):].rsplit("_", 1)[0]
    return name


def _is_stdlib(name: str, path: Path) -> bool:
    if name.split(".")[0] in sys.stdlib_module_names:
        return True
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    return stdlib in path.parents and "site-packages" not in path.parts


def _distribution(module_name: str, path: Path, distributions: dict) -> tuple[str, str] | None:
    """(distribution, version) of the installed package a module belongs to; None for the user's own code."""
    dists = distributions.get(module_name.split(".")[0])
    if not dists or not {"site-packages", "dist-packages"} & set(path.parts):
        return None
    try:
        return dists[0], importlib.metadata.version(dists[0])
    except importlib.metadata.PackageNotFoundError:
        return None


def _file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]
