"""Load test: mixed traffic at a constant rate, then a burst, against the app under gunicorn.

    make load                       # .venv/bin/python bench/load.py
    .venv/bin/python bench/load.py --quick

The setup is bench/pages.py's (the same database, seed, production settings and
``membership/gunicorn_conf.py`` on loopback); only the app is started. Then an open-loop client
sends requests on a fixed schedule, whatever the server's speed: ``--rate`` requests per second
(default 50) for ``--seconds`` (120), then ``--burst-rate`` (200) for ``--burst-seconds`` (30).
Each request is one of: the support page, the home page, the login page, ``/healthz`` (anonymous);
the voting page and My membership (as one of three logged-in patrons); the member API for one of
200 members. A request's latency counts from the moment it was due, so a server that falls
behind shows it (no coordinated omission). Every request is bounded (10 s) and so is the run.

Targets: no 5xx and no failed request in either phase, 95th percentile under 500 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import random
import re
import shutil
import statistics
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import pages as bench  # the page benchmark's setup, from this folder

P95_LIMIT_MS = 500.0
REQUEST_TIMEOUT = 10.0
MAX_CONNECTIONS = 256

# (name, weight): the mix of a newsroom's traffic, most of it anonymous readers.
MIX = [
    ("support", 20),
    ("home", 20),
    ("login page", 10),
    ("healthz", 5),
    ("vote (patron)", 15),
    ("membership (patron)", 10),
    ("member API", 20),
]


# --- a small HTTP/1.1 client on asyncio (keep-alive, Content-Length and chunked bodies) ----------


class Client:
    def __init__(self, port: int) -> None:
        self.port = port
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        self.slots = asyncio.Semaphore(MAX_CONNECTIONS)

    async def get(self, path: str, headers: dict[str, str]) -> int:
        lines = [f"GET {path} HTTP/1.1", f"Host: 127.0.0.1:{self.port}"]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        raw = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        async with self.slots:
            for attempt in range(2):
                reused = attempt == 0 and bool(self.idle)
                if reused:
                    reader, writer = self.idle.pop()
                else:
                    reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
                try:
                    writer.write(raw)
                    await writer.drain()
                    status, keep = await _read_response(reader)
                except (ConnectionError, asyncio.IncompleteReadError):
                    writer.close()
                    if reused:
                        continue  # the server closed an idle keep-alive connection: retry once
                    raise
                except BaseException:  # a timeout cancelled us mid-response
                    writer.close()
                    raise
                if keep:
                    self.idle.append((reader, writer))
                else:
                    writer.close()
                return status
        raise ConnectionError("unreachable")  # pragma: no cover - the loop returns or raises

    def close(self) -> None:
        for _, writer in self.idle:
            writer.close()
        self.idle.clear()


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bool]:
    status_line = await reader.readline()
    if not status_line:
        raise ConnectionError("connection closed before the response")
    version, status = status_line.split(b" ", 2)[:2]
    headers = {}
    while True:
        line = await reader.readline()
        if line in (b"\r\n", b"\n", b""):
            break
        name, _, value = line.partition(b":")
        headers[name.strip().lower()] = value.strip()
    keep = version == b"HTTP/1.1" and headers.get(b"connection", b"").lower() != b"close"
    if b"content-length" in headers:
        await reader.readexactly(int(headers[b"content-length"]))
    elif headers.get(b"transfer-encoding", b"").lower() == b"chunked":
        while True:
            size = int((await reader.readline()).split(b";")[0], 16)
            await reader.readexactly(size + 2)  # the chunk and its CRLF
            if size == 0:
                break
    else:
        await reader.read()  # the body ends with the connection
        keep = False
    return int(status), keep


# --- the schedule --------------------------------------------------------------------------------


@dataclass
class Sample:
    phase: str
    route: str
    outcome: str  # the status code, or the name of the error
    latency_ms: float  # from when the request was due until its response was read


async def one(
    client: Client, phase: str, route: str, path: str, headers: dict[str, str], due: float
) -> Sample:
    try:
        status = await asyncio.wait_for(client.get(path, headers), REQUEST_TIMEOUT)
        outcome = str(status)
    except TimeoutError:
        outcome = "timeout"
    except OSError as exc:
        outcome = type(exc).__name__
    return Sample(phase, route, outcome, (time.perf_counter() - due) * 1000)


async def run_phases(
    port: int,
    phases: list[tuple[str, int, int]],
    requests: dict[str, list[tuple[str, dict[str, str]]]],
    rng: random.Random,
) -> tuple[list[Sample], dict[str, float]]:
    client = Client(port)
    names = [name for name, _ in MIX]
    weights = [weight for _, weight in MIX]
    tasks: list[asyncio.Task[Sample]] = []
    walls = {}
    try:
        for phase, rate, seconds in phases:
            print(f"  {phase}: {rate} requests/s for {seconds} s ...", file=sys.stderr)
            start, cpu = time.perf_counter(), time.process_time()
            for i in range(rate * seconds):
                due = start + i / rate
                delay = due - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                route = rng.choices(names, weights)[0]
                path, headers = rng.choice(requests[route])
                tasks.append(asyncio.create_task(one(client, phase, route, path, headers, due)))
            walls[phase] = time.perf_counter() - start
            walls[f"{phase} client CPU"] = time.process_time() - cpu
        samples = list(await asyncio.gather(*tasks))
    finally:
        client.close()
    return samples, walls


# --- the report ----------------------------------------------------------------------------------


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return 0.0
    # Nearest rank: the smallest value with at least p% of the values at or below it.
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def report(
    samples: list[Sample], phases: list[tuple[str, int, int]], walls: dict[str, float]
) -> None:
    print(
        "| phase | requests | sent at (req/s) | 2xx/3xx | 4xx | 5xx | failed "
        "| p50 (ms) | p95 (ms) | p99 (ms) | max (ms) | result |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for phase, rate, seconds in phases:
        mine = [s for s in samples if s.phase == phase]
        lat = [s.latency_ms for s in mine]
        ok = sum(1 for s in mine if s.outcome[0] in "23" and s.outcome.isdigit())
        c4 = sum(1 for s in mine if s.outcome.startswith("4"))
        c5 = sum(1 for s in mine if s.outcome.startswith("5"))
        failed = sum(1 for s in mine if not s.outcome.isdigit())
        p95 = percentile(lat, 95)
        verdict = "PASS" if c5 == 0 and failed == 0 and p95 < P95_LIMIT_MS else "MISS"
        print(
            f"| {phase} ({rate}/s for {seconds} s) | {len(mine):,} "
            f"| {len(mine) / walls[phase]:.1f} | {ok:,} | {c4} | {c5} | {failed} "
            f"| {percentile(lat, 50):.0f} | {p95:.0f} | {percentile(lat, 99):.0f} "
            f"| {max(lat):.0f} | {verdict} |"
        )
    print()
    print("Per route (all phases): requests, outcomes, p50 / p95 (ms)")
    for route, _ in MIX:
        mine = [s for s in samples if s.route == route]
        if not mine:
            continue
        lat = [s.latency_ms for s in mine]
        outcomes = ", ".join(
            f"{k}: {v}" for k, v in sorted(Counter(s.outcome for s in mine).items())
        )
        print(
            f"- {route}: {len(mine):,} ({outcomes}); "
            f"{percentile(lat, 50):.0f} / {percentile(lat, 95):.0f}"
        )
    for phase, *_ in phases:
        mine = [s.latency_ms for s in samples if s.phase == phase]
        if mine:
            share = walls[f"{phase} client CPU"] / walls[phase]
            print(
                f"{phase}: mean latency {statistics.mean(mine):.0f} ms; "
                f"this client used {share:.0%} of a core while sending"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database", default=bench.DEFAULT_DATABASE)
    parser.add_argument("--members", type=int, default=3000)
    parser.add_argument("--rate", type=int, default=50)
    parser.add_argument("--seconds", type=int, default=120)
    parser.add_argument("--burst-rate", type=int, default=200)
    parser.add_argument("--burst-seconds", type=int, default=30)
    parser.add_argument("--quick", action="store_true", help="20 s steady, 10 s burst")
    parser.add_argument("--workers", type=int, help="WEB_CONCURRENCY")
    parser.add_argument("--worker-threads", type=int, help="GUNICORN_THREADS")
    parser.add_argument("--redis", metavar="URL", help="REDIS_URL for the rate limits")
    args = parser.parse_args()
    if args.quick:
        args.seconds, args.burst_seconds = min(args.seconds, 20), min(args.burst_seconds, 10)
        args.members = min(args.members, 500)
    # Bounded: at most 10 minutes of traffic, whatever the options say.
    if args.rate * args.seconds + args.burst_rate * args.burst_seconds > 200 * 600:
        raise SystemExit("that is more traffic than this test is meant to send")
    if args.seconds + args.burst_seconds > 600:
        raise SystemExit("keep the run under 10 minutes")
    phases = [("steady", args.rate, args.seconds), ("burst", args.burst_rate, args.burst_seconds)]

    rng = random.Random(2026)
    print(f"Seeding {args.database} ...", file=sys.stderr)
    seeded = bench.migrate_and_seed(args.database, args.members, rng)
    extra = {}
    if args.workers:
        extra["WEB_CONCURRENCY"] = str(args.workers)
    if args.worker_threads:
        extra["GUNICORN_THREADS"] = str(args.worker_threads)
    if args.redis:
        extra["REDIS_URL"] = args.redis
    logdir = Path(tempfile.mkdtemp(prefix="bench-load-"))
    env = bench.server_env(args.database, extra)
    app = bench.Gunicorn("app", "wsgi:app", bench.APP_PORT, env, logdir)
    try:
        app.wait_ready("/healthz")
        port = bench.APP_PORT
        cookies = [bench.log_in(port, email) for email in seeded.patrons[:3]]
        key = {"Authorization": f"Bearer {seeded.api_key}"}
        requests = {
            "support": [("/support", {}), ("/support?currency=USD&interval=year", {})],
            "home": [("/", {})],
            "login page": [("/account/login", {})],
            "healthz": [("/healthz", {})],
            "vote (patron)": [("/vote", {"Cookie": c}) for c in cookies],
            "membership (patron)": [("/membership", {"Cookie": c}) for c in cookies],
            "member API": [
                (f"/api/v1/members/{quote(email, safe='@')}", key) for email in seeded.lookups
            ],
        }
        for route, choices in requests.items():
            path, headers = choices[0]
            status = bench.get(port, path, headers)[0]
            if status != 200:
                raise SystemExit(f"{route} ({path}) answered {status} before the test")
        load_before = bench.loadavg()
        samples, walls = asyncio.run(run_phases(port, phases, requests, rng))
        load_after = bench.loadavg()
        rss = [(bench.rss_mb(pid), bench.pss_mb(pid)) for pid in app.workers()]
        settings = bench.gunicorn_settings(env)
        log_tail = app.log_path.read_text(errors="replace")
    finally:
        app.stop()
    shutil.rmtree(logdir, ignore_errors=True)

    print()
    print(f"Machine: {bench.machine()}; load average before {load_before}, after {load_after}")
    print(f"gunicorn: {settings}")
    listed = ", ".join(f"{r:.0f} ({p:.0f})" for r, p in rss)
    print(f"Worker RSS (PSS) after the run, MB: {listed}")
    print()
    report(samples, phases, walls)
    problem = re.compile(r"\bERROR\b|\[CRITICAL\]|WORKER TIMEOUT|Traceback")
    errors = [line for line in log_tail.splitlines() if problem.search(line)]
    print(f"Errors in the gunicorn log: {len(errors)}")
    for line in errors[:10]:
        print(f"  {line[:200]}")


if __name__ == "__main__":
    main()
