"""The memory cap where no cgroup enforces it: one thread reads each process's RSS from /proc and kills the one
that passes the cap. Guards the measuring children (alone or in lockstep) and the model server alike.
Standard library only: it runs wherever the children run.
"""

from __future__ import annotations

import subprocess
import threading
from typing import Callable

POLL_S = 0.005  # a model that allocates its way past the cap is seen within 5 ms


def rss_mb(pid: int) -> float | None:
    """The process's resident set now (VmRSS), or None when it has ended."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
    except (FileNotFoundError, ProcessLookupError):
        return None
    return None


class MemoryWatchdog(threading.Thread):
    """Kills any of `procs` whose RSS passes `cap_mb`; `over_mb[i]` is the RSS that passed it (`on_over` is told)."""

    def __init__(self, procs: list[subprocess.Popen], cap_mb: float,
                 on_over: Callable[[int, float], None] | None = None):
        super().__init__(daemon=True)
        self.procs, self.cap_mb, self.on_over = list(procs), cap_mb, on_over
        self.over_mb: dict[int, float] = {}
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            for i, proc in enumerate(self.procs):
                rss = rss_mb(proc.pid) if i not in self.over_mb and proc.poll() is None else None
                if rss is not None and rss > self.cap_mb:
                    self.over_mb[i] = rss
                    if self.on_over:  # before the kill: whoever sees the process end must find why
                        self.on_over(i, rss)
                    proc.kill()
            self.done.wait(POLL_S)

    def stop(self) -> None:
        self.done.set()
        if self.is_alive():
            self.join()

    def passed(self, i: int = 0) -> str:
        """Why process `i` was killed, or '' if it was not."""
        rss = self.over_mb.get(i)
        return "" if rss is None else f"exceeded memory cap ({rss:.0f} MB > {self.cap_mb:.0f} MB)"
