"""Narrowing a run from the command line: `--model PATTERN`, `--variant NAME`, `--serving MODE`, `--backend NAME`
(each repeatable).

A user who changed one model of fourteen measures that one; the gate judges the rows measured and counts
the recorded rows it did not look at, and `--update` replaces only the rows measured.
"""

from __future__ import annotations

import dataclasses
import fnmatch
from dataclasses import dataclass

from harness.measure.backends import DEFAULT_BACKEND
from harness.errors import HarnessError
from harness.results import RowKey
from harness.spec import Suite
from harness.targets import TargetProfile


@dataclass(frozen=True)
class Narrowing:
    """What the command line kept; empty tuples keep everything."""

    models: tuple[str, ...] = ()  # fnmatch patterns on model names
    variants: tuple[str, ...] = ()
    serving: tuple[str, ...] = ()
    backends: tuple[str, ...] = ()  # ONNX Runtime's fp32 is measured whatever is named: every ratio's reference

    @property
    def active(self) -> bool:
        return bool(self.models or self.variants or self.serving or self.backends)

    def update_record(self, record_path, rows, on_wait=None) -> None:
        """`--update`: a narrowed run replaces the rows it measured and keeps every other recorded row byte for byte."""
        from harness.results import merge_and_write

        merge_and_write(record_path, rows, on_wait=on_wait, only_rows=self.active)

    def describe(self) -> str:
        parts = [f"--{flag} {' '.join(values)}" for flag, values in
                 (("model", self.models), ("variant", self.variants), ("serving", self.serving),
                  ("backend", self.backends)) if values]
        return ", ".join(parts)

    def apply(self, suite: Suite, target: TargetProfile) -> tuple[Suite, TargetProfile]:
        """The suite and target the run measures; a filter that keeps nothing is bad input (exit 2)."""
        models = suite.models
        if self.models:
            models = tuple(m for m in suite.models if any(fnmatch.fnmatchcase(m.name, p) for p in self.models))
            if not models:
                raise HarnessError(f"no model of {suite.path} matches --model {' '.join(self.models)}; its models: "
                                   f"{', '.join(m.name for m in suite.models)}")
        scenario, budgets = target.scenario, target.budgets
        if self.variants:
            known = ("fp32", *target.scenario.variants)
            unknown = [v for v in self.variants if v not in known]
            if unknown:
                raise HarnessError(f"--variant {unknown[0]}: {target.where} measures {', '.join(dict.fromkeys(known))}; "
                                   f"choose among them")
            # fp32 is measured anyway: the reference of every ratio. Variants left out no longer ship in this run.
            scenario = dataclasses.replace(scenario, variants=tuple(self.variants))
            if budgets.ship is not None:
                budgets = dataclasses.replace(budgets, ship=tuple(v for v in budgets.ship if v in (*self.variants, "fp32")))
        if self.serving:
            unknown = [s for s in self.serving if s not in target.scenario.serving]
            if unknown:
                raise HarnessError(f"--serving {unknown[0]}: {target.where} serves {', '.join(target.scenario.serving)}; "
                                   f"choose among them")
            scenario = dataclasses.replace(scenario, serving=tuple(self.serving))
        if self.backends:
            self._check_backends(target)
        return (dataclasses.replace(suite, models=models),
                dataclasses.replace(target, scenario=scenario, budgets=budgets))

    def _check_backends(self, target: TargetProfile) -> None:
        from harness.measure.backends import missing_extra

        offered = (*target.scenario.backends, *target.scenario.backends_if_installed)
        for backend in self.backends:
            if backend not in offered:
                raise HarnessError(f"--backend {backend}: {target.where} measures under {', '.join(offered)}; "
                                   f"choose among them")
            if why := missing_extra(backend):
                raise HarnessError(f"--backend {backend}: {why}")
        for variant in self.variants:
            runs_under = target.scenario.variant(variant).backends
            if variant != "fp32" and not set(runs_under) & set(self.backends):
                raise HarnessError(f"--variant {variant} runs under {' or '.join(runs_under)} only, "
                                   f"not under --backend {' '.join(self.backends)}")

    def selects(self, key: RowKey, target: TargetProfile) -> bool:
        """Whether a recorded row (model, variant, serving mode, backend) is one this narrowed run looks at."""
        model, variant, serving, backend = key
        if backend not in target.scenario.backends:
            return False
        if self.models and not any(fnmatch.fnmatchcase(model, p) for p in self.models):
            return False
        reference = (backend, variant) == (DEFAULT_BACKEND, "fp32")  # measured in every run: every ratio's reference
        if self.variants and variant not in self.variants and not reference:
            return False
        if self.backends and backend not in self.backends and not reference:
            return False
        if self.serving:
            return ("http" if serving.startswith("http-") else serving) in self.serving  # "http" names its three loads
        return True
