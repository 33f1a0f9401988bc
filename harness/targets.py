"""Target profiles: what a device allows, read from a flat TOML into five small parts.

`device` (cores), `scenario` (how images arrive and how long to measure), `runtime` (ONNX Runtime
session options), `budgets` (what must fit) and `gate` (how far a figure may move against the record).
Built-in profiles ship inside the package (harness/assets/targets); ./targets/NAME.toml overrides them.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path

from harness.measure.backends import DEFAULT_BACKEND, backend_module, known_backends, options_from_tables
from harness.errors import HarnessError
from harness.files import check_name, project_root
from harness.variants.named import NamedVariant, named_from_tables, resolve_variant

MEMORY_QUANTITIES = ("model", "process")  # model = peak RSS minus the same runtime's trivial-session floor
# One call of N images; N one-image requests in flight inside one process; or an HTTP service under load.
SERVING_MODES = ("batched", "concurrent", "http")
HTTP_LOADS = ("http-burst", "http-closed", "http-open")  # the rows one "http" entry gives (harness.serve)
RECIPES = ("until-decided", "fixed")  # how long rows are measured: until their question is answered, or a fixed recipe
BUILTIN_TARGETS_DIR = Path(__file__).parent / "assets" / "targets"


def _non_negative(part, names: tuple[str, ...]) -> None:
    for name in names:
        if getattr(part, name) < 0:
            flat = _RENAMED.get((next(k for k, cls in PARTS.items() if isinstance(part, cls)), name), name)
            raise HarnessError(f"{flat} = {getattr(part, name)} is negative; use 0 for no budget or a positive number")


@dataclass(frozen=True)
class Device:
    """Where a measurement runs and the cores it may use there."""

    threads: int
    inter_op_threads: int = 1
    cpu_affinity: tuple[int, ...] | None = None  # None: the first `threads` CPUs the measuring process may use
    runner: str = "local"  # or "ssh://[user@]host[:port]": the system OpenSSH client, the user's ~/.ssh/config
    python: str = "python3"  # the interpreter on an ssh device (needs numpy and onnxruntime)
    ssh_options: tuple[str, ...] = ()  # extra ssh arguments, e.g. ["-i", "key", "-o", "UserKnownHostsFile=f"]

    def __post_init__(self):
        if self.runner != "local" and not (self.runner.startswith("ssh://") and len(self.runner) > len("ssh://")):
            raise HarnessError(f"runner = '{self.runner}'; use \"local\" or \"ssh://[user@]host[:port]\" "
                               f"(a Ray cluster is chosen with harness bench --cluster)")
        if self.threads < 1 or self.inter_op_threads < 1:
            raise HarnessError(f"threads = {self.threads}, inter_op_threads = {self.inter_op_threads}; set each to 1 or more")
        if self.cpu_affinity is not None and len(self.cpu_affinity) < self.threads:
            raise HarnessError(f"cpu_affinity lists {len(self.cpu_affinity)} CPUs for {self.threads} threads; "
                               f"list at least {self.threads}")


@dataclass(frozen=True)
class Scenario:
    """How images reach the model, which variants are measured, and how long."""

    images_at_once: int = 1
    serving: tuple[str, ...] = ("batched",)
    variants: tuple[str, ...] = ("fp32",)
    backends: tuple[str, ...] = (DEFAULT_BACKEND,)  # harness.measure.backends: each runs the variants it can (harness variants)
    backends_if_installed: tuple[str, ...] = ()  # added where their extra is installed; a note says so where not
    warmup_runs: int = 10
    min_runs: int = 50
    min_duration_s: float = 2.0
    processes: int = 3  # child processes per variant, run in alternation (pyperf-style); latencies pooled
    recipe: str = "until-decided"  # or "fixed": every row processes x min_duration_s (docs/measurement.md)
    table_duration_s: float = 0.5  # until-decided: timed s per child of a row no A/B judges
    http_bursts: int = 100  # serving "http" (harness.serve.loadgen): bursts of images_at_once requests
    http_burst_idle_s: float = 0.2  # pause after each burst is answered
    http_closed_s: float = 10.0  # closed loop: images_at_once clients for this long
    http_open_s: float = 8.0  # open loop: each rate of the sweep for this long
    http_max_connections: int = 64  # open loop: requests in flight at most (a send past it waits, and is late)
    http_timeout_s: float = 10.0  # a request unanswered this long counts as a timeout
    http_allow_spinning: bool = False  # the service's ORT pool shares its cores with the event loop: off (docs/serving.md)
    named_variants: tuple[NamedVariant, ...] = ()  # the [variant.NAME] tables: variants with settings of their own

    def __post_init__(self):
        if self.images_at_once < 1:
            raise HarnessError("images_at_once must be at least 1")
        bad_modes = [m for m in self.serving if m not in SERVING_MODES]
        if bad_modes or not self.serving:
            raise HarnessError(f"serving {list(self.serving)}; use one or more of {', '.join(SERVING_MODES)}")
        if not self.variants:
            raise HarnessError("variants is empty; list at least one (harness variants lists them)")
        if set(self.backends + self.backends_if_installed) - set(known_backends()) or DEFAULT_BACKEND not in self.backends:
            raise HarnessError(f"backends {list(self.backends)}; list onnxruntime (every ratio's reference) and any of "
                               f"{', '.join(known_backends())}")
        _non_negative(self, ("min_duration_s", "table_duration_s", "http_burst_idle_s", "http_closed_s", "http_open_s"))
        if self.recipe not in RECIPES:
            raise HarnessError(f"recipe = '{self.recipe}'; use one of {', '.join(RECIPES)}")
        if self.http_bursts < 1 or self.http_max_connections < 1 or self.http_timeout_s <= 0:
            raise HarnessError("http_bursts and http_max_connections must be at least 1, http_timeout_s above 0")
        if self.warmup_runs < 0 or self.min_runs < 1 or self.processes < 1:
            raise HarnessError("warmup_runs must be >= 0, min_runs >= 1 and processes >= 1")

    def variant(self, name: str):  # harness.variants.Variant: a registered one, or one of the named ones
        return resolve_variant(name, self.named_variants)

    @property
    def in_children(self) -> tuple[str, ...]:  # the serving modes the measurement child measures: all but "http"
        return tuple(m for m in self.serving if m != "http")

    @property
    def row_modes(self) -> tuple[str, ...]:  # one entry per row a variant gets: "http" is three loads
        return tuple(x for m in self.serving for x in (HTTP_LOADS if m == "http" else (m,)))

    def serving_label(self, serving: str) -> str:
        n = self.images_at_once
        return {"http-burst": f"http: bursts of {n}", "http-closed": f"http: {n} clients", "http-open": "http: open loop",
                "http": "http: bursts, clients, open loop", "concurrent": f"{n} in flight"}.get(
            serving, "1 per call" if n == 1 else f"batch of {n}")


@dataclass(frozen=True)
class RuntimeOptions:
    """ONNX Runtime's session options (flat, or an [onnxruntime] table) and other backends' tables ([openvino])."""

    enable_cpu_mem_arena: bool = True
    enable_mem_pattern: bool = True
    allow_spinning: bool = True  # idle intra-op threads spin: ORT's default; off saves CPU for other work
    backend_options: tuple = ()  # ((backend, ((option, value), ...)), ...): the [backend] tables, sorted

    def options_for(self, backend: str) -> dict:  # what the child's Request carries to the backend's load()
        ort = {name: getattr(self, name) for name in backend_module(DEFAULT_BACKEND).OPTIONS}  # its flat keys
        return ort if backend == DEFAULT_BACKEND else dict(dict(self.backend_options).get(backend, ()))


@dataclass(frozen=True)
class Budgets:
    """What a shipped row must fit. 0 means 'no budget'."""

    memory_quantity: str = "model"
    memory_budget_mb: float = 0.0
    memory_cap_mb: float = 0.0  # whole-process RSS at which the watchdog ends the child; 0 = no cap
    p95_budget_ms: float = 0.0
    max_miou_drop: float = 1.0  # quality points (mIoU or top-1) a variant may lose against fp32
    http_min_rate_per_s: float = 0.0  # served open loop: the rate one service must hold within p95_budget_ms
    ship: tuple[str, ...] | None = None  # variants whose budgets gate the run; None: all that are measured

    def __post_init__(self):
        if self.memory_quantity not in MEMORY_QUANTITIES:
            raise HarnessError(f"memory_quantity = '{self.memory_quantity}'; use one of {', '.join(MEMORY_QUANTITIES)}")
        _non_negative(self, ("memory_budget_mb", "memory_cap_mb", "p95_budget_ms", "max_miou_drop", "http_min_rate_per_s"))

    def ships(self, variant: str) -> bool:
        """Whether this variant's budgets gate the run (the others are measured for comparison)."""
        return self.ship is None or variant in self.ship


@dataclass(frozen=True)
class GateRules:
    """How far a figure may move against the record before the gate fails (harness.gate)."""

    file_tolerance_pct: float = 1.0
    quality_tolerance_pts: float = 0.1
    model_mb_tolerance: float = 4.0
    latency_tolerance_pct: float = 10.0  # p50: the smallest slowdown the rank test may call "slower"
    p95_tolerance_pct: float = 20.0  # p95 is noisier: a larger minimum effect
    # The record (runs minutes or days apart; an unchanged model drifted +16 % here) is trusted for this much only.
    record_tolerance_pct: float = 25.0
    ab_processes: int = 5  # child processes per side when a changed model is measured against its recorded version
    ab_max_processes: int = 10  # more rounds, up to this many, while a shipped row's A/B is still undecided
    # Figures from another run fail latency only where a profile opts in (dedicated, quiet hardware); on a
    # shared host an unchanged model ran x1.3-2.0 its record, so the built-in targets judge latency by A/B alone.
    latency_against_record: bool = False
    baseline: str = ""  # a revision (e.g. the last release's tag) every shipped row is also A/B'd against: drift

    def __post_init__(self):
        _non_negative(self, tuple(f.name for f in fields(self) if f.type in ("float", "int")))
        if self.ab_processes < 3:
            raise HarnessError(f"gate_ab_processes = {self.ab_processes}; the rank test needs at least 3 per side")


PARTS = {"device": Device, "scenario": Scenario, "runtime": RuntimeOptions, "budgets": Budgets, "gate": GateRules}
# The TOML stays flat; these keys are spelt differently there than in the part they fill.
_RENAMED = {("gate", f.name): "gate_" + {"quality_tolerance_pts": "miou_tolerance_pts"}.get(f.name, f.name)
            for f in fields(GateRules)}  # gate_file_tolerance_pct, gate_miou_tolerance_pts, gate_ab_processes, ...
FLAT_KEYS = {_RENAMED.get((part, f.name), f.name): (part, f.name, f.type)
             for part, cls in PARTS.items() for f in fields(cls)}


@dataclass(frozen=True)
class TargetProfile:
    """One device's promise, in five parts."""

    name: str
    device: Device
    scenario: Scenario = field(default_factory=Scenario)
    runtime: RuntimeOptions = field(default_factory=RuntimeOptions)
    budgets: Budgets = field(default_factory=Budgets)
    gate: GateRules = field(default_factory=GateRules)
    description: str = ""
    source: Path | None = None

    def __post_init__(self):
        ship = self.budgets.ship
        if ship is not None and set(ship) - set(self.scenario.variants) - {"fp32"}:  # () only from --variant
            raise HarnessError(f"{self.where}: ship {list(ship)} must name one or more of the variants "
                               f"{list(self.scenario.variants)}")

    @property
    def where(self) -> str:
        return f"target '{self.name}'" + (f" ({self.source})" if self.source else "")

    @classmethod
    def from_flat(cls, name: str, description: str = "", source: Path | None = None, **flat) -> "TargetProfile":
        """A profile from the flat keys of a TOML file (or of a test)."""
        where = f"target '{name}'" + (f" ({source})" if source else "")
        values: dict[str, dict] = {part: {} for part in PARTS}
        for key, value in flat.items():
            if key not in FLAT_KEYS:
                raise HarnessError(f"{where}: unknown key '{key}'; allowed keys: {', '.join(sorted(FLAT_KEYS))}")
            part, attr, _ = FLAT_KEYS[key]
            values[part][attr] = value
        if "threads" not in flat:
            raise HarnessError(f"{where}: missing key 'threads'; set how many cores the model may use")
        if "ship" in flat and flat["ship"] is not None and not flat["ship"]:
            raise HarnessError(f"{where}: ship [] must name one or more of the variants {list(flat.get('variants', []))}")
        try:
            parts = {part: PARTS[part](**kwargs) for part, kwargs in values.items()}
        except HarnessError as e:
            raise HarnessError(f"{where}: {e}") from None
        return cls(name=name, description=description, source=source, **parts)


def to_flat(target: TargetProfile) -> dict:  # the flat keys of a profile, as its TOML file would spell them
    return {key: getattr(getattr(target, part), attr) for key, (part, attr, _) in FLAT_KEYS.items()}


def with_changes(target: TargetProfile, **flat) -> TargetProfile:
    """A copy of `target` with some flat keys changed (validated like a TOML file)."""
    return TargetProfile.from_flat(target.name, target.description, target.source, **{**to_flat(target), **flat})


def load_target(name_or_path: str) -> TargetProfile:
    """A target by name (./targets/NAME.toml, then the built-in ones) or by path to a TOML file."""
    path = resolve_target_path(name_or_path)
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8-sig"))  # -sig: the BOM Windows editors write is not TOML
    except tomllib.TOMLDecodeError as e:
        raise HarnessError(f"target file {path} is not valid TOML: {e}; fix the syntax") from e
    except (OSError, UnicodeDecodeError) as e:
        raise HarnessError(f"target file {path} cannot be read ({type(e).__name__}); pass a UTF-8 TOML file") from e
    description, named = doc.pop("description", ""), named_from_tables(doc.pop("variant", {}), f"target file {path}")
    tables = {key: doc.pop(key) for key in list(doc) if isinstance(doc[key], dict) and key in known_backends()}
    unknown = [key for key in doc if key not in FLAT_KEYS or key in ("backend_options", "named_variants")]  # tables'
    values = {key: _coerce(path, key, value) for key, value in doc.items() if key not in unknown}
    if unknown:
        raise HarnessError(f"target file {path}: unknown key '{unknown[0]}'; allowed keys: "
                           f"{', '.join(sorted(['description', 'variant', *FLAT_KEYS]))}")
    for key in ("variants", "ship"):  # names become row labels and file names, like the target's own
        for variant in values.get(key) or ():
            check_name("variant", variant, f"target file {path}: {key}")
    try:
        reference, others = options_from_tables(tables)  # the reference runtime's options are its flat keys
    except ValueError as e:
        raise HarnessError(f"target file {path}: {e}") from None
    if twice := set(reference) & set(values):
        raise HarnessError(f"target file {path}: {sorted(twice)[0]} is set both flat and in [{DEFAULT_BACKEND}]; set it once")
    values.update(reference, backend_options=others, named_variants=named)
    return TargetProfile.from_flat(check_name("target", path.stem, f"target file {path}"), str(description), path, **values)


def _coerce(path: Path, key: str, value):
    base = FLAT_KEYS[key][2].split(" ")[0]
    if base in ("tuple[int,", "tuple[str,"):
        item = int if "int" in base else str
        if not isinstance(value, list) or not all(isinstance(v, item) and not isinstance(v, bool) for v in value):
            raise HarnessError(f"target file {path}: {key} must be a list of {item.__name__}s, got {value!r}")
        return tuple(value)
    if isinstance(value, bool) != (base == "bool") or not isinstance(value, {"int": int, "float": (int, float),
                                                                               "bool": bool, "str": str}[base]):
        raise HarnessError(f"target file {path}: {key} must be {base}, got {value!r}")
    return float(value) if base == "float" else value


def resolve_target_path(name_or_path: str) -> Path:
    candidate = Path(name_or_path)
    if candidate.suffix == ".toml":
        if candidate.is_file():
            return candidate
        raise HarnessError(f"target file {candidate} does not exist")
    check_name("target", name_or_path, "--target (a name, or a path to a .toml file)")
    for folder in (project_root() / "targets", BUILTIN_TARGETS_DIR):
        if (folder / f"{name_or_path}.toml").is_file():
            return folder / f"{name_or_path}.toml"
    known = ", ".join(t.stem for t in list_target_files()) or "none"
    raise HarnessError(f"unknown target '{name_or_path}': known targets are {known}; or pass a path to a .toml profile")


def list_target_files() -> list[Path]:
    seen: dict[str, Path] = {}
    for folder in (BUILTIN_TARGETS_DIR, project_root() / "targets"):
        if folder.is_dir():
            for path in sorted(folder.glob("*.toml")):
                seen[path.stem] = path
    return [seen[k] for k in sorted(seen)]
