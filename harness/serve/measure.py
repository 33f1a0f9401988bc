"""A served variant measured: its server process, the load generator beside it, one Measurement per load.

The server runs on the target's CPUs, the load generator on the others where the machine has any.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from harness.results.measurement import Measurement, failed
from harness.serve.codec import target_memory_mb
from harness.serve.config import ServerConfig
from harness.serve.process import ServerProcess, cgroup_figures
from harness.serve.summary import burst_measurement, closed_measurement, open_measurement
from harness.targets import HTTP_LOADS, TargetProfile


def write_images(images_u8: np.ndarray, folder: Path) -> Path:
    """The evaluation images as PNG files, encoded once: what a client would send."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for i, image in enumerate(images_u8):
        Image.fromarray(image).save(folder / f"{i:05d}.png")
    return folder


def server_cpus(target: TargetProfile) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(the server's CPUs, the load generator's): the others where the machine has any, else the same ones."""
    allowed = sorted(os.sched_getaffinity(0))
    mine = tuple(target.device.cpu_affinity or allowed[: target.device.threads])
    others = tuple(c for c in allowed if c not in mine)
    return mine, others or mine


def load_plan(target: TargetProfile, port: int, image_dir: Path, masks_out: Path, cpus: tuple[int, ...]) -> dict:
    scenario, budget_ms = target.scenario, target.budgets.p95_budget_ms
    return {
        "host": "127.0.0.1", "port": port, "image_dir": str(image_dir), "masks_out": str(masks_out),
        "timeout_s": scenario.http_timeout_s, "budget_ms": budget_ms, "cpu_affinity": list(cpus),
        "phases": [
            {"kind": "burst", "size": scenario.images_at_once, "count": scenario.http_bursts,
             "idle_s": scenario.http_burst_idle_s},
            {"kind": "closed", "clients": scenario.images_at_once, "duration_s": scenario.http_closed_s},
            {"kind": "open", "duration_s": scenario.http_open_s, "max_connections": scenario.http_max_connections},
        ],
    }


def measure_served(config: ServerConfig, target: TargetProfile, image_dir: Path, targets_path: Path, workdir: Path,
                   ignore_index: int, masks_out: Path) -> dict[str, Measurement]:
    """{"http-burst" | "http-closed" | "http-open": Measurement} for one variant; every one failed alike if the service broke."""
    from harness.measure.evaluate import confusion_matrix

    cap = target.budgets.memory_cap_mb or None
    if not config.memory_mb:  # the largest image the service takes is derived from the memory it has
        config = dataclasses.replace(config, memory_mb=target_memory_mb(target.budgets))
    server = ServerProcess(config, workdir, cap)
    try:
        why = server.wait_ready()
        if why:
            return {load: failed(why) for load in HTTP_LOADS}
        server_rss = server.ready.get("server_rss_mb")
        mine, others = server_cpus(target)
        plan = load_plan(target, server.ready["port"], image_dir, masks_out, others)
        budget_s = (target.scenario.http_bursts * (target.scenario.http_burst_idle_s + 2) + target.scenario.http_closed_s
                    + 8 * (target.scenario.http_open_s + 2) + 120)
        try:
            proc = subprocess.run([sys.executable, "-m", "harness.serve.loadgen"], input=json.dumps(plan),
                                  capture_output=True, text=True, timeout=budget_s)
        except subprocess.TimeoutExpired:
            return {load: failed(f"the load did not finish within {budget_s:.0f} s") for load in HTTP_LOADS}
        ended = server.ended_why()
        if ended:
            return {load: failed(ended) for load in HTTP_LOADS}
        if proc.returncode != 0:
            last = (proc.stderr.strip().splitlines() or [f"exit code {proc.returncode}"])[-1]
            return {load: failed(f"load generator failed: {last}") for load in HTTP_LOADS}
        seen = json.loads(proc.stdout)
        if seen.get("server_gone"):
            return {load: failed(seen["server_gone"]) for load in HTTP_LOADS}
        if seen["quality"].get("error"):
            return {load: failed(f"quality pass: {seen['quality']['error']}") for load in HTTP_LOADS}
        peak_rss = server.peak_rss_mb()
        cgroup_peak, oom_kills = cgroup_figures(server.proc.pid) if server.cap_by == "cgroup" else (None, None)
    finally:
        server.stop()
    targets = np.load(targets_path)["masks"]
    masks = np.load(masks_out)
    if masks.shape != targets.shape:
        return {load: failed(f"the service answered masks of shape {list(masks.shape[1:])}, the images are "
                             f"{list(targets.shape[1:])}") for load in HTTP_LOADS}
    confusion = sum(confusion_matrix(m.astype(np.int64), t.astype(np.int64), config.num_classes, ignore_index)
                    for m, t in zip(masks, targets))
    common = dict(server_rss_mb=server_rss, memory_cap_by=server.cap_by, cgroup_peak_mb=cgroup_peak, oom_kills=oom_kills)
    base = dict(figures=dict(peak_rss_mb=peak_rss, import_rss_mb=server_rss, load_ms=server.ready.get("load_ms"), first_call_ms=server.ready.get("first_call_ms")),
                cpu_affinity=tuple(server.ready["cpu_affinity"]), confusion=np.asarray(confusion),
                measured_on=f"local http server, load generator on CPUs {','.join(map(str, others))}"
                            + (" (the server's: no spare CPU)" if others == mine else ""))
    budget_ms = target.budgets.p95_budget_ms
    return {
        "http-burst": burst_measurement(seen["burst"], target, budget_ms, base, common),
        "http-closed": closed_measurement(seen["closed"], target, budget_ms, base, common),
        "http-open": open_measurement(seen["open"], target, budget_ms, base, common),
    }
