"""Measuring children on this machine: a fresh worker process blocked on its pipe, or several in lockstep.

Like pyperf, each measurement is a new interpreter (nothing warm leaks between variants), the reply
comes back as one JSON document on its own pipe, and the child is killed on timeout. A watchdog thread
ends a child whose resident memory passes the cap; the kernel's VmHWM is read for the peak either way.
It lives in the child's package because a device (ssh, a Ray node) runs it too, on its side.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import platform
import subprocess
import sys
import threading

from harness.measure.lockstep import run_lockstep
from harness.measure.protocol import ProtocolError, Reply, Request
from harness.measure.watchdog import MemoryWatchdog

WORKER_TIMEOUT_S = 900


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


class ChildProcesses:
    """`python -m harness.measure.worker` on this machine: one child, or several in lockstep (the local runner's and
    a device's measuring side)."""

    name = "local"

    def __init__(self, cpus: tuple[int, ...] = ()):
        self.cpus = cpus  # a lane: children without an affinity of their own go on these CPUs (else the first ones)

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

    def _placed(self, request: Request) -> Request:
        if request.cpu_affinity:
            return request
        cpus = self.cpus or tuple(sorted(os.sched_getaffinity(0)))
        return dataclasses.replace(request, cpu_affinity=tuple(cpus[: request.threads]))

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
