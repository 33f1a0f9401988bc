"""The ssh runner against a real OpenSSH server on 127.0.0.1 (an unprivileged `sshd -D` with throwaway keys).

.ci/run installs openssh-server when it is missing and sets HARNESS_REQUIRE_SSHD=1, so CI fails rather
than skips when no sshd can be started.
"""

from __future__ import annotations

import csv
import getpass
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from conftest import run_cli

from harness.errors import HarnessError
from harness.spec import ASSETS_DIR
from harness.targets import TargetProfile

CALIBRATION = ("--calibration-data", str(ASSETS_DIR / "camvid_train32"))

SSHD = shutil.which("sshd") or next((p for p in ("/usr/sbin/sshd", "/usr/local/sbin/sshd") if os.path.exists(p)), None)


class Sshd:
    """One sshd on a free loopback port, its keys, and a target TOML that reaches it."""

    def __init__(self, folder: Path):
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        for key in ("host_key", "client_key"):
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(folder / key)], check=True)
        shutil.copy(folder / "client_key.pub", folder / "authorized_keys")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        (folder / "sshd_config").write_text(
            f"Port {self.port}\nListenAddress 127.0.0.1\nHostKey {folder / 'host_key'}\n"
            f"AuthorizedKeysFile {folder / 'authorized_keys'}\nPidFile {folder / 'sshd.pid'}\nStrictModes no\n"
            "UsePAM no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\n"
            # bash sources ~/.bashrc for a command over ssh only at SHLVL < 2: this test device skips the user's
            # rc files. CI's ~/.bashrc ran `pyenv rehash`, whose lock a killed session left behind, and every
            # later command waited 60 s on it.
            "SetEnv SHLVL=1\n")
        if os.geteuid() == 0:
            os.makedirs("/run/sshd", exist_ok=True)  # root's sshd wants its privilege-separation folder
        checked = subprocess.run([SSHD, "-t", "-f", str(folder / "sshd_config")], capture_output=True, text=True)
        if checked.returncode != 0 and "SetEnv" in checked.stderr:  # OpenSSH before 8.7: the rc files run there
            config = folder / "sshd_config"
            config.write_text(config.read_text().replace("SetEnv SHLVL=1\n", ""))
        self.log = folder / "sshd.log"  # a file, not a pipe: an unread pipe fills and stalls sshd mid-module
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(folder / "sshd_config")], stderr=log,
                                         start_new_session=True)
        for _ in range(100):
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            if self.proc.poll() is not None:
                raise RuntimeError(f"sshd exited: {self.log.read_text()[-500:]}")
            time.sleep(0.05)
        raise RuntimeError("sshd did not listen within 5 s")

    def target(self, python: str = sys.executable, port: int | None = None, **flat) -> Path:
        options = ["-F", "/dev/null", "-i", str(self.folder / "client_key"), "-o", "IdentitiesOnly=yes",
                   "-o", f"UserKnownHostsFile={self.folder / 'known_hosts'}", "-o", "StrictHostKeyChecking=no"]
        keys = {"description": '"a device over ssh"', "threads": 1, "min_runs": 20, "min_duration_s": 0.2,
                "warmup_runs": 2, "variants": '["fp32", "int8-static"]',
                "runner": f'"ssh://{getpass.getuser()}@127.0.0.1:{port or self.port}"', "python": f'"{python}"',
                "ssh_options": "[" + ", ".join(f'"{o}"' for o in options) + "]", **flat}
        lines = [f"{k} = {v}" for k, v in keys.items()]
        path = self.folder / f"device_{len(list(self.folder.glob('device_*.toml')))}.toml"
        path.write_text("\n".join(lines) + "\n")
        return path

    def kill(self) -> None:
        """The device goes away: the listener and every session it started, at once."""
        family = [psutil.Process(self.proc.pid)]
        family += family[0].children(recursive=True)
        for p in family:
            try:
                p.kill()
            except psutil.NoSuchProcess:
                pass
        self.proc.wait(timeout=10)


def _start(folder: Path) -> Sshd:
    if SSHD is None or shutil.which("ssh") is None:
        if os.environ.get("HARNESS_REQUIRE_SSHD"):
            pytest.fail("sshd or ssh is not installed (apt-get install openssh-server openssh-client)")
        pytest.skip("no OpenSSH server here: apt-get install openssh-server")
    return Sshd(folder)


@pytest.fixture(scope="module")
def sshd(tmp_path_factory):
    server = _start(tmp_path_factory.mktemp("sshd"))
    yield server
    server.kill()


def _rows(results: Path, target: Path) -> dict[tuple[str, str], dict]:
    with open(results / f"{target.stem}.csv", newline="") as f:
        return {(r["model"], r["variant"]): r for r in csv.DictReader(f)}


MATCH_ATTEMPTS = 3  # remote then local, again: a systematic difference repeats, a phase of the shared host does not


@pytest.mark.slow
def test_a_bench_over_ssh_matches_the_local_runner(sshd, baseline_suite, tmp_path):
    remote_target = sshd.target(processes=3)
    local_target = tmp_path / "local.toml"
    local_target.write_text("\n".join(line for line in remote_target.read_text().splitlines()
                                      if not line.startswith(("runner", "python", "ssh_options"))) + "\n")
    folders_before = set(Path("/tmp").glob("harness-remote-*"))
    disagreements = []
    for attempt in range(MATCH_ATTEMPTS):
        results = tmp_path / f"results_{attempt}"
        for target in (remote_target, local_target):
            proc = run_cli("bench", "--target", str(target), "--suite", str(baseline_suite), "--no-gate", *CALIBRATION,
                           "--results-dir", str(results))
            assert proc.returncode == 0, proc.stderr
        remote, local = _rows(results, remote_target), _rows(results, local_target)
        assert set(remote) == set(local) == {("pspnet_resnet18", "fp32"), ("pspnet_resnet18", "int8-static")}
        for key, row in remote.items():
            assert row["status"] == "ok", row["status"]
            assert row["quality_pct"] == local[key]["quality_pct"]  # same model, same images, same runtime
            assert row["measured_on"] == f"ssh://{getpass.getuser()}@127.0.0.1:{sshd.port} ({os.uname().nodename})"
            assert local[key]["measured_on"].startswith("local (")
            assert row["cpu_model"] == local[key]["cpu_model"] and row["ort_version"] == local[key]["ort_version"]
        disagreements.append(_timing_disagreements(remote, local))
        if not disagreements[-1]:
            break
    # Two runs seconds apart on a shared host can meet different hosts: CI once saw int8 at x0.89 of fp32 over ssh
    # and x1.70 locally in one attempt. The same gap in every attempt is the runner's, not the host's.
    assert any(not found for found in disagreements), f"every attempt disagreed: {disagreements}"
    leftovers = set(Path("/tmp").glob("harness-remote-*")) - folders_before
    assert not leftovers, f"the device's folder was not removed: {leftovers}"


def _timing_disagreements(remote: dict, local: dict) -> list[str]:
    """Where the ssh rows' timing is not the local rows': p50 beyond the same order of magnitude, or the paired
    vs-fp32 ratio (measured within each run in lockstep) beyond x0.85..x1.18."""
    found = []
    for key, row in remote.items():
        ratio = float(row["p50_ms"]) / float(local[key]["p50_ms"])
        if not 0.4 < ratio < 2.5:
            found.append(f"{key}: p50 over ssh {row['p50_ms']} ms vs local {local[key]['p50_ms']} ms")
        speedup = float(row["speedup_vs_fp32"]) / float(local[key]["speedup_vs_fp32"])
        if not 0.85 < speedup < 1.18:
            found.append(f"{key}: vs fp32 over ssh {row['speedup_vs_fp32']} vs local {local[key]['speedup_vs_fp32']}")
    return found


def test_the_timing_check_passes_agreement_and_flags_a_gap():
    local = {("m", "fp32"): {"p50_ms": "30.0", "speedup_vs_fp32": "1.0"},
             ("m", "int8-static"): {"p50_ms": "18.0", "speedup_vs_fp32": "1.70"}}
    same = {("m", "fp32"): {"p50_ms": "41.0", "speedup_vs_fp32": "1.0"},  # a slower host: same order, same ratio
            ("m", "int8-static"): {"p50_ms": "25.0", "speedup_vs_fp32": "1.62"}}
    assert _timing_disagreements(same, local) == []
    gap = {**same, ("m", "int8-static"): {"p50_ms": "40.0", "speedup_vs_fp32": "0.89"}}
    assert [line.split(":")[0] for line in _timing_disagreements(gap, local)] == ["('m', 'int8-static')"]


@pytest.mark.slow
def test_a_device_that_dies_mid_run_gives_failed_rows_with_a_reason(tmp_path, baseline_suite):
    server = _start(tmp_path / "dying")
    target = server.target(processes=3, min_duration_s=1.0)
    folders_before = set(Path("/tmp").glob("harness-remote-*"))
    started = time.monotonic()
    bench = subprocess.Popen([sys.executable, "-m", "harness", "bench", "--target", str(target), "--suite",
                              str(baseline_suite), "--no-gate", "--force", *CALIBRATION, "--results-dir", str(tmp_path / "results")],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    seen: set[int] = set()  # the device's measuring launchers: the first one times the runtime floor
    while len(seen) < 2:
        assert bench.poll() is None and time.monotonic() - started < 300, "no model measurement started on the device"
        seen |= _remote_launchers(server.proc.pid)
        time.sleep(0.02)
    server.kill()
    killed = time.monotonic()
    _, stderr = bench.communicate(timeout=120)
    assert time.monotonic() - killed < 60, "the harness hung on a dead connection"
    for folder in set(Path("/tmp").glob("harness-remote-*")) - folders_before:  # a dead device keeps its folder
        shutil.rmtree(folder, ignore_errors=True)
    assert (tmp_path / "results" / f"{target.stem}.csv").is_file(), stderr[-1000:]
    rows = _rows(tmp_path / "results", target)
    failed = [r for r in rows.values() if r["status"] != "ok"]
    assert failed, f"no failed row after the device died: {stderr[-500:]}"
    assert all(f"ssh to {getpass.getuser()}@127.0.0.1 failed" in r["status"] for r in failed), \
        [r["status"] for r in failed]


def _remote_launchers(sshd_pid: int) -> set[int]:
    found = set()
    try:
        family = psutil.Process(sshd_pid).children(recursive=True)
    except psutil.Error:
        return found
    for p in family:
        try:
            command = " ".join(p.cmdline())
            if "harness.measure.remote" in command and "--probe" not in command:
                found.add(p.pid)
        except psutil.Error:  # ended, or a zombie, between listing and reading
            pass
    return found


@pytest.mark.parametrize("case", ["unreachable", "no python", "no onnxruntime"])
def test_bad_devices_are_refused_in_one_line_before_measuring(sshd, baseline_suite, tmp_path, case):
    if case == "unreachable":
        with socket.socket() as s:  # a port nothing listens on
            s.bind(("127.0.0.1", 0))
            target, expected = sshd.target(port=s.getsockname()[1]), "cannot reach"
    elif case == "no python":
        target, expected = sshd.target(python="/nonexistent/python3"), "no '/nonexistent/python3' on"
    else:
        bare = tmp_path / "bare"  # a Python without numpy and onnxruntime
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(bare)], check=True)
        target, expected = sshd.target(python=str(bare / "bin" / "python")), "numpy and onnxruntime missing on"
    proc = run_cli("bench", "--target", str(target), "--suite", str(baseline_suite), *CALIBRATION,
                   "--results-dir", str(tmp_path / "results"), timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert expected in proc.stderr and "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "results").exists()


@pytest.mark.parametrize("runner", ["ssh://", "scp://host", "ray://host:10001"])
def test_a_runner_that_is_not_local_or_ssh_is_refused(runner):
    with pytest.raises(HarnessError, match="use \"local\" or \"ssh://"):
        TargetProfile.from_flat("t", threads=1, runner=runner)


@pytest.mark.slow
def test_lockstep_children_on_the_device_pair_block_by_block(sshd, tmp_path):
    """run_together over ssh: the children run side by side on the device, each with the same cycles."""
    import numpy as np

    from harness.results.measurement import build_request
    from harness.bench.yardsticks import trivial_model
    from harness.runners import make_runner
    from harness.targets import load_target

    target = load_target(str(sshd.target()))
    sample = tmp_path / "sample.npy"
    np.save(sample, np.zeros((3, 32, 32), dtype=np.float32))
    floor, other = trivial_model(tmp_path / "floor.onnx", (32, 32)), trivial_model(tmp_path / "other.onnx", (32, 32))
    runner = make_runner(target)
    try:
        runner.check_target(target)
        replies = runner.run_together([build_request(floor, target, sample), build_request(other, target, sample)])
    finally:
        runner.close()
    assert all(r.ok for r in replies), [r.error for r in replies]
    assert len(replies[0].block_sizes) == len(replies[1].block_sizes) >= 1
    assert all(r.measured_on.startswith("ssh://") for r in replies)
