"""The figures a measuring child reports beside its latencies, each declared once: how the children's values
combine into the row's, and the row column it fills.

A new child figure is one entry here, the child measuring it (worker.py) and its column (results.py): the reply,
the measurement and the row carry `figures` by name, so nothing in between changes. Standard library only.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Callable


def median(values: list):
    return float(statistics.median(values)) if values else None


def most(values: list):
    return max(values) if values else None


def first(values: list):
    return values[0] if values else None


@dataclass(frozen=True)
class ChildFigure:
    name: str  # its key in Reply.figures and Measurement.figures
    combine: Callable[[list], object]  # the children's values (not-measured ones left out) to the row's one
    column: str = ""  # the row's column, where it is named otherwise

    @property
    def row_column(self) -> str:
        return self.column or self.name


CHILD_FIGURES = {f.name: f for f in (
    ChildFigure("images_per_s", median),
    ChildFigure("peak_rss_mb", median),  # kernel high-water mark (VmHWM) after the timed runs
    ChildFigure("import_rss_mb", median),  # resident memory right after importing numpy and the runtime
    ChildFigure("threads_in_process", most),
    ChildFigure("max_in_flight", most),
    ChildFigure("reference_ms", median),  # the fixed reference workload, timed in the same child after the model
    ChildFigure("other_cpu_pct", most, column="contended_pct"),  # the pinned CPUs' busy time not this child's
    ChildFigure("load_ms", median),  # cold start: creating the session (read, optimise, compile the model)
    ChildFigure("first_call_ms", median),  # cold start: the first call after it
    ChildFigure("backend_version", first),  # the backend's own release (ORT's for onnxruntime)
    ChildFigure("precision", first),  # what the backend says it ran: "as in the file", "u8 (33 of 33 compute layers)"
    ChildFigure("cpu_ms_per_call", median),  # the child's CPU time (all its threads) per timed call or request
)}


def combine_figures(children: list[dict]) -> dict:
    """One figure per name from several children of the same variant, each as its declaration combines it."""
    return {name: figure.combine([c[name] for c in children if c.get(name) is not None])
            for name, figure in CHILD_FIGURES.items()}


def figure_of(owner, name: str):
    """`owner.name` for a declared figure held in `owner.figures` (None: not measured)."""
    if name not in CHILD_FIGURES:
        raise AttributeError(f"{type(owner).__name__} has no attribute '{name}'")
    return owner.figures.get(name)
