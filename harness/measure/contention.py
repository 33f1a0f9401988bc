"""How busy the measuring child's CPUs were with other work while it timed (standard library only)."""

from __future__ import annotations

import os


def cpu_busy_s(cpus) -> float | None:
    """Seconds the given CPUs spent busy (user, system, interrupts, and time the hypervisor stole) since boot."""
    try:
        with open("/proc/stat") as f:
            lines = {line.split()[0]: line.split()[1:] for line in f if line.startswith("cpu")}
        ticks = os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError):
        return None
    busy = 0
    for cpu in cpus:
        fields = [int(v) for v in lines.get(f"cpu{cpu}", [])]
        if len(fields) >= 8:  # user nice system idle iowait irq softirq steal
            busy += fields[0] + fields[1] + fields[2] + fields[5] + fields[6] + fields[7]
    return busy / ticks


def own_cpu_s() -> float:
    times = os.times()
    return times.user + times.system


def other_cpu_pct(cpus, busy_before, own_before, wall_s: float) -> float | None:
    """Share of the pinned CPUs' capacity during the timed runs that went to something other than this child."""
    busy_after = cpu_busy_s(cpus)
    if busy_before is None or busy_after is None or wall_s <= 0:
        return None
    other = (busy_after - busy_before) - (own_cpu_s() - own_before)
    return max(0.0, 100 * other / (wall_s * len(cpus)))
