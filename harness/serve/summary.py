"""From what the load generator saw to one Measurement per load: burst, closed loop, open loop."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from harness.results.measurement import LatencyStats, Measurement, failed
from harness.serve.app import TIMING_PARTS, parse_server_timing
from harness.targets import TargetProfile


@dataclass(frozen=True)
class ServedFigures:
    """What a served row holds beyond a latency distribution (schema 6 columns)."""

    load: str  # the load in words: "100 bursts of 10", "10 clients for 10 s", the open-loop sweep
    max_ms: float | None
    duration_s: float
    errors: int  # answers other than 200, and requests that got no answer
    timeouts: int
    late_sends: int  # open loop: sends more than LATE_SEND_MS after their scheduled time
    held_rate_per_s: float | None  # open loop: the highest rate whose p95 stayed in budget with nothing lost
    within_budget_pct: float | None  # bursts (or requests) answered within the p95 budget
    server_split_ms: str  # the server's median time per part of a request, from Server-Timing
    server_rss_mb: float | None  # the server process with its whole stack imported, before the model
    memory_cap_by: str  # "cgroup" or "watchdog (why no cgroup)"
    cgroup_peak_mb: float | None
    oom_kills: int | None


def _split(rows: list[list]) -> str:
    parts = {name: [] for name in TIMING_PARTS}
    for row in rows:
        for name, ms in parse_server_timing(row[6]).items():
            if name in parts:
                parts[name].append(ms)
    return "; ".join(f"{name} {np.median(v):.2f}" for name, v in parts.items() if v)


def _counts(rows: list[list]) -> tuple[int, int]:
    errors = sum(1 for r in rows if r[4] != 200)
    timeouts = sum(1 for r in rows if r[4] == 0 and r[5].startswith("no answer within"))
    return errors, timeouts


def _measurement(latencies_ms, rows, per_s, base: dict, figures: ServedFigures) -> Measurement:
    if not latencies_ms:
        return failed("no request was answered")
    errors, _ = _counts(rows)
    if errors == len(rows):
        first = next(r[5] for r in rows if r[4] != 200)
        return failed(f"every request failed ({first})")
    latencies = tuple(float(x) for x in latencies_ms)
    return dataclasses.replace(
        failed(""), error=None, latencies_ms=latencies, latency=LatencyStats.from_samples(latencies),
        per_process_latencies_ms=(latencies,), served=figures,
        **{**base, "figures": {**base["figures"], "images_per_s": per_s}})


def client_cpu(seen: dict) -> str:
    """The load generator's own CPU use during a load, for the row's load column."""
    pct = seen.get("client_cpu_pct")
    return f"; load generator {pct:.1f} % of a CPU" if pct is not None else ""


def _figures(load: str, latencies, rows, duration_s, budget_ms, common: dict, **extra) -> ServedFigures:
    errors, timeouts = _counts(rows)
    within = extra.pop("within_budget_pct", None)
    if within is None and budget_ms and rows:
        within = 100 * sum(1 for r, lat in zip(rows, latencies) if r[4] == 200 and lat <= budget_ms) / len(rows)
    return ServedFigures(load=load, max_ms=float(max(latencies)) if len(latencies) else None, duration_s=duration_s,
                         errors=errors, timeouts=timeouts, late_sends=extra.pop("late_sends", 0),
                         held_rate_per_s=extra.pop("held_rate_per_s", None), within_budget_pct=within,
                         server_split_ms=_split(rows), **common)


def burst_measurement(seen: dict, target: TargetProfile, budget_ms: float, base: dict, common: dict) -> Measurement:
    """Each burst's latency is until its last answer: what a client with 10 images waits for."""
    rows, bursts = seen["answers"], seen["bursts_ms"]
    size = target.scenario.images_at_once
    failed_bursts = {i // size for i, r in enumerate(rows) if r[4] != 200}
    within = (100 * sum(1 for i, ms in enumerate(bursts) if i not in failed_bursts and ms <= budget_ms) / len(bursts)
              if budget_ms and bursts else None)
    answered = sum(1 for r in rows if r[4] == 200)
    per_s = answered / (sum(bursts) / 1000) if bursts else None
    figures = _figures(f"{len(bursts)} bursts of {size}, {target.scenario.http_burst_idle_s:g} s idle between"
                       f"{client_cpu(seen)}", bursts,
                       rows, seen["duration_s"], budget_ms, common, within_budget_pct=within)
    return _measurement(bursts, rows, per_s, base, figures)


def closed_measurement(seen: dict, target: TargetProfile, budget_ms: float, base: dict, common: dict) -> Measurement:
    rows = seen["answers"]
    latencies = [r[3] - r[2] for r in rows]  # a closed-loop client sends when it is ready: from the send
    answered = sum(1 for r in rows if r[4] == 200)
    figures = _figures(f"{target.scenario.images_at_once} clients for {seen['duration_s']:.1f} s{client_cpu(seen)}",
                       latencies, rows,
                       seen["duration_s"], budget_ms, common)
    return _measurement(latencies, rows, answered / seen["duration_s"], base, figures)


def open_measurement(runs: list[dict], target: TargetProfile, budget_ms: float, base: dict, common: dict) -> Measurement:
    """The row is the highest rate that held (p95 from the scheduled send within budget, nothing lost); the
    lowest rate tried when none did."""
    from harness.serve.loadgen import LATE_SEND_MS, rate_held

    if not runs:
        return failed("the open loop ran no rate (the closed loop answered nothing to size it from)")

    def held(run) -> bool:
        return rate_held(run["answers"], budget_ms)

    passed = [run for run in runs if held(run)]
    chosen = passed[-1] if passed else runs[0]
    rows = chosen["answers"]
    latencies = [r[3] - r[1] for r in rows]
    sweep = ", ".join(f"{run['rate_per_s']:g}" for run in runs)
    last = runs[-1]
    last_lat = [r[3] - r[1] for r in last["answers"]]
    broke = "" if last is chosen else (f"; at {last['rate_per_s']:g}/s p95 {np.percentile(last_lat, 95):.0f} ms, "
                                       f"{_counts(last['answers'])[0]} failed" if last_lat else "")
    load = (f"Poisson arrivals at {sweep} req/s ({target.scenario.http_open_s:g} s each), timed from the scheduled send; "
            f"held {chosen['rate_per_s']:g}/s" if passed else
            f"Poisson arrivals at {sweep} req/s; none held the budget, row at {chosen['rate_per_s']:g}/s") + broke \
        + client_cpu(chosen)
    late = sum(1 for r in rows if r[2] - r[1] > LATE_SEND_MS)
    answered = sum(1 for r in rows if r[4] == 200)
    figures = _figures(load, latencies, rows, chosen["duration_s"], budget_ms, common, late_sends=late,
                       held_rate_per_s=chosen["rate_per_s"] if passed else 0.0)
    return _measurement(latencies, rows, answered / chosen["duration_s"], base, figures)
