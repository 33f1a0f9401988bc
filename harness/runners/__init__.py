"""Where a measurement runs: the `Runner` interface, which runner a bench uses (`make_runner`), and what a remote
place gets of the harness: the child's package, `harness/measure/`, whole (`copy_child_package`)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Protocol

from harness.errors import HarnessError
from harness.measure.local import WORKER_TIMEOUT_S, ChildProcesses
from harness.measure.protocol import Reply, Request

PACKAGE_ROOT = Path(__file__).resolve().parent.parent
CHILD_PACKAGE = PACKAGE_ROOT / "measure"  # all a measuring child imports of the harness, besides harness/__init__.py


def child_package_files() -> list[str]:
    """What a remote or side environment gets, as paths under the harness package: the child's folder whole."""
    return ["__init__.py", *(str(p.relative_to(PACKAGE_ROOT)) for p in sorted(CHILD_PACKAGE.rglob("*.py")))]


def copy_child_package(package: Path) -> None:
    """The child's package into `package`, a folder named harness, keeping its sub-folders."""
    import shutil

    for name in child_package_files():
        (package / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(PACKAGE_ROOT / name, package / name)


class Runner(Protocol):
    name: str

    def check_target(self, target) -> None:
        """Refuse (HarnessError) a target this runner's machine cannot honour, before anything is measured."""

    def run(self, request: Request, memory_cap_mb: float | None = None, timeout_s: float = WORKER_TIMEOUT_S) -> Reply:
        """Measure `request` somewhere; never raise for a failed measurement: return `Reply.failed`."""

    def close(self) -> None:
        """Remove what the runner staged or started (remote folders, connections)."""


class RemoteLockstep:
    """run / run_together for a runner whose `_measure(requests, cap, timeout, together)` sends requests elsewhere.

    A side runtime (a `pythons` entry) lives on the controller and cannot travel: those run one at a time."""

    def run(self, request: Request, memory_cap_mb: float | None = None, timeout_s: float = WORKER_TIMEOUT_S) -> Reply:
        return self._measure([request], memory_cap_mb, timeout_s, together=False)[0]

    def run_together(self, requests: list[Request], memory_cap_mb: float | None = None,
                     timeout_s: float = WORKER_TIMEOUT_S, pythons: list[str | None] | None = None) -> list[Reply]:
        if any(pythons or ()):
            return [self.run(r, memory_cap_mb, timeout_s) for r in requests]
        return self._measure(requests, memory_cap_mb, timeout_s * len(requests), together=True)


class LocalRunner(ChildProcesses):
    """Measuring children on this machine, after checking the target fits it."""

    def check_target(self, target) -> None:
        check_fits_this_machine(target)

    def lanes(self, target) -> list["LocalRunner"]:
        """Runners on disjoint sets of `threads` CPUs on separate physical cores, one per set this machine holds:
        groups of children measured side by side, each in lockstep on its own cores. One (this) where the target
        pins its CPUs or fewer than two sets fit."""
        lanes = lane_cpus(os.sched_getaffinity(0), target.device.threads)
        if target.device.cpu_affinity or len(lanes) < 2:
            return [self]
        return [LocalRunner(cpus) for cpus in lanes]


SYSFS_CPUS = Path("/sys/devices/system/cpu")


def lane_cpus(cpus, threads: int, sysfs: Path = SYSFS_CPUS) -> list[tuple[int, ...]]:
    """Disjoint sets of `threads` CPUs that share no physical core: two SMT siblings in two lanes would slow each
    other, so a lane takes whole cores and leaves a sibling it does not need idle."""
    lanes, lane = [], []
    for core in physical_cores(cpus, sysfs):
        lane += core
        if len(lane) >= threads:
            lanes.append(tuple(lane[:threads]))
            lane = []
    return lanes


def physical_cores(cpus, sysfs: Path = SYSFS_CPUS) -> list[tuple[int, ...]]:
    """`cpus` grouped by the core they run on (SMT siblings together, from sysfs's thread_siblings_list), in order;
    a CPU whose siblings cannot be read is a core of its own."""
    cores: dict[frozenset, list[int]] = {}
    for cpu in sorted(cpus):
        try:
            siblings = frozenset(_cpu_list((sysfs / f"cpu{cpu}" / "topology" / "thread_siblings_list").read_text()))
        except (OSError, ValueError):
            siblings = frozenset({cpu})
        cores.setdefault(siblings, []).append(cpu)
    return [tuple(core) for core in cores.values()]


def _cpu_list(text: str) -> set[int]:
    """The kernel's CPU list format: "0-3,8" is {0, 1, 2, 3, 8}."""
    out: set[int] = set()
    for part in text.strip().split(","):
        first, _, last = part.partition("-")
        out.update(range(int(first), int(last or first) + 1))
    return out


def check_fits_this_machine(target) -> None:
    """Threads and affinity against the CPUs this process may use: a local measurement needs them here."""
    allowed = os.sched_getaffinity(0)
    device = target.device
    if device.threads > len(allowed):
        raise HarnessError(f"{target.where}: threads = {device.threads} but this machine lets the harness use "
                           f"{len(allowed)} cores; set threads <= {len(allowed)}")
    outside = sorted(set(device.cpu_affinity or ()) - allowed)
    if outside:
        raise HarnessError(f"{target.where}: cpu_affinity names CPU {outside[0]}, not available here "
                           f"(available: {sorted(allowed)})")



def make_runner(target, cluster: str | None = None) -> Runner:
    """The runner a target names (`runner = "ssh://..."`), a Ray cluster's when `cluster` is given, else local."""
    if cluster:
        from harness.runners.ray_cluster import RayRunner

        return RayRunner(cluster)
    if target.device.runner.startswith("ssh://"):
        from harness.runners.ssh import SshRunner

        return SshRunner(target.device)
    return LocalRunner()


def run_worker(request: Request, memory_cap_mb: float | None = None, timeout_s: float = WORKER_TIMEOUT_S):
    """One local measurement as a Measurement (the figures the bench combines)."""
    from harness.results.measurement import Measurement

    return Measurement.from_reply(LocalRunner().run(request, memory_cap_mb, timeout_s))
