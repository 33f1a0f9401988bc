"""Target profiles: what a device allows (threads, memory, latency), read from targets/*.toml."""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, fields
from pathlib import Path

from harness.errors import HarnessError
from harness.quantize import VARIANTS

MEMORY_QUANTITIES = ("model", "process")  # model = peak RSS minus the same runtime's trivial-session floor
SERVING_MODES = ("batched", "concurrent")  # one call of N images, or N one-image requests in flight


def builtin_targets_dir() -> Path:
    """targets/ at the repository root, beside the package (an editable install keeps it there)."""
    return Path(__file__).resolve().parent.parent / "targets"


@dataclass(frozen=True)
class TargetProfile:
    """One device's promise. Budgets of 0 mean 'no budget'."""

    name: str
    threads: int
    description: str = ""
    inter_op_threads: int = 1
    cpu_affinity: tuple[int, ...] | None = None  # None: the first `threads` CPUs this process may use
    images_at_once: int = 1
    serving: tuple[str, ...] = ("batched",)
    memory_quantity: str = "model"
    memory_budget_mb: float = 0.0
    memory_cap_mb: float = 0.0  # whole-process RSS at which the watchdog ends the child; 0 = no cap
    p95_budget_ms: float = 0.0
    max_miou_drop: float = 1.0
    variants: tuple[str, ...] = ("fp32",)
    ship: tuple[str, ...] | None = None  # variants whose budgets gate the run; None: all of `variants`
    enable_cpu_mem_arena: bool = True
    enable_mem_pattern: bool = True
    warmup_runs: int = 10
    min_runs: int = 50
    min_duration_s: float = 2.0
    processes: int = 3  # child processes per variant, run in alternation (pyperf-style); latencies pooled
    # Regression rules of the gate (harness.gate): how far a figure may move against the record.
    gate_file_tolerance_pct: float = 1.0
    gate_miou_tolerance_pts: float = 0.1
    gate_model_mb_tolerance: float = 4.0
    gate_latency_tolerance_pct: float = 10.0
    gate_latency_noise_sigmas: float = 3.0
    source: Path | None = None

    def __post_init__(self):
        where = f"target '{self.name}'" + (f" ({self.source})" if self.source else "")
        cores = len(os.sched_getaffinity(0))
        if self.threads < 1:
            raise HarnessError(f"{where}: threads = {self.threads}; set threads to 1 or more")
        if self.threads > cores:
            raise HarnessError(f"{where}: threads = {self.threads} but this machine lets the harness use {cores} cores; set threads <= {cores}")
        if self.inter_op_threads < 1:
            raise HarnessError(f"{where}: inter_op_threads must be at least 1")
        if self.images_at_once < 1:
            raise HarnessError(f"{where}: images_at_once must be at least 1")
        bad_modes = [m for m in self.serving if m not in SERVING_MODES]
        if bad_modes or not self.serving:
            raise HarnessError(f"{where}: serving {list(self.serving)}; use one or more of {', '.join(SERVING_MODES)}")
        if self.memory_quantity not in MEMORY_QUANTITIES:
            raise HarnessError(f"{where}: memory_quantity = '{self.memory_quantity}'; use one of {', '.join(MEMORY_QUANTITIES)}")
        for key in ("memory_budget_mb", "memory_cap_mb", "p95_budget_ms", "max_miou_drop", "min_duration_s",
                    "gate_file_tolerance_pct", "gate_miou_tolerance_pts", "gate_model_mb_tolerance",
                    "gate_latency_tolerance_pct", "gate_latency_noise_sigmas"):
            if getattr(self, key) < 0:
                raise HarnessError(f"{where}: {key} = {getattr(self, key)} is negative; use 0 for no budget or a positive number")
        if self.warmup_runs < 0 or self.min_runs < 1 or self.processes < 1:
            raise HarnessError(f"{where}: warmup_runs must be >= 0, min_runs >= 1 and processes >= 1")
        unknown = [v for v in self.variants if v not in VARIANTS]
        if unknown or not self.variants:
            raise HarnessError(f"{where}: variants {list(self.variants)}; known variants: {', '.join(VARIANTS)}")
        if self.ship is not None and (not self.ship or set(self.ship) - set(self.variants) - {"fp32"}):
            raise HarnessError(f"{where}: ship {list(self.ship)} must name one or more of the variants {list(self.variants)}")
        if self.cpu_affinity is not None:
            allowed = os.sched_getaffinity(0)
            outside = sorted(set(self.cpu_affinity) - allowed)
            if outside:
                raise HarnessError(f"{where}: cpu_affinity names CPU {outside[0]}, not available here (available: {sorted(allowed)})")
            if len(self.cpu_affinity) < self.threads:
                raise HarnessError(f"{where}: cpu_affinity lists {len(self.cpu_affinity)} CPUs for {self.threads} threads; list at least {self.threads}")

    def ships(self, variant: str) -> bool:
        """Whether this variant's budgets gate the run (the others are measured for comparison)."""
        return self.ship is None or variant in self.ship

    def serving_label(self, serving: str) -> str:
        if serving == "concurrent":
            return f"{self.images_at_once} in flight"
        return "1 per call" if self.images_at_once == 1 else f"batch of {self.images_at_once}"

    def affinity(self) -> tuple[int, ...]:
        return self.cpu_affinity or tuple(sorted(os.sched_getaffinity(0))[: self.threads])


_FIELD_TYPES = {f.name: f.type for f in fields(TargetProfile) if f.name not in ("name", "source")}


def load_target(name_or_path: str) -> TargetProfile:
    """A target by name (./targets/NAME.toml, then the built-in targets/) or by path to a TOML file."""
    path = resolve_target_path(name_or_path)
    try:
        doc = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as e:
        raise HarnessError(f"target file {path} is not valid TOML: {e}; fix the syntax") from e
    values = {}
    for key, value in doc.items():
        if key not in _FIELD_TYPES:
            raise HarnessError(f"target file {path}: unknown key '{key}'; allowed keys: {', '.join(sorted(_FIELD_TYPES))}")
        values[key] = _coerce(path, key, value)
    if "threads" not in values:
        raise HarnessError(f"target file {path}: missing key 'threads'; set how many cores the model may use")
    return TargetProfile(name=path.stem, source=path, **values)


def _coerce(path: Path, key: str, value):
    kind = _FIELD_TYPES[key]
    expected = {"int": int, "float": (int, float), "bool": bool, "str": str}
    base = kind.split(" ")[0]
    if base in ("tuple[int,", "tuple[str,"):
        item = int if "int" in base else str
        if not isinstance(value, list) or not all(isinstance(v, item) and not isinstance(v, bool) for v in value):
            raise HarnessError(f"target file {path}: {key} must be a list of {item.__name__}s, got {value!r}")
        return tuple(value)
    want = expected[base]
    if isinstance(value, bool) != (base == "bool") or not isinstance(value, want):
        raise HarnessError(f"target file {path}: {key} must be {base}, got {value!r}")
    return float(value) if base == "float" else value


def resolve_target_path(name_or_path: str) -> Path:
    candidate = Path(name_or_path)
    if candidate.suffix == ".toml":
        if candidate.is_file():
            return candidate
        raise HarnessError(f"target file {candidate} does not exist")
    for folder in (Path.cwd() / "targets", builtin_targets_dir()):
        if (folder / f"{name_or_path}.toml").is_file():
            return folder / f"{name_or_path}.toml"
    known = ", ".join(t.stem for t in list_target_files()) or "none"
    raise HarnessError(f"unknown target '{name_or_path}': known targets are {known}; or pass a path to a .toml profile")


def list_target_files() -> list[Path]:
    seen: dict[str, Path] = {}
    for folder in (builtin_targets_dir(), Path.cwd() / "targets"):
        if folder.is_dir():
            for path in sorted(folder.glob("*.toml")):
                seen[path.stem] = path
    return [seen[k] for k in sorted(seen)]
