"""The tables of `harness profile`: each variant's slowest operators, and time by operator kind side by side."""

from __future__ import annotations

from rich.markup import escape
from rich.table import Table

from harness.report.render import NOT_MEASURED, plain
from harness.targets import TargetProfile


def profile_tables(model: str, backend: str, target: TargetProfile, profiles: dict, top: int) -> list[Table]:
    """Per variant, its slowest operators; then every variant's time by operator kind, side by side."""
    tables, model = [], escape(model)  # a user's ONNX file name, and its node names below, are not markup
    for variant, found in profiles.items():
        ops = sorted(found["ops"], key=lambda o: -o["ms_per_call"])
        in_ops = sum(o["ms_per_call"] for o in ops)
        table = Table("operator", "kind", "ran on", "ms per call", "share %", title_justify="left",
                      title=f"{model} {variant} under {backend}, {target.device.threads} thread(s): slowest {min(top, len(ops))} "
                            f"of {len(ops)} operators ({found['runs']} calls; {in_ops:.2f} ms in operators of "
                            f"{found['wall_ms_per_call']:.2f} ms per call)")
        for o in ops[:top]:
            table.add_row(*plain(o["node"][:60], o["op_type"], o["ran_on"]), f"{o['ms_per_call']:.3f}",
                          f"{100 * o['ms_per_call'] / in_ops:.1f}" if in_ops else NOT_MEASURED)
        tables.append(table)
    kinds: dict[str, dict[str, float]] = {}
    for variant, found in profiles.items():
        for o in found["ops"]:
            kinds.setdefault(o["op_type"], {}).setdefault(variant, 0.0)
            kinds[o["op_type"]][variant] += o["ms_per_call"]
    names = list(profiles)
    table = Table("kind", *(f"{v} ms" for v in names), title_justify="left",
                  title=f"{model} under {backend}: time per call by operator kind (measured, summed over the kind's nodes)")
    for kind, per in sorted(kinds.items(), key=lambda kv: -max(kv[1].values())):
        table.add_row(escape(kind), *(f"{per[v]:.3f}" if v in per else "" for v in names))
    table.add_row("[bold]all operators[/bold]", *(f"{sum(o['ms_per_call'] for o in profiles[v]['ops']):.3f}" for v in names))
    table.add_row("[bold]per call (wall)[/bold]", *(f"{profiles[v]['wall_ms_per_call']:.3f}" for v in names))
    tables.append(table)
    return tables
