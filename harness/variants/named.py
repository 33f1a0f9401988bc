"""Named variants: a registered variant with settings of its own, declared in a target's TOML.

    variants = ["fp32", "int8-tuned"]
    [variant.int8-tuned]
    base = "int8-static"          # the registered variant that makes its file
    backend = "openvino"          # optional: the one runtime that measures it (its extra then needed)
    models = ["pspnet_resnet18"]  # optional: the suite models it is made for (default: every one)
    calibration_method = "entropy"  # any QuantizeOptions field (harness.variants.quantize)
    [variant.int8-tuned.onnxruntime]  # session options of this variant only, over the target's
    allow_spinning = false

`harness tune` writes its winner so; `harness bench` then makes, measures and gates exactly it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, fields

from harness.errors import HarnessError
from harness.files import check_name
from harness.measure.backends import checked_options, known_backends
from harness.variants.quantize import QuantizeOptions
from harness.variants.registry import VARIANTS, Variant

QUANTIZE_KEYS = {f.name: f.type for f in fields(QuantizeOptions)}
_TYPES = {"str": str, "int": int, "float": (int, float), "bool": bool, "tuple[str, ...]": list}


@dataclass(frozen=True)
class NamedVariant:
    """A registered variant (`base`) with its own quantization settings and session options."""

    name: str
    base: str
    backend: str = ""  # "": every backend of the target that runs the base
    quantize: tuple[tuple[str, object], ...] = ()  # QuantizeOptions fields over the suite's, sorted
    session: tuple[tuple[str, tuple[tuple[str, object], ...]], ...] = ()  # backend -> its options over the target's
    note: str = ""  # how it was chosen (harness tune writes the command and the date)
    models: tuple[str, ...] = ()  # the suite models it is made for; (): every one

    def applies_to(self, model: str) -> bool:  # an A/B partner "name@rev" is its model's version
        return not self.models or model.split("@")[0] in self.models

    def quantize_options(self, suite_options: QuantizeOptions) -> QuantizeOptions:
        """The suite's options with this variant's settings over them."""
        changes = {k: tuple(v) if k == "nodes_to_exclude" else v for k, v in self.quantize}
        return dataclasses.replace(suite_options, **changes)

    def session_for(self, backend: str) -> dict:
        return dict(dict(self.session).get(backend, ()))

    def as_table(self) -> dict:
        """The [variant.NAME] table that declares it."""
        table = {"base": self.base, **({"backend": self.backend} if self.backend else {}),
                 **({"models": list(self.models)} if self.models else {}),
                 **{k: list(v) if isinstance(v, tuple) else v for k, v in self.quantize}}
        table.update({backend: dict(options) for backend, options in self.session})
        return {**({"note": self.note} if self.note else {}), **table}

    @classmethod
    def from_table(cls, name: str, table, where: str) -> "NamedVariant":
        """One [variant.NAME] table, checked: one HarnessError naming the first thing wrong."""
        check_name("variant", name, f"{where}: [variant.{name}]")
        if not isinstance(table, dict) or not isinstance(table.get("base"), str):
            raise HarnessError(f"{where}: [variant.{name}] needs base = \"VARIANT\", a registered variant "
                               f"(harness variants lists them)")
        table = dict(table)
        base, backend, note, models = table.pop("base"), table.pop("backend", ""), table.pop("note", ""), table.pop("models", [])
        if not isinstance(models, list) or not all(isinstance(m, str) for m in models) or not isinstance(note, str):
            raise HarnessError(f"{where}: [variant.{name}] models must be a list of model names and note a string")
        if base not in VARIANTS.names():
            raise HarnessError(f"{where}: [variant.{name}] base '{base}' is not a registered variant; use one of "
                               f"{', '.join(VARIANTS.names())}")
        if backend and backend not in VARIANTS.get(base).backends:
            raise HarnessError(f"{where}: [variant.{name}] backend '{backend}' does not run {base}; use one of "
                               f"{', '.join(VARIANTS.get(base).backends)}")
        session = {k: table.pop(k) for k in list(table) if k in known_backends() and isinstance(table[k], dict)}
        try:
            session = {b: checked_options(b, options) for b, options in session.items()}
        except ValueError as e:
            raise HarnessError(f"{where}: [variant.{name}] {e}") from None
        for key, value in table.items():
            kind = QUANTIZE_KEYS.get(key)
            if kind is None:
                raise HarnessError(f"{where}: [variant.{name}] has no setting '{key}'; use base, backend, models, note, a "
                                   f"backend's table or one of {', '.join(QUANTIZE_KEYS)}")
            if isinstance(value, bool) != (kind == "bool") or not isinstance(value, _TYPES[kind]):
                raise HarnessError(f"{where}: [variant.{name}] {key} must be {kind}, got {value!r}")
        quantize = tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in table.items()))
        named = cls(name, base, backend, quantize,
                    tuple(sorted((b, tuple(sorted(o.items()))) for b, o in session.items() if o)), note, tuple(models))
        try:
            named.quantize_options(QuantizeOptions())  # the values themselves (a method's name, a percentile)
        except HarnessError as e:
            raise HarnessError(f"{where}: [variant.{name}] {e}") from None
        return named


def named_from_tables(tables, where: str) -> tuple[NamedVariant, ...]:
    """A target's [variant.*] tables, each checked; a name that is a registered variant is refused."""
    if not isinstance(tables, dict):
        raise HarnessError(f"{where}: variant must be tables [variant.NAME]; list the variants measured in variants")
    taken = [n for n in tables if n in VARIANTS.names()]
    if taken:
        raise HarnessError(f"{where}: [variant.{taken[0]}] is a registered variant's name; name yours otherwise")
    return tuple(NamedVariant.from_table(name, table, where) for name, table in sorted(tables.items()))


def resolve_variant(name: str, named: tuple[NamedVariant, ...] = ()) -> Variant:
    """A registered variant, or a named one as the Variant its base is, under its name and its backend."""
    found = next((n for n in named if n.name == name), None)
    if found is None and named and name not in VARIANTS.names():
        raise HarnessError(f"unknown variant '{name}': registered variants are {', '.join(VARIANTS.names())}; the "
                           f"target names {', '.join(n.name for n in named)} (declare one as [variant.{name}])")
    if found is None:
        return VARIANTS.get(name)
    base = VARIANTS.get(found.base)
    return dataclasses.replace(base, name=found.name, runs_under=(found.backend,) if found.backend else base.backends,
                               named=found)
