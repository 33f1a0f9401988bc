"""The server process: started on the target's CPUs under the memory cap, watched, and stopped.

The memory cap is a cgroup (`systemd-run --user --scope -p MemoryMax=...`) where this machine delegates one
to the user, checked by starting a scope; otherwise the same watchdog that guards the measurement child.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from harness.serve.config import ServerConfig

READY_TIMEOUT_S = 120


def memory_cgroup_command(cap_mb: float) -> tuple[list[str], str]:
    """The command prefix that puts the server in a memory-capped cgroup, or [] and why not (checked, never assumed)."""
    import shutil

    if not cap_mb:
        return [], "no memory cap"
    if shutil.which("systemd-run") is None:
        return [], "watchdog (no systemd-run for a cgroup)"
    prefix = ["systemd-run", "--user", "--scope", "--quiet", "-p", f"MemoryMax={int(cap_mb)}M", "-p", "MemorySwapMax=0", "--"]
    try:
        probe = subprocess.run([*prefix, "true"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as e:
        return [], f"watchdog (systemd-run could not make a scope: {e})"
    if probe.returncode != 0:
        why = (probe.stderr.strip().splitlines() or [f"exit code {probe.returncode}"])[-1]
        return [], f"watchdog (systemd-run --user cannot make a scope here: {why})"
    return prefix, "cgroup"


def cgroup_figures(pid: int) -> tuple[float | None, int | None]:
    """memory.peak (MB) and the OOM-kill count of the cgroup v2 the process is in."""
    try:
        with open(f"/proc/{pid}/cgroup") as f:
            path = next(line.split("::", 1)[1].strip() for line in f if line.startswith("0::"))
        for root in ("/sys/fs/cgroup", "/sys/fs/cgroup/unified"):
            folder = Path(root + path)
            if (folder / "memory.peak").is_file():
                peak = int((folder / "memory.peak").read_text()) / 2**20
                events = dict(line.split() for line in (folder / "memory.events").read_text().splitlines())
                return peak, int(events.get("oom_kill", 0))
    except (OSError, StopIteration, ValueError):
        pass
    return None, None


def status_mb(pid: int | str, field: str) -> float | None:
    """A /proc/PID/status figure (PID "self": this process) in MB; None when the process is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        return None
    return None


class ServerProcess:
    """`python -m harness.serve.server` started, watched for its memory cap, and stopped."""

    def __init__(self, config: ServerConfig, workdir: Path, cap_mb: float | None, python: str | None = None):
        from harness.measure.watchdog import MemoryWatchdog

        self.config_path = workdir / f"server_{os.getpid()}_{time.monotonic_ns()}.json"
        self.config_path.write_text(config.to_json())
        prefix, self.cap_by = memory_cgroup_command(cap_mb or 0)
        read_fd, write_fd = os.pipe()
        self.stderr_path = self.config_path.with_suffix(".log")
        with open(self.stderr_path, "w") as stderr:
            self.proc = subprocess.Popen([*prefix, python or sys.executable, "-m", "harness.serve.server", "--config",
                                          str(self.config_path), "--ready-fd", str(write_fd)],
                                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr,
                                         pass_fds=(write_fd,))
        os.close(write_fd)
        self.ready_fd = read_fd
        self.watchdog = MemoryWatchdog([self.proc], cap_mb) if cap_mb and self.cap_by != "cgroup" else None
        if self.watchdog:
            self.watchdog.start()
        self.ready: dict | None = None

    def wait_ready(self, timeout_s: float = READY_TIMEOUT_S) -> str:
        """'' once the server has loaded its model and listens, else why it will not."""
        import select

        deadline, text = time.monotonic() + timeout_s, b""
        with os.fdopen(self.ready_fd, "rb") as pipe:
            while time.monotonic() < deadline and not text.endswith(b"\n"):
                ready, _, _ = select.select([pipe], [], [], 0.5)
                if ready:
                    chunk = os.read(pipe.fileno(), 4096)
                    if not chunk:
                        break  # the server exited (its end of the pipe closed)
                    text += chunk
        if text.endswith(b"\n"):
            self.ready = json.loads(text)
            return ""
        try:
            self.proc.wait(timeout=max(1.0, deadline - time.monotonic()))  # the pipe closed: the server is ending
        except subprocess.TimeoutExpired:
            self.stop()
            return f"the server did not start within {timeout_s:.0f} s"
        return self.ended_why() or "the server exited before it was ready"

    def ended_why(self) -> str:
        """Why the server is gone, or '' while it runs."""
        code = self.proc.poll()
        if code is None:
            return ""
        if self.watchdog and self.watchdog.over_mb:
            return (f"the server passed the memory cap ({self.watchdog.over_mb[0]:.0f} MB > {self.watchdog.cap_mb:.0f} MB) "
                    f"and was stopped")
        last = (self.stderr_path.read_text(errors="replace").strip().splitlines() or [""])[-1]
        how = f"killed by signal {-code}" if code < 0 else f"exit code {code}"
        return f"the server process ended ({how}){': ' + last if last else ''}"

    def peak_rss_mb(self) -> float | None:
        return status_mb(self.proc.pid, "VmHWM")

    def stop(self) -> None:
        if self.watchdog:
            self.watchdog.done.set()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.watchdog:
            self.watchdog.join()
