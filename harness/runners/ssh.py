"""Measure on a device over SSH, with the system OpenSSH client (the user's ~/.ssh/config, keys, agent, jump hosts).

The runner copies the few modules the measuring child needs into a temporary folder on the device, stages
each model and data file there once, and runs `python -m harness.measure.remote` per measurement: the memory
cap and the timeout are enforced on the device; the controller waits at most the timeout plus a margin.
A dead connection is a failed measurement with ssh's own words, never a hang. One multiplexed
connection (ControlMaster) carries every call of a run.
"""

from __future__ import annotations

import base64
import dataclasses
import io
import json
import os
import shlex
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path
from urllib.parse import urlsplit

from harness.errors import HarnessError
from harness.measure.protocol import Reply, Request
from harness.runners import PACKAGE_ROOT, RemoteLockstep, child_package_files
CONNECT_TIMEOUT_S = 10
ALIVE_INTERVAL_S = 5  # a silent connection is declared dead after ALIVE_INTERVAL_S * ALIVE_COUNT
ALIVE_COUNT = 3
REPLY_MARGIN_S = 30  # beyond the device-side timeout: transfer of the reply, a slow device's start-up
SSH_FAILED = 255  # ssh's exit status for its own errors (no route, refused, closed, auth)


class SshRunner(RemoteLockstep):
    """`python -m harness.measure.remote` on the device a target's `runner = "ssh://[user@]host[:port]"` names."""

    name = "ssh"

    def __init__(self, device):
        url = urlsplit(device.runner)
        if url.scheme != "ssh" or not url.hostname:
            raise HarnessError(f"runner = '{device.runner}' is not ssh://[user@]host[:port]")
        self.url, self.python = device.runner, device.python
        self.destination = f"{url.username}@{url.hostname}" if url.username else url.hostname
        self._control_dir = tempfile.mkdtemp(prefix="harness-ssh-")
        self._args = ["ssh", "-o", "BatchMode=yes", "-o", f"ConnectTimeout={CONNECT_TIMEOUT_S}",
                      "-o", f"ServerAliveInterval={ALIVE_INTERVAL_S}", "-o", f"ServerAliveCountMax={ALIVE_COUNT}",
                      "-o", "ControlMaster=auto", "-o", f"ControlPath={self._control_dir}/%C", "-o", "ControlPersist=60",
                      *(["-p", str(url.port)] if url.port else []), *device.ssh_options, self.destination]
        self._folder: str | None = None
        self._staged: dict[tuple, str] = {}
        self._hostname = url.hostname

    def _ssh(self, command: str, stdin: bytes | str | None = None, timeout_s: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run([*self._args, command], input=stdin, capture_output=True, timeout=timeout_s,
                              text=isinstance(stdin, str))

    def check_target(self, target) -> None:
        """Reach the device, stage the child's modules, and check Python, numpy, onnxruntime and the CPUs there."""
        try:
            self._prepare_device(target)
        except subprocess.TimeoutExpired:
            raise HarnessError(f"{target.where}: {self.destination} did not answer over ssh within 60 s; "
                              f"`ssh {self.destination} true` must return at once (a start-up file there that "
                              f"waits delays every command)") from None

    def _prepare_device(self, target) -> None:
        made = self._ssh("mktemp -d /tmp/harness-remote-XXXXXX")
        if made.returncode != 0:
            raise HarnessError(f"{target.where}: cannot reach {self.destination} over ssh ({_last_line(made.stderr)}); "
                               f"`ssh {self.destination}` must work in your shell without a password prompt")
        self._folder = made.stdout.decode().strip()
        unpacked = self._ssh(f"tar -xf - -C {shlex.quote(self._folder)}", stdin=_child_modules_tar())
        if unpacked.returncode != 0:
            raise HarnessError(f"{target.where}: could not copy the measuring child to {self.destination}:"
                               f"{self._folder} ({_last_line(unpacked.stderr)})")
        probed = self._ssh(f"{self._in_folder()} {shlex.quote(self.python)} -m harness.measure.remote --probe")
        if probed.returncode == 127 or b"not found" in probed.stderr or b"No such file" in probed.stderr:
            raise HarnessError(f"{target.where}: no '{self.python}' on {self.destination}; install Python 3 there or "
                               f"set python = \"/path/to/python3\" in the target")
        if probed.returncode != 0:
            raise HarnessError(f"{target.where}: '{self.python}' on {self.destination} failed: {_last_line(probed.stderr)}")
        try:
            found = json.loads(probed.stdout)
        except ValueError:
            raise HarnessError(f"{target.where}: '{self.python}' on {self.destination} did not answer the probe "
                               f"(got {probed.stdout[:80]!r}); is it a Python 3?") from None
        if found["missing"]:
            raise HarnessError(f"{target.where}: {' and '.join(found['missing'])} missing on {self.destination} for "
                               f"{self.python}; install there: {self.python} -m pip install numpy onnxruntime")
        self._hostname = found["hostname"] or self._hostname
        _check_cpus(target, found["cpus"], self.destination)

    def _in_folder(self) -> str:
        return f"cd {shlex.quote(self._folder)} && PYTHONPATH=. exec"

    def _stage(self, local: str) -> str:
        """The device's copy of a local file, copied once per run (keyed by path, size and modification time)."""
        stat = os.stat(local)
        key = (local, stat.st_size, stat.st_mtime_ns)
        if key not in self._staged:
            remote = f"{self._folder}/staged_{len(self._staged)}_{Path(local).name}"
            with open(local, "rb") as f:
                copied = self._ssh(f"cat > {shlex.quote(remote)}", stdin=f.read(), timeout_s=600)
            if copied.returncode != 0:
                raise ConnectionError(f"ssh to {self.destination} failed while copying {Path(local).name}: "
                                      f"{_last_line(copied.stderr)}")
            self._staged[key] = remote
        return self._staged[key]

    def _measure(self, requests: list[Request], memory_cap_mb, timeout_s: float, together: bool) -> list[Reply]:
        if self._folder is None:
            return [Reply.failed("ssh runner used before check_target staged the child")] * len(requests)
        try:
            on_device = [dataclasses.replace(
                request, onnx_path=self._stage(request.onnx_path), sample_path=self._stage(request.sample_path),
                eval_path=self._stage(request.eval_path) if request.eval_path else None,
                reference_path=self._stage(request.reference_path) if request.reference_path else None,
                predictions_path=f"{self._folder}/predictions_{i}.npy" if request.predictions_path else None)
                for i, request in enumerate(requests)]
            stdin = json.dumps([r.to_json() for r in on_device]) if together else on_device[0].to_json()
            done = self._ssh(f"{self._in_folder()} {shlex.quote(self.python)} -m harness.measure.remote "
                             f"--memory-cap-mb {memory_cap_mb or 0} --timeout-s {timeout_s}{' --together' * together}",
                             stdin=stdin, timeout_s=timeout_s + REPLY_MARGIN_S)
        except ConnectionError as e:
            return [Reply.failed(str(e))] * len(requests)
        except subprocess.TimeoutExpired:
            return [Reply.failed(f"{self.destination} sent no reply within {timeout_s + REPLY_MARGIN_S:.0f} s; "
                                 f"the connection was dropped")] * len(requests)
        if done.returncode == SSH_FAILED or not done.stdout.strip():
            return [Reply.failed(f"ssh to {self.destination} failed mid-measurement: {_last_line(done.stderr)}")] \
                * len(requests)
        try:
            envelopes = json.loads(done.stdout)
            envelopes = envelopes if together else [envelopes]
            replies = [Reply.from_json(envelope["reply"]) for envelope in envelopes]
        except (ValueError, KeyError, TypeError) as e:
            return [Reply.failed(f"unreadable reply from {self.destination}: {e}")] * len(requests)
        if len(replies) != len(requests):
            return [replies[0] if not replies[0].ok else Reply.failed(f"{self.destination} answered "
                                                                      f"{len(replies)} of {len(requests)} requests")] * len(requests)
        for request, envelope in zip(requests, envelopes):
            if request.predictions_path and "predictions_b64" in envelope:
                Path(request.predictions_path).write_bytes(base64.b64decode(envelope["predictions_b64"]))
        return [dataclasses.replace(reply, measured_on=f"{self.url} ({self._hostname})") for reply in replies]

    def close(self) -> None:
        """Remove the device's folder and end the shared connection; a dead device leaves its /tmp folder."""
        try:
            if self._folder:
                self._ssh(f"rm -rf {shlex.quote(self._folder)}", timeout_s=15)
            subprocess.run([*self._args[:-1], "-O", "exit", self.destination], capture_output=True, timeout=15)
        except (subprocess.TimeoutExpired, OSError):
            pass
        shutil.rmtree(self._control_dir, ignore_errors=True)
        self._folder = None


def _check_cpus(target, cpus: list[int], destination: str) -> None:
    device = target.device
    if device.threads > len(cpus):
        raise HarnessError(f"{target.where}: threads = {device.threads} but {destination} lets a process use "
                           f"{len(cpus)} cores; set threads <= {len(cpus)}")
    outside = sorted(set(device.cpu_affinity or ()) - set(cpus))
    if outside:
        raise HarnessError(f"{target.where}: cpu_affinity names CPU {outside[0]}, not available on {destination} "
                           f"(available: {cpus})")


def _child_modules_tar() -> bytes:
    """The harness modules the measuring child imports, as a tar stream (standard library, numpy, onnxruntime)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name in child_package_files():
            tar.add(PACKAGE_ROOT / name, arcname=f"harness/{name}")
    return buffer.getvalue()


def _last_line(stderr: bytes | str) -> str:
    text = stderr.decode(errors="replace") if isinstance(stderr, bytes) else stderr
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "no message"
