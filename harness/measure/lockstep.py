"""Lockstep: several measuring children alive at once, timed in alternating short blocks, one at a time.

A shared host's speed changes within seconds, so two variants measured in processes seconds apart see
different hosts. Here every child loads its model and warms up, then the conductor asks each in turn
for one block (about 0.25 s of calls), cycle after cycle, reversing the order every other cycle. Block i
of every child ran in cycle i, within a second of the others: a ratio of two children's blocks from
the same cycle cancels the host's drift. Memory stays one model per process (each child's own VmHWM).
Standard library only: it runs wherever the children run.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field

from harness.measure.protocol import ProtocolError, Reply, Request
from harness.measure.watchdog import MemoryWatchdog

@dataclass
class _Child:
    request: Request
    proc: subprocess.Popen
    replies: object  # the reply pipe, read line by line
    stderr: object  # a temporary file: a pipe nobody drains would block the child
    error: str | None = None
    blocks: int = 0
    timed_s: float = 0.0
    runs: int = 0
    over_cap: str = ""  # why the memory watchdog killed it
    reply: Reply | None = field(default=None)

    def needs_more(self) -> bool:
        request = self.request
        return self.error is None and (self.runs < request.min_runs or self.timed_s < request.min_duration_s) \
            and self.runs < request.max_runs


def _start(request: Request, python: str) -> _Child:
    read_fd, write_fd = os.pipe()
    stderr = tempfile.TemporaryFile()
    try:
        proc = subprocess.Popen([python, "-m", "harness.measure.worker", "--reply-fd", str(write_fd), "--lockstep"],
                                stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=stderr, text=True,
                                pass_fds=(write_fd,))
    except BaseException:
        os.close(read_fd)
        stderr.close()
        raise
    finally:
        os.close(write_fd)
    child = _Child(request, proc, os.fdopen(read_fd, "rb"), stderr)
    try:
        proc.stdin.write(request.to_json() + "\n")
        proc.stdin.flush()
    except BrokenPipeError:
        pass  # it died at once: its first read says how
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    return child


def _read(child: _Child, deadline: float) -> dict | None:
    """The child's next message; None (and `error` set) when it died, hung past the deadline or spoke nonsense."""
    if child.error:
        return None
    remaining = deadline - time.monotonic()
    ready, _, _ = select.select([child.replies], [], [], max(0.0, remaining))
    line = child.replies.readline() if ready else None
    if line is None:
        child.proc.kill()
        child.error = "worker did not answer in time and was killed"
        return None
    if not line:
        child.proc.wait()
        child.error = _death(child)
        return None
    try:
        return json.loads(line)
    except json.JSONDecodeError:
        child.error = "worker reply unreadable"
        return None


def _death(child: _Child) -> str:
    if child.over_cap:
        return child.over_cap
    child.stderr.seek(0)
    lines = child.stderr.read().decode(errors="replace").strip().splitlines()
    return f"worker failed: {lines[-1] if lines else f'exit code {child.proc.returncode}'}"


def _send(child: _Child, command: dict) -> None:
    try:
        child.proc.stdin.write(json.dumps(command) + "\n")
        child.proc.stdin.flush()
    except (BrokenPipeError, OSError):
        pass  # it died: the next read says how


def run_lockstep(requests: list[Request], memory_cap_mb: float | None = None, timeout_s: float = 900,
                 pythons: list[str] | None = None) -> list[Reply]:
    """Measure every request in lockstep blocks; one Reply each, in order (a failed child: `Reply.failed`).

    `pythons` names each child's interpreter (default: this one), e.g. a side environment that holds
    another onnxruntime release. Every child gets the same number of blocks, so block i pairs across them.
    """
    pythons = pythons or [sys.executable] * len(requests)
    children: list[_Child] = []
    watchdog = None
    try:
        for request, python in zip(requests, pythons):
            children.append(_start(request, python))
        if memory_cap_mb:
            watchdog = MemoryWatchdog([c.proc for c in children], memory_cap_mb,
                                      on_over=lambda i, rss: setattr(children[i], "over_cap", watchdog.passed(i)))
            watchdog.start()
        deadline = time.monotonic() + timeout_s
        for child in children:
            message = _read(child, deadline)
            if message is not None and not message.get("ready"):
                child.reply = _reply(message)
                child.error = child.reply.error or "worker replied before it was ready"
        _cycles(children, timeout_s)
        for child in children:  # one at a time: evaluation and the reference workload run alone
            if child.error:
                continue
            _send(child, {"finish": True})
            message = _read(child, time.monotonic() + timeout_s)
            if message is not None:
                child.reply = _reply(message)
        return [_outcome(child) for child in children]
    finally:
        if watchdog:
            watchdog.stop()
        for child in children:  # clean-up must never replace the exception (Ctrl-C) that brought us here
            with contextlib.suppress(Exception):
                if child.proc.poll() is None:
                    child.proc.kill()
                child.proc.wait()
            for stream in (child.replies, child.stderr, child.proc.stdin):
                with contextlib.suppress(Exception):
                    if stream:
                        stream.close()


def _cycles(children: list[_Child], timeout_s: float) -> None:
    """Blocks in alternating order until every child has its minimums; all living children take part in each cycle."""
    cycle = 0
    while any(child.needs_more() for child in children):
        order = children if cycle % 2 == 0 else children[::-1]
        for child in order:
            if child.error:
                continue
            _send(child, {"run": True})
            message = _read(child, time.monotonic() + timeout_s)
            if message is None:
                continue
            if "ms" not in message:
                child.reply = _reply(message)
                child.error = child.reply.error or "worker stopped mid-run"
                continue
            child.blocks += 1
            child.runs += len(message["ms"])
            child.timed_s += sum(message["ms"]) / 1000
        cycle += 1


def _reply(message: dict) -> Reply:
    try:
        return Reply.from_json(json.dumps(message))
    except ProtocolError as e:
        return Reply.failed(f"worker reply unreadable: {e}")


def _outcome(child: _Child) -> Reply:
    if child.over_cap:
        return Reply.failed(child.over_cap)
    if child.reply is not None and (child.error is None or not child.reply.ok):
        return child.reply
    return Reply.failed(child.error or "worker sent no reply")
