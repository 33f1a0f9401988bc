"""Where a measurement runs. `LocalRunner`: a fresh worker process on this machine, blocked on its pipe.

Like pyperf, each measurement is a new interpreter (nothing warm leaks between variants), the reply
comes back as one JSON document on its own pipe, and the child is killed on timeout. A watchdog thread
ends a child whose resident memory passes the cap; the kernel's VmHWM is read for the peak either way.
Other runners (a device over SSH, a cluster) take the same Request and give back the same Reply.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import platform
import subprocess
import sys
import threading
from pathlib import Path
from typing import Protocol

from harness.measure.lockstep import run_lockstep
from harness.measure.watchdog import MemoryWatchdog
from harness.measure.protocol import ProtocolError, Reply, Request

WORKER_TIMEOUT_S = 900
PACKAGE_ROOT = Path(__file__).resolve().parent.parent
# What a remote or side environment gets (paths under the package): the measuring child's two folders whole, so a
# module added to either travels without a list to keep, and the few modules outside them it imports.
CHILD_MODULES = (*(str(p.relative_to(PACKAGE_ROOT)) for folder in ("backends", "measure")
                   for p in sorted((PACKAGE_ROOT / folder).glob("*.py"))),
                 "__init__.py", "metrics.py", "runners/__init__.py", "runners/local.py")


def copy_child_modules(package: Path, extra: tuple[str, ...] = ()) -> None:
    """The child's modules (and `extra` ones) into `package`, a folder named harness, keeping their sub-folders."""
    import shutil

    for name in (*CHILD_MODULES, *extra):
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


class _ReplyReader(threading.Thread):
    """Drains the reply pipe while the child runs (a large reply would otherwise fill the pipe and block it)."""

    def __init__(self, fd: int):
        super().__init__(daemon=True)
        self.fd, self.chunks = fd, []

    def run(self) -> None:
        with os.fdopen(self.fd, "rb") as pipe:
            for chunk in iter(lambda: pipe.read(1 << 16), b""):
                self.chunks.append(chunk)

    def text(self) -> str:
        return b"".join(self.chunks).decode()


class LocalRunner:
    """`python -m harness.measure.worker` on this machine."""

    name = "local"

    def check_target(self, target) -> None:
        check_fits_this_machine(target)

    def run(self, request: Request, memory_cap_mb: float | None = None, timeout_s: float = WORKER_TIMEOUT_S) -> Reply:
        request = self._placed(request)  # empty affinity: the first `threads` CPUs this process may use here
        with _off_cpus(request.cpu_affinity):
            reply = self._run(request, memory_cap_mb, timeout_s)
        return dataclasses.replace(reply, measured_on=f"local ({platform.node()})")

    def run_together(self, requests: list[Request], memory_cap_mb: float | None = None,
                     timeout_s: float = WORKER_TIMEOUT_S, pythons: list[str | None] | None = None) -> list[Reply]:
        """Several children alive at once, timed in alternating blocks (harness.measure.lockstep); one Reply each."""
        requests = [self._placed(r) for r in requests]
        pythons = [p or sys.executable for p in (pythons or [None] * len(requests))]
        with _off_cpus(sorted({cpu for r in requests for cpu in r.cpu_affinity})):
            replies = run_lockstep(requests, memory_cap_mb, timeout_s, pythons)
        return [dataclasses.replace(reply, measured_on=f"local ({platform.node()})") for reply in replies]

    @staticmethod
    def _placed(request: Request) -> Request:
        if request.cpu_affinity:
            return request
        return dataclasses.replace(request, cpu_affinity=tuple(sorted(os.sched_getaffinity(0))[: request.threads]))

    def close(self) -> None:
        pass

    def _run(self, request: Request, memory_cap_mb: float | None, timeout_s: float) -> Reply:
        read_fd, write_fd = os.pipe()
        try:
            proc = subprocess.Popen([sys.executable, "-m", "harness.measure.worker", "--reply-fd", str(write_fd)],
                                    stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                    text=True, pass_fds=(write_fd,))
        except BaseException:
            os.close(read_fd)
            raise
        finally:
            os.close(write_fd)  # the child holds its own copy: EOF on our side when it exits
        reader = _ReplyReader(read_fd)
        reader.start()
        watchdog = MemoryWatchdog([proc], memory_cap_mb) if memory_cap_mb else None
        if watchdog:
            watchdog.start()
        try:
            _, stderr = proc.communicate(request.to_json(), timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            return Reply.failed(f"worker did not finish within {timeout_s:.0f} s and was killed")
        except BaseException:
            proc.kill()  # Ctrl-C: never leave a measuring child behind
            proc.communicate()
            raise
        finally:
            if watchdog:
                watchdog.stop()
            reader.join(timeout=10)
        if watchdog and watchdog.passed():
            return Reply.failed(watchdog.passed())
        text = reader.text()
        if proc.returncode != 0 or not text.strip():
            last = (stderr.strip().splitlines() or [f"exit code {proc.returncode}"])[-1]
            return Reply.failed(f"worker failed: {last}")
        try:
            return Reply.from_json(text)
        except ProtocolError as e:
            return Reply.failed(f"worker reply unreadable: {e}")


def check_fits_this_machine(target) -> None:
    """Threads and affinity against the CPUs this process may use: a local measurement needs them here."""
    from harness.errors import HarnessError  # imported here: the device side ships without it

    allowed = os.sched_getaffinity(0)
    device = target.device
    if device.threads > len(allowed):
        raise HarnessError(f"{target.where}: threads = {device.threads} but this machine lets the harness use "
                           f"{len(allowed)} cores; set threads <= {len(allowed)}")
    outside = sorted(set(device.cpu_affinity or ()) - allowed)
    if outside:
        raise HarnessError(f"{target.where}: cpu_affinity names CPU {outside[0]}, not available here "
                           f"(available: {sorted(allowed)})")


@contextlib.contextmanager
def _off_cpus(child_cpus):
    """Keep this thread (and the watchdog and reader it starts) off the child's CPUs while it measures, where
    the machine has others; on a machine with no spare CPU nothing changes."""
    allowed = os.sched_getaffinity(0)
    spare = allowed - set(child_cpus)
    if not spare:
        yield
        return
    os.sched_setaffinity(0, spare)
    try:
        yield
    finally:
        os.sched_setaffinity(0, allowed)


def run_worker(request: Request, memory_cap_mb: float | None = None, timeout_s: float = WORKER_TIMEOUT_S):
    """One local measurement as a Measurement (the figures the bench combines)."""
    from harness.measure.measurement import Measurement

    return Measurement.from_reply(LocalRunner().run(request, memory_cap_mb, timeout_s))
