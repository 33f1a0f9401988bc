"""The post-training space `harness tune` searches: runtime x variant x int8 settings x session options.

A point of it is a `Candidate`, a named variant (harness.variants.named) under a working name; the same
settings are one candidate whatever Optuna's trial that proposed them. The space is declared once (`Space`)
and read two ways: `suggest` (a trial picks one point, define-by-run, the int8 settings only for a calibrated
int8 variant) and `every_point` (the exhaustive grid the benchmark measures).
"""

from __future__ import annotations

import importlib.util
import itertools
from dataclasses import dataclass, field

from harness.measure.backends import DEFAULT_BACKEND, backend_module, known_backends, missing_extra, tunable_options
from harness.targets import TargetProfile
from harness.variants.named import NamedVariant
from harness.variants.registry import VARIANTS

# calibration choices: method, or method:percentile. MinMax, Entropy and the percentiles around the default.
CALIBRATIONS = ("minmax", "entropy", "percentile:99.99", "percentile:99.999")
INT8_SETTINGS = {"calibration": CALIBRATIONS, "per_channel": (True, False), "activation_type": ("uint8", "int8")}
TUNED_INT8 = "int8-static"  # the variant whose quantizer takes the int8 settings (ORT's QDQ, read by OpenVINO too)


@dataclass(frozen=True)
class Candidate:
    """One configuration: a named variant under a working name (t01, t02, ...)."""

    named: NamedVariant

    @property
    def name(self) -> str:
        return self.named.name

    @property
    def key(self) -> tuple:
        """The settings alone: two trials that propose them are one candidate."""
        return self.named.base, self.named.backend, self.named.quantize, self.named.session

    def describe(self) -> str:
        """The configuration in a few words: 'openvino int8-static entropy per-tensor u8; hint THROUGHPUT'."""
        quantize = dict(self.named.quantize)
        words = [self.named.backend or DEFAULT_BACKEND, self.named.base]
        if "calibration_method" in quantize:
            method = quantize["calibration_method"]
            words.append(f"{method} {quantize['percentile']}" if method == "percentile" else method)
            words.append("per-channel" if quantize.get("per_channel", True) else "per-tensor")
            words.append("u8" if quantize.get("activation_type", "uint8") == "uint8" else "s8")
        session = "; ".join(f"{k}={_short(v)}" for _, options in self.named.session for k, v in options)
        return " ".join(words) + (f"; {session}" if session else "")

    def renamed(self, name: str, models: tuple[str, ...] = (), note: str = "") -> "Candidate":
        import dataclasses

        return Candidate(dataclasses.replace(self.named, name=name, models=models, note=note))


def _short(value) -> str:
    return {True: "on", False: "off"}.get(value, str(value)) if isinstance(value, bool) else str(value)


@dataclass(frozen=True)
class Space:
    """What may be chosen on this machine for this target: backend -> its variants and its session options."""

    variants: dict[str, tuple[str, ...]]  # backend -> the variants it can run here (ONNX files)
    session: dict[str, dict[str, tuple]] = field(default_factory=dict)  # backend -> option -> choices
    int8: dict[str, tuple] = field(default_factory=lambda: dict(INT8_SETTINGS))
    notes: tuple[str, ...] = ()  # what was left out and why (bf16 on a CPU without it, a backend not installed)

    @property
    def backends(self) -> tuple[str, ...]:
        return tuple(self.variants)

    def size(self) -> int:
        return sum(1 for _ in self.every_point())

    def every_point(self):
        """Every candidate's settings, as (backend, variant, quantize, session): the exhaustive grid."""
        for backend, variants in self.variants.items():
            sessions = _product(self.session.get(backend, {}))
            for variant in variants:
                for quantize in (_product(self.int8) if variant == TUNED_INT8 else [{}]):
                    for session in sessions:
                        yield backend, variant, quantize, session


def _product(choices: dict[str, tuple]) -> list[dict]:
    return [dict(zip(choices, values)) for values in itertools.product(*choices.values())] if choices else [{}]


def cpu_has_bf16() -> bool:
    """Whether this CPU says it has bf16 (the kernel's flags); OpenVINO refuses a bf16 row elsewhere."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line for line in f if line.startswith("flags")), "").split()
    except OSError:
        return False
    return bool({"avx512_bf16", "amx_bf16"} & set(flags))


def build_space(target: TargetProfile, backends: tuple[str, ...] = (), has_bf16: bool | None = None,
                calibration: bool = True) -> Space:
    """The space the installed backends allow under the target's caps (its threads; its own precision choices)."""
    notes, has_bf16 = [], cpu_has_bf16() if has_bf16 is None else has_bf16
    wanted = backends or tuple(b for b in known_backends() if _declares_tunable(b))
    variants, session = {}, {}
    for backend in wanted:
        if why := missing_extra(backend):
            notes.append(f"{backend} left out: {why}")
            continue
        session[backend] = tunable_options(backend, target.device.threads) or {}
        runs = [v for v in VARIANTS.names() if backend in VARIANTS.get(v).backends and VARIANTS.get(v).suffix == ".onnx"]
        if "bf16" in runs and not has_bf16:
            runs.remove("bf16")
            notes.append("bf16 left out: this CPU has no bf16 (avx512_bf16 or amx_bf16)")
        if "int8-nncf" in runs and importlib.util.find_spec("nncf") is None:
            runs.remove("int8-nncf")
            notes.append("int8-nncf left out: NNCF is not installed (the openvino extra)")
        if not calibration and any(VARIANTS.get(v).needs_calibration for v in runs):
            notes.append(f"{backend}: {', '.join(v for v in runs if VARIANTS.get(v).needs_calibration)} left out: no "
                         f"calibration images (the suite's [calibration] dir, or --calibration-data)")
            runs = [v for v in runs if not VARIANTS.get(v).needs_calibration]
        variants[backend] = tuple(runs)
    return Space(variants, {b: o for b, o in session.items() if o}, notes=tuple(notes))


def _declares_tunable(backend: str) -> bool:
    """A backend searched by default: one that says what may be tuned (TUNABLE), reading ONNX files."""
    try:
        module = backend_module(backend)
    except Exception:  # noqa: BLE001 - a plugin whose module is broken is not searched unless named
        return False
    return getattr(module, "TUNABLE", None) is not None and getattr(module, "FILE_SUFFIX", "") == ".onnx"


def candidate(name: str, backend: str, variant: str, quantize: dict, session: dict) -> Candidate:
    """A point of the space as a named variant: int8 settings as QuantizeOptions fields, session options sorted."""
    fields = {}
    if quantize:
        method, _, percentile = quantize["calibration"].partition(":")
        fields = {"calibration_method": method, "per_channel": quantize["per_channel"],
                  "activation_type": quantize["activation_type"]}
        if percentile:
            fields["percentile"] = float(percentile)
    named = NamedVariant(name, variant, backend, tuple(sorted(fields.items())),
                         ((backend, tuple(sorted(session.items()))),) if session else ())
    return Candidate(named)


def suggest(trial, space: Space, name: str) -> Candidate:
    """The candidate an Optuna trial picks, define-by-run: the int8 settings only where the variant takes them."""
    backend = trial.suggest_categorical("backend", list(space.backends))
    variant = trial.suggest_categorical(f"{backend}.variant", list(space.variants[backend]))
    quantize = {k: trial.suggest_categorical(k, list(v)) for k, v in space.int8.items()} if variant == TUNED_INT8 else {}
    session = {k: trial.suggest_categorical(f"{backend}.{k}", list(v)) for k, v in space.session.get(backend, {}).items()}
    return candidate(name, backend, variant, quantize, session)


def point_of(c: Candidate) -> tuple[str, str, dict, dict]:
    """A candidate's point of the space (backend, variant, int8 settings, session options): candidate() undone."""
    quantize = dict(c.named.quantize)
    int8 = {}
    if "calibration_method" in quantize:
        method = quantize["calibration_method"]
        int8 = {"calibration": f"{method}:{quantize.get('percentile', 99.999):g}" if method == "percentile" else method,
                "per_channel": quantize.get("per_channel", True), "activation_type": quantize.get("activation_type", "uint8")}
    backend = c.named.backend or DEFAULT_BACKEND
    return backend, c.named.base, int8, c.named.session_for(backend)


def in_space(space: Space, point: tuple[str, str, dict, dict]) -> bool:
    backend, variant, int8, session = point
    return (variant in space.variants.get(backend, ()) and all(v in space.int8.get(k, ()) for k, v in int8.items())
            and all(v in space.session.get(backend, {}).get(k, ()) for k, v in session.items()))


def trial_params(space: Space, backend: str, variant: str, quantize: dict, session: dict) -> dict:
    """Optuna's parameters for a point (to enqueue a known configuration as a trial)."""
    params = {"backend": backend, f"{backend}.variant": variant, **quantize}
    params.update({f"{backend}.{k}": v for k, v in session.items()})
    return params
