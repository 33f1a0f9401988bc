"""The load generator: `python -m harness.serve.loadgen` reads a LoadPlan (JSON) on stdin, writes what it saw on stdout.

Its own process, on CPUs the server does not use where the machine has any, speaking HTTP/1.1 with
keep-alive over asyncio streams (no client library: each request's clock is ours, from the moment it
was due). Loads, after a quality pass that sends every evaluation image once:
- burst: `size` requests at once, `count` times, idle between: how long until the whole burst is answered;
- closed: `clients` clients, each sending its next request when its last one came back;
- open: Poisson arrivals at each rate of a sweep; every request is timed from its *scheduled* send time,
  so a server that falls behind cannot hide its queue behind a client that waited (no coordinated omission).
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import random
import sys
import time
from dataclasses import dataclass

LATE_SEND_MS = 5.0  # a send this much after its scheduled time counts as late (the load generator fell behind)
KEEP_UP_SHARE = 0.9  # open loop: answers must come back at this share of the offered rate for the rate to hold


@dataclass
class Answer:
    """One request as the client saw it; times in seconds on the loop's clock."""

    image: int
    scheduled: float
    sent: float
    done: float
    status: int  # 0: no HTTP answer (connection refused or dropped, or timed out)
    error: str = ""
    timing: str = ""  # the Server-Timing header
    body: bytes = b""

    def row(self, start: float) -> list:
        return [self.image, round((self.scheduled - start) * 1000, 4), round((self.sent - start) * 1000, 4),
                round((self.done - start) * 1000, 4), self.status, self.error, self.timing]


class Client:
    """Keep-alive connections to one server; a connection that failed or timed out is dropped, never reused."""

    def __init__(self, host: str, port: int, timeout_s: float):
        self.host, self.port, self.timeout_s = host, port, timeout_s
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        self.opened = 0
        self.gone = ""  # set when the server refuses connections: no server is listening any more, the load stops

    async def post(self, image: int, body: bytes, scheduled: float, keep_body: bool = False) -> Answer:
        loop = asyncio.get_running_loop()
        sent = loop.time()
        try:
            status, headers, data = await asyncio.wait_for(self._exchange(body), self.timeout_s)
        except asyncio.TimeoutError:
            return Answer(image, scheduled, sent, loop.time(), 0, f"no answer within {self.timeout_s:g} s")
        except (OSError, asyncio.IncompleteReadError, ValueError) as e:
            if isinstance(e, ConnectionRefusedError):
                self.gone = f"the server refused a connection ({e})"
            return Answer(image, scheduled, sent, loop.time(), 0, f"{type(e).__name__}: {e}".strip()[:200])
        done = loop.time()
        error = "" if status == 200 else data.decode(errors="replace").strip()[:200]
        return Answer(image, scheduled, sent, done, status, error, headers.get("server-timing", ""),
                      data if keep_body else b"")

    async def _exchange(self, body: bytes):
        while self.idle and self.idle[-1][0].at_eof():  # closed by the server's keep-alive timeout while idle
            self.idle.pop()[1].close()
        if self.idle:
            reader, writer = self.idle.pop()
        else:
            reader, writer = await asyncio.open_connection(self.host, self.port)
            self.opened += 1
        try:
            writer.write(b"POST /segment HTTP/1.1\r\nHost: %s\r\nContent-Type: application/octet-stream\r\n"
                         b"Content-Length: %d\r\n\r\n" % (self.host.encode(), len(body)) + body)
            await writer.drain()
            status_line = await reader.readline()
            if not status_line:
                raise ConnectionResetError("the server closed the connection without answering")
            status = int(status_line.split()[1])
            headers = {}
            while (line := await reader.readline()) not in (b"\r\n", b"\n", b""):
                name, _, value = line.decode("latin-1").partition(":")
                headers[name.strip().lower()] = value.strip()
            data = await reader.readexactly(int(headers.get("content-length", "0")))
        except BaseException:
            writer.close()  # cancelled (timeout) or broken: this connection's state is unknown
            raise
        if headers.get("connection", "").lower() == "close":
            writer.close()
        else:
            self.idle.append((reader, writer))
        return status, headers, data

    def close(self) -> None:
        for _, writer in self.idle:
            writer.close()
        self.idle.clear()


async def quality_pass(client: Client, images: list[bytes], masks_out: str | None) -> dict:
    """Every evaluation image once, one at a time; the masks the service returned, decoded, for the quality figures."""
    import numpy as np
    from PIL import Image

    loop = asyncio.get_running_loop()
    answers, masks = [], []
    for i, body in enumerate(images):
        answer = await client.post(i, body, loop.time(), keep_body=True)
        answers.append(answer)
        if answer.status != 200:
            return {"error": f"image {i + 1} of {len(images)}: HTTP {answer.status or 'no answer'}: {answer.error}"}
        try:
            masks.append(np.asarray(Image.open(io.BytesIO(answer.body))))
        except OSError as e:
            return {"error": f"image {i + 1} of {len(images)}: the answer is not a PNG mask ({e})"}
    if masks_out:
        np.save(masks_out, np.stack(masks).astype(np.uint8))
    return {"n": len(answers), "error": ""}


async def burst_load(client: Client, images: list[bytes], size: int, count: int, idle_s: float) -> dict:
    loop = asyncio.get_running_loop()
    start, bursts, answers = loop.time(), [], []
    for b in range(count):
        if client.gone:
            break
        t0 = loop.time()
        got = await asyncio.gather(*(client.post((b * size + i) % len(images), images[(b * size + i) % len(images)], t0)
                                     for i in range(size)))
        bursts.append(round((max(a.done for a in got) - t0) * 1000, 4))
        answers += got
        await asyncio.sleep(idle_s)
    return {"bursts_ms": bursts, "answers": [a.row(start) for a in answers], "duration_s": loop.time() - start}


async def closed_load(client: Client, images: list[bytes], clients: int, duration_s: float) -> dict:
    loop = asyncio.get_running_loop()
    start = loop.time()
    end, answers, counter = start + duration_s, [], iter(range(10**9))

    async def one_client():
        while loop.time() < end and not client.gone:
            i = next(counter) % len(images)
            answers.append(await client.post(i, images[i], loop.time()))

    await asyncio.gather(*(one_client() for _ in range(clients)))
    return {"answers": [a.row(start) for a in answers], "duration_s": loop.time() - start}


async def open_load(client: Client, images: list[bytes], rate_per_s: float, duration_s: float, max_connections: int,
                    seed: int) -> dict:
    """Poisson arrivals for `duration_s`; at most `max_connections` requests in flight (a send waits for one)."""
    loop = asyncio.get_running_loop()
    rng = random.Random(seed)
    start = loop.time() + 0.05
    due, schedule = start, []
    while (due := due + rng.expovariate(rate_per_s)) < start + duration_s:
        schedule.append(due)
    slots = asyncio.Semaphore(max_connections)
    tasks = []

    async def one(index: int, scheduled: float):
        async with slots:
            i = index % len(images)
            return await client.post(i, images[i], scheduled)

    for index, scheduled in enumerate(schedule):
        if client.gone:
            break
        delay = scheduled - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(index, scheduled)))
    answers = await asyncio.gather(*tasks)
    return {"rate_per_s": rate_per_s, "answers": [a.row(start) for a in answers], "duration_s": loop.time() - start,
            "scheduled": len(schedule)}


def rate_held(rows: list[list], budget_ms: float) -> bool:
    """An open-loop rate held: p95 from the scheduled send in budget, nothing lost, and the answers kept up with
    the arrivals (a server falling behind, its queue growing, can stay in budget for a short run, not keep the rate)."""
    import numpy as np

    latencies = [r[3] - r[1] for r in rows]
    if not latencies or any(r[4] != 200 for r in rows):
        return False
    if budget_ms and float(np.percentile(latencies, 95)) > budget_ms:
        return False
    return _queue_growth(rows) <= 1 / KEEP_UP_SHARE - 1


def _queue_growth(rows: list[list]) -> float:
    """Milliseconds of latency gained per millisecond of arrivals, last quarter against first, by medians.

    A server answering at a share s of the offered rate adds 1/s - 1 of waiting per unit of time; medians of
    quarters keep one slow answer (a slow phase of the host at the run's end) from reading as a growing queue."""
    import numpy as np

    ordered = sorted(rows, key=lambda r: r[1])
    quarter = max(1, len(ordered) // 4)
    head, tail = ordered[:quarter], ordered[-quarter:]
    span_ms = float(np.median([r[1] for r in tail]) - np.median([r[1] for r in head]))
    if span_ms <= 0:  # one row, or arrivals all at one instant
        return 0.0
    gained_ms = float(np.median([r[3] - r[1] for r in tail]) - np.median([r[3] - r[1] for r in head]))
    return gained_ms / span_ms


async def run_plan(plan: dict) -> dict:
    client = Client(plan["host"], plan["port"], plan["timeout_s"])
    images = [open(os.path.join(plan["image_dir"], name), "rb").read() for name in sorted(os.listdir(plan["image_dir"]))]
    out: dict = {"opened_connections": 0}
    try:
        quality = await quality_pass(client, images, plan.get("masks_out"))
        out["quality"] = quality
        if quality.get("error"):
            return out
        for phase in plan["phases"]:
            if client.gone:
                break
            kind = phase["kind"]
            if kind == "burst":
                out["burst"] = await own_cpu(burst_load(client, images, phase["size"], phase["count"], phase["idle_s"]))
            elif kind == "closed":
                out["closed"] = await own_cpu(closed_load(client, images, phase["clients"], phase["duration_s"]))
            elif kind == "open":
                out["open"] = await open_sweep(client, images, phase, plan["budget_ms"], out.get("closed"))
    finally:
        out["opened_connections"], out["server_gone"] = client.opened, client.gone
        client.close()
    return out


async def open_sweep(client: Client, images: list[bytes], phase: dict, budget_ms: float, closed: dict | None) -> list:
    """Rising rates until one breaks the budget (p95 from the scheduled time) or loses requests.

    Rates are fractions of the closed loop's throughput unless the plan lists them."""
    rates = phase.get("rates") or []
    if not rates and closed and closed["answers"]:
        capacity = sum(1 for r in closed["answers"] if r[4] == 200) / closed["duration_s"]
        rates = [round(capacity * f, 3) for f in phase.get("fractions", (0.5, 0.75, 0.9, 1.0, 1.1, 1.25))]
    runs = []
    for k, rate in enumerate(r for r in rates if r > 0):
        run = await own_cpu(open_load(client, images, rate, phase["duration_s"], phase["max_connections"], seed=k))
        runs.append(run)
        if client.gone:
            break
        if not rate_held(run["answers"], budget_ms):
            break
        await asyncio.sleep(phase.get("idle_s", 0.5))
    return runs


async def own_cpu(load) -> dict:
    """A load's result with the load generator's own CPU use while it ran (percent of one CPU): a client that took a
    large share of the server's cores perturbed what it measured, and its rows say so."""
    cpu_s, wall_s = time.process_time(), time.monotonic()
    result = await load
    result["client_cpu_pct"] = round(100 * (time.process_time() - cpu_s) / max(time.monotonic() - wall_s, 1e-9), 1)
    return result


def main() -> int:
    from harness.measure import die_with_parent

    die_with_parent()
    plan = json.loads(sys.stdin.read())
    if plan.get("cpu_affinity"):
        os.sched_setaffinity(0, plan["cpu_affinity"])
    started = time.time()
    out = asyncio.run(run_plan(plan))
    out["wall_s"] = time.time() - started
    sys.stdout.write(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
