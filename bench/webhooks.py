"""Benchmark: a burst of Stripe webhooks through the queue, against localstripe.

    .venv/bin/python bench/webhooks.py                 # 100 events/s for 60 s, 200 members
    .venv/bin/python bench/webhooks.py --quick         # 10 s, 50 members: to try it
    .venv/bin/python bench/webhooks.py --rate 100 --seconds 60 --members 200 \\
        --database postgresql://postgres@127.0.0.1:5432/membership_bench_webhooks

What it sets up, all on loopback: the PostgreSQL database you name (created if missing, emptied,
migrated), a redis-server of its own (or, with ``--redis``, the Redis database you name, which it
empties: give it one that nothing else uses), localstripe (a process of its own), an SMTP server
that accepts everything, the app under gunicorn (``--web-workers``,
``MEMBERSHIP_ENV=production``, ``REDIS_URL`` set) and ``--queue-workers`` processes of
``flask --app wsgi worker``. Then ``--members`` members join (customer, card, subscription in
localstripe, recorded as joining records them) and Stripe changes a third of them behind the
app's back (canceled, switched to another plan, set to cancel at the period's end), so that only
the webhooks can bring the app to Stripe's state.

Two sends of signed events (``customer.subscription.*``, ``invoice.payment_succeeded``,
``customer.updated`` for those members; ``--duplicates`` of them sent twice; shuffled):

1. paced: ``--rate`` events a second for ``--seconds``, from an asyncio client; every answer
   and its latency is recorded;
2. ceiling: as fast as wrk can send them (``--ceiling-seconds``, one connection per wrk thread,
   so that each answer is matched to its event), to find how many events a second the endpoint
   can acknowledge. The queue workers are paused meanwhile (RQ's suspend; keep them running
   with ``--ceiling-with-workers``), so the two figures do not share the CPU: acks while wrk
   sends, then the workers' own rate on the backlog it left.

After each send it waits for the queue to drain. Then it checks: every event that was answered
2xx is stored and processed (lost = 0), every stored event is processed once, nothing is left
in the queue, its retries or its failed jobs, and every member's subscription (status, plan,
cancel at period end) and patron standing equal Stripe's. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import json
import os
import platform
import random
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import redis
import sqlalchemy as sa
from rq.suspension import resume, suspend

_HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = Path(_HERE).parent
VENV_BIN = Path(sys.executable).parent
WRK = "/usr/bin/wrk"
DEFAULT_DATABASE = "postgresql://postgres@127.0.0.1:5432/membership_bench_webhooks"
# Throwaway values for a throwaway database and localstripe (which accepts any sk_test_ key).
SECRET_KEY = "sk_test_bench_webhooks"  # noqa: S105
PUBLISHABLE_KEY = "pk_test_bench_webhooks"
WEBHOOK_SECRET = "whsec_bench_webhooks"  # noqa: S105
APP_SECRET = "bench-webhooks-secret-key-that-is-long-enough-0123456789"  # noqa: S105
ACK_TARGET = 500.0  # events a second the endpoint must acknowledge (the target)
Json = dict[str, Any]

# wrk, one connection per thread: answers come back in the order the requests went out, so each
# answer is matched to its event and written down (status, event id) as it arrives. wrk calls
# request() once more on its first thread before sending anything (to count pipelined requests):
# that call must not use up an event, or every answer of that thread would name the wrong one.
WRK_SCRIPT = r"""
local threads = 0
function setup(thread)
  thread:set("id", threads)
  threads = threads + 1
end
function init(args)
  local dir = args[1]
  events = {}
  for line in io.lines(dir .. "/events-" .. id .. ".tsv") do
    local a = line:find("\t", 1, true)
    local b = line:find("\t", a + 1, true)
    events[#events + 1] = {line:sub(1, a - 1), line:sub(a + 1, b - 1), line:sub(b + 1)}
  end
  sent, answered, inflight = 0, 0, {}
  checked = id ~= 0
  out = io.open(dir .. "/answers-" .. id .. ".txt", "w")
end
local function format(e)
  return wrk.format("POST", "/webhooks/stripe",
    {["Content-Type"] = "application/json", ["Stripe-Signature"] = e[2]}, e[3])
end
function request()
  if not checked then
    checked = true
    return format(events[1])
  end
  sent = sent + 1
  local e = events[((sent - 1) % #events) + 1]
  inflight[sent] = e[1]
  return format(e)
end
function response(status, headers, body)
  answered = answered + 1
  out:write(status, " ", inflight[answered], "\n")
  out:flush()
  inflight[answered] = nil
end
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(url: str, process: subprocess.Popen[bytes], what: str, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            urllib.request.urlopen(url, timeout=1).close()  # noqa: S310 - our own http URL
            return
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"{what} did not start (see its log)") from None
            time.sleep(0.1)


def signature(body: bytes) -> str:
    t = int(time.time())
    mac = hmac.new(WEBHOOK_SECRET.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


# --- the world: database, Redis, localstripe, SMTP, the app and its workers -------------------


def prepare_database(url: str) -> str:
    from membership.config import normalise_database_url

    url = normalise_database_url(url)
    target = sa.make_url(url)
    admin = sa.create_engine(target.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        exists = conn.scalar(
            sa.text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": target.database}
        )
        if not exists:
            conn.execute(sa.text(f'CREATE DATABASE "{target.database}"'))
    admin.dispose()
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("DROP SCHEMA public CASCADE"))
        conn.execute(sa.text("CREATE SCHEMA public"))
    engine.dispose()
    return url


@dataclass
class World:
    database: str
    redis_url: str
    tmp: Path
    stripe_base: str = ""
    smtp_port: int = 0
    app_url: str = ""
    gunicorn: int = 0
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)
    smtp: Any = None
    mails: list[bytes] = field(default_factory=list)

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "MEMBERSHIP_ENV": "production",
            "SECRET_KEY": APP_SECRET,
            "BASE_URL": "https://members.example.org",
            "DATABASE_URL": self.database,
            "REDIS_URL": self.redis_url,
            "SMTP_HOST": "127.0.0.1",
            "SMTP_PORT": str(self.smtp_port),
            "SMTP_STARTTLS": "false",
            "STRIPE_SECRET_KEY": SECRET_KEY,
            "STRIPE_PUBLISHABLE_KEY": PUBLISHABLE_KEY,
            "STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET,
            "STRIPE_API_BASE": self.stripe_base,
        }

    def spawn(self, args: list[str], log: str) -> subprocess.Popen[bytes]:
        handle = open(self.tmp / log, "ab")  # noqa: SIM115 - closed with the process
        process = subprocess.Popen(
            args, cwd=ROOT, env=self.env(), stdout=handle, stderr=subprocess.STDOUT
        )
        self.processes.append(process)
        return process

    def start_redis(self) -> None:
        """A redis-server for this run alone: nothing else can flush it or take its jobs."""
        port = free_port()
        args = ["redis-server", "--bind", "127.0.0.1", "--port", str(port), "--save", ""]
        process = self.spawn([*args, "--appendonly", "no"], "redis.log")
        self.redis_url = f"redis://127.0.0.1:{port}/0"
        deadline = time.monotonic() + 10
        while True:
            try:
                redis.Redis.from_url(self.redis_url).ping()
                return
            except redis.exceptions.ConnectionError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit("redis-server did not start") from None
                time.sleep(0.05)

    def start_localstripe(self) -> None:
        port = free_port()
        process = self.spawn(
            [sys.executable, "-m", "tests.support.localstripe_server", "--port", str(port)],
            "localstripe.log",
        )
        self.stripe_base = f"http://127.0.0.1:{port}"
        wait_for(f"{self.stripe_base}/js.stripe.com/v3/", process, "localstripe")

    def start_smtp(self) -> None:
        from aiosmtpd.controller import Controller

        world = self

        class Sink:
            async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
                world.mails.append(envelope.content)
                return "250 OK"

        self.smtp_port = free_port()
        self.smtp = Controller(Sink(), hostname="127.0.0.1", port=self.smtp_port)
        self.smtp.start()

    def start_app(self, web_workers: int, threads: int) -> None:
        port = free_port()
        args = [str(VENV_BIN / "gunicorn"), "--workers", str(web_workers), "--bind"]
        args += [f"127.0.0.1:{port}", "--log-level", "warning"]
        if threads > 1:
            args += ["--threads", str(threads)]
        process = self.spawn([*args, "wsgi:app"], "gunicorn.log")
        self.gunicorn = process.pid
        self.app_url = f"http://127.0.0.1:{port}"
        wait_for(f"{self.app_url}/healthz", process, "gunicorn")

    def web_cpu_seconds(self) -> float:
        """CPU time used so far by gunicorn and its workers (Linux /proc; 0 elsewhere)."""
        total = 0.0
        tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue  # the process is gone
            pid, ppid = int(stat.parent.name), int(fields[1])
            if self.gunicorn in (pid, ppid):
                total += (int(fields[11]) + int(fields[12])) / tick
        return total

    def start_workers(self, count: int) -> None:
        from rq import Worker

        for n in range(count):
            args = [str(VENV_BIN / "flask"), "--app", "wsgi", "worker"]
            self.workers.append(self.spawn(args, f"worker-{n}.log"))
        connection = redis.Redis.from_url(self.redis_url)
        deadline = time.monotonic() + 60
        while Worker.count(connection=connection) < count:  # listening, not just started
            if time.monotonic() > deadline or any(w.poll() is not None for w in self.workers):
                raise SystemExit("the queue workers did not start (see their logs)")
            time.sleep(0.1)

    def stop(self) -> None:
        for process in reversed(self.processes):
            if process.poll() is None:
                process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
        if self.smtp is not None:
            self.smtp.stop()


# --- members who joined, and what Stripe changed behind the app's back -------------------------


@dataclass
class Patron:
    member_id: int
    customer: str
    subscription: str
    invoice: str


def join_members(world: World, count: int, rng: random.Random) -> tuple[Any, list[Patron]]:
    """``count`` members with a subscription in localstripe, recorded as joining records them;
    then a third of them changed in Stripe alone. Returns the app (in-process) and the patrons."""
    import flask_migrate
    import stripe

    from membership import create_app
    from membership.accounts import service as accounts
    from membership.accounts.models import Member, Role
    from membership.billing import get_gateway, sync
    from membership.billing import service as billing
    from membership.billing.models import Tier
    from membership.billing.rules import Interval
    from membership.cli import DEMO_TIERS
    from membership.database import utcnow
    from membership.extensions import db

    app = create_app(
        {
            "SQLALCHEMY_DATABASE_URI": world.database,
            "SECRET_KEY": APP_SECRET,
            "STRIPE_SECRET_KEY": SECRET_KEY,
            "STRIPE_PUBLISHABLE_KEY": PUBLISHABLE_KEY,
            "STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET,
            "STRIPE_API_BASE": world.stripe_base,
            "SMTP_HOST": "127.0.0.1",
            "SMTP_PORT": world.smtp_port,
            "SMTP_STARTTLS": False,
            "REDIS_URL": "",  # the setup sends its own mail at once
        }
    )
    sdk = stripe.StripeClient(
        SECRET_KEY, base_addresses={"api": world.stripe_base}, max_network_retries=0
    )
    patrons = []
    with app.app_context():
        flask_migrate.upgrade()
        session, gateway = db.session, get_gateway()
        plans = []
        for position, (slug, name, description, prices) in enumerate(DEMO_TIERS):
            tier = Tier(slug=slug, name=name, description=description, position=position)
            session.add(tier)
            session.flush()
            for currency, (monthly, yearly) in prices.items():
                plans.append(billing.set_price(session, tier, Interval.MONTH, currency, monthly))
                billing.set_price(session, tier, Interval.YEAR, currency, yearly)
        billing.sync_catalog(session, gateway)
        session.commit()
        eur = [price.stripe_plan_id for price in plans if price.currency == "EUR"]
        password_hash = accounts.hash_password("bench-member-password-2026")
        for n in range(count):
            member = Member(
                email=f"member{n}@bench.example.org",
                display_name=f"Bench Member {n}",
                role=Role.READER,
                email_confirmed_at=utcnow(),
            )
            member.password_hash = password_hash
            session.add(member)
            session.flush()
            customer = billing.ensure_customer(session, gateway, member)
            card = sdk.v1.payment_methods.attach("pm_card_visa", params={"customer": customer})
            sdk.v1.customers.update(
                customer, params={"invoice_settings": {"default_payment_method": card.id}}
            )
            data = gateway.create_subscription(
                customer_id=customer,
                plan_id=eur[n % 2],
                member_id=member.id,
                idempotency_key=f"bench-{uuid.uuid4().hex}",
            )
            sync.apply_subscription(session, data, reason="joined")
            sync.apply_invoice(session, data["latest_invoice"], reason="first payment")
            session.commit()
            invoice = data["latest_invoice"]
            patrons.append(Patron(member.id, customer, data["id"], invoice["id"]))
        for patron in patrons:
            roll = rng.random()
            if roll < 0.15:
                sdk.v1.subscriptions.cancel(patron.subscription)
            elif roll < 0.25:
                sdk.v1.subscriptions.update(
                    patron.subscription, params={"cancel_at_period_end": True}
                )
            elif roll < 0.35:
                current = sdk.v1.subscriptions.retrieve(patron.subscription)
                item = current["items"]["data"][0]
                other = eur[1] if item["plan"]["id"] == eur[0] else eur[0]
                sdk.v1.subscriptions.update(
                    patron.subscription, params={"items": [{"id": item["id"], "plan": other}]}
                )
    return app, patrons


def make_events(patrons: list[Patron], unique: int, rng: random.Random) -> list[Json]:
    """``unique`` events about these patrons' objects, as Stripe would send them."""
    events = []
    kinds = [
        ("customer.subscription.updated", 4),
        ("customer.subscription.created", 1),
        ("customer.subscription.deleted", 1),
        ("invoice.payment_succeeded", 2),
        ("customer.updated", 2),
    ]
    names = [name for name, weight in kinds for _ in range(weight)]
    for n in range(unique):
        patron = patrons[n % len(patrons)]
        kind = rng.choice(names)
        if kind.startswith("customer.subscription."):
            obj = {"id": patron.subscription, "object": "subscription"}
            obj["customer"] = patron.customer
        elif kind.startswith("invoice."):
            obj = {"id": patron.invoice, "object": "invoice", "customer": patron.customer}
            obj["subscription"] = patron.subscription
        else:
            obj = {"id": patron.customer, "object": "customer"}
        events.append(
            {
                "id": f"evt_bench_{uuid.uuid4().hex[:24]}",
                "object": "event",
                "api_version": "2025-02-24.acacia",
                "created": int(time.time()),
                "data": {"object": obj},
                "livemode": False,
                "type": kind,
            }
        )
    return events


def with_duplicates(events: list[Json], share: float, rng: random.Random) -> list[Json]:
    """The events plus ``share`` of the sends as repeats of them, all shuffled."""
    total = round(len(events) / (1 - share))
    sends = events + [rng.choice(events) for _ in range(total - len(events))]
    rng.shuffle(sends)
    return sends


# --- sending ------------------------------------------------------------------------------------


@dataclass
class Sent:
    event_id: str
    status: int
    latency_ms: float


async def send_paced(url: str, sends: list[Json], rate: float) -> tuple[list[Sent], float]:
    """POST each event at its time slot (``rate`` a second); returns answers and elapsed time."""
    bodies = [json.dumps(event).encode() for event in sends]
    results: list[Sent] = []
    connector = aiohttp.TCPConnector(limit=200)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def one(event_id: str, body: bytes) -> None:
            headers = {"Content-Type": "application/json", "Stripe-Signature": signature(body)}
            began = time.perf_counter()
            try:
                async with session.post(url, data=body, headers=headers) as response:
                    await response.read()
                    status = response.status
            except (aiohttp.ClientError, TimeoutError):
                status = 0
            results.append(Sent(event_id, status, (time.perf_counter() - began) * 1000))

        tasks = []
        start = time.perf_counter()
        for n, (event, body) in enumerate(zip(sends, bodies, strict=True)):
            delay = start + n / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(event["id"], body)))
        await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - start
    return results, elapsed


def send_ceiling(
    world: World, sends: list[Json], seconds: int, connections: int
) -> tuple[list[Sent], float, str]:
    """wrk as fast as it goes for ``seconds``; returns the answers, wrk's elapsed time and its
    report (latencies are wrk's; per-answer latency is not recorded here)."""
    folder = world.tmp / "wrk"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir()
    lines: list[list[str]] = [[] for _ in range(connections)]
    for n, event in enumerate(sends):
        body = json.dumps(event)
        lines[n % connections].append(f"{event['id']}\t{signature(body.encode())}\t{body}\n")
    for n, chunk in enumerate(lines):
        (folder / f"events-{n}.tsv").write_text("".join(chunk))
    script = folder / "send.lua"
    script.write_text(WRK_SCRIPT)
    args = [WRK, "-t", str(connections), "-c", str(connections), "-d", f"{seconds}s"]
    args += ["--latency", "-s", str(script), f"{world.app_url}/webhooks/stripe", "--", str(folder)]
    report = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    match = re.search(r"(\d+) requests in ([\d.]+)(m?s)", report)
    assert match, report
    elapsed = float(match.group(2)) / (1000 if match.group(3) == "ms" else 1)
    answers = []
    for n in range(connections):
        for line in (folder / f"answers-{n}.txt").read_text().splitlines():
            status, event_id = line.split(" ", 1)
            answers.append(Sent(event_id, int(status), 0.0))
    if len(answers) >= len(sends) * 0.9:
        raise SystemExit("wrk nearly ran out of events: raise the ceiling pool")
    return answers, elapsed, report


# --- watching the queue drain, and checking the outcome ---------------------------------------


def queue_counts(redis_url: str) -> dict[str, int]:
    from rq import Queue

    queue = Queue("membership", connection=redis.Redis.from_url(redis_url))
    return {
        "queued": queue.count,
        "started": queue.started_job_registry.count,
        "scheduled": queue.scheduled_job_registry.count,
        "failed": queue.failed_job_registry.count,
    }


def wait_until_drained(engine: sa.Engine, redis_url: str, ids: set[str], limit: float) -> bool:
    """Wait until every one of ``ids`` is processed (or ignored) and the queue is idle; or, if
    some failed for good, until the queue has nothing left to try. False after ``limit`` s."""
    deadline = time.monotonic() + limit
    query = sa.text(
        "SELECT status, count(*) FROM webhook_events WHERE stripe_event_id = ANY(:ids) "
        "GROUP BY status"
    )
    shown = time.monotonic()
    while True:
        with engine.connect() as conn:
            statuses = dict(conn.execute(query, {"ids": list(ids)}).all())
        counts = queue_counts(redis_url)
        done = statuses.get("processed", 0) + statuses.get("ignored", 0)
        idle = counts["queued"] == counts["started"] == counts["scheduled"] == 0
        if idle and (done == len(ids) or done + statuses.get("failed", 0) == len(ids)):
            return True
        if time.monotonic() > deadline:
            print(f"  not drained after {limit:.0f} s: {statuses}, {counts}", flush=True)
            return False
        if time.monotonic() - shown > 10:
            print(f"  draining: {done}/{len(ids)} done, queue {counts}", flush=True)
            shown = time.monotonic()
        time.sleep(0.25)


@dataclass
class Phase:
    name: str
    sends: int
    unique: int
    acked: int
    refused: dict[int, int]
    elapsed: float
    latencies: list[float]
    processed_per_s: float
    lag_s: float
    lost: list[str]

    @property
    def acked_per_s(self) -> float:
        return self.acked / self.elapsed


def outcome(
    name: str,
    engine: sa.Engine,
    answers: list[Sent],
    elapsed: float,
    start_wall: float,
    end_wall: float,
) -> Phase:
    """What one send achieved: acks, refusals, and how fast what was stored got processed."""
    acked_ids = {a.event_id for a in answers if 200 <= a.status < 300}
    refused: dict[int, int] = {}
    for a in answers:
        if not 200 <= a.status < 300:
            refused[a.status] = refused.get(a.status, 0) + 1
    ids = list({a.event_id for a in answers})
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT stripe_event_id, status, processed_at FROM webhook_events "
                "WHERE stripe_event_id = ANY(:ids)"
            ),
            {"ids": ids},
        ).all()
    done = {r.stripe_event_id for r in rows if r.status in ("processed", "ignored")}
    lost = sorted(acked_ids - done)
    finished = [r.processed_at for r in rows if r.processed_at is not None]
    latest = max(finished) if finished else None
    if latest is not None and latest.tzinfo is None:
        latest = latest.replace(tzinfo=UTC)
    last = latest.timestamp() if latest is not None else end_wall
    return Phase(
        name=name,
        sends=len(answers),
        unique=len(ids),
        acked=sum(1 for a in answers if 200 <= a.status < 300),
        refused=refused,
        elapsed=elapsed,
        latencies=[a.latency_ms for a in answers if a.latency_ms],
        processed_per_s=len(done) / max(last - start_wall, 1e-9),
        lag_s=max(0.0, last - end_wall),
        lost=lost,
    )


def compare_with_stripe(app: Any, world: World, patrons: list[Patron]) -> list[str]:
    """Members whose subscription or standing differs from Stripe's (empty: all agree)."""
    import stripe

    from membership.accounts.models import Member
    from membership.billing import rules, service
    from membership.billing.models import Price, Subscription
    from membership.extensions import db

    sdk = stripe.StripeClient(
        SECRET_KEY, base_addresses={"api": world.stripe_base}, max_network_retries=0
    )
    differ = []
    with app.app_context():
        session = db.session
        for patron in patrons:
            truth = sdk.v1.subscriptions.retrieve(patron.subscription).to_dict()
            ours = session.scalar(
                sa.select(Subscription).where(
                    Subscription.stripe_subscription_id == patron.subscription
                )
            )
            member = session.get(Member, patron.member_id)
            price = session.get(Price, ours.price_id) if ours and ours.price_id else None
            expected = (
                truth["status"],
                truth["items"]["data"][0]["plan"]["id"],
                bool(truth["cancel_at_period_end"]),
                truth["status"] == "active",
            )
            actual = (
                ours.status.value if ours else None,
                price.stripe_plan_id if price else None,
                bool(ours.cancel_at_period_end) if ours else None,
                rules.is_patron(service.membership_state(session, member)),
            )
            if expected != actual:
                differ.append(f"member {patron.member_id}: Stripe {expected}, app {actual}")
    return differ


def percentile(values: list[float], share: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--database", default=DEFAULT_DATABASE)
    parser.add_argument("--redis", help="a Redis database to empty and use (default: its own)")
    parser.add_argument("--members", type=int, default=200)
    parser.add_argument("--rate", type=float, default=100.0, help="events a second (paced)")
    parser.add_argument("--seconds", type=int, default=60, help="length of the paced send")
    parser.add_argument("--duplicates", type=float, default=0.2, help="share of repeat sends")
    parser.add_argument("--ceiling-seconds", type=int, default=10)
    parser.add_argument("--ceiling-connections", type=int, default=8)
    parser.add_argument(
        "--ceiling-with-workers",
        action="store_true",
        help="keep the queue workers running during the ceiling send (they share the CPU)",
    )
    parser.add_argument("--web-workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=4, help="gunicorn threads per worker")
    parser.add_argument("--queue-workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--quick", action="store_true", help="10 s, 50 members, 3 s ceiling")
    args = parser.parse_args()
    if args.quick:
        args.seconds, args.members, args.ceiling_seconds = 10, 50, 3
    rng = random.Random(args.seed)

    tmp = Path(tempfile.mkdtemp(prefix="bench-webhooks-"))
    world = World(database=prepare_database(args.database), redis_url=args.redis or "", tmp=tmp)
    engine = sa.create_engine(world.database)
    try:
        if args.redis:
            redis.Redis.from_url(args.redis).flushdb()
        else:
            world.start_redis()
        world.start_localstripe()
        world.start_smtp()
        began = time.perf_counter()
        app, patrons = join_members(world, args.members, rng)
        print(f"{len(patrons)} members joined in {time.perf_counter() - began:.1f} s", flush=True)
        world.start_app(args.web_workers, args.threads)
        world.start_workers(args.queue_workers)
        url = f"{world.app_url}/webhooks/stripe"

        # 1. paced
        unique = round(args.rate * args.seconds * (1 - args.duplicates))
        events = make_events(patrons, unique, rng)
        sends = with_duplicates(events, args.duplicates, rng)
        load_before = os.getloadavg()[0]
        print(f"paced: {len(sends)} sends at {args.rate:g}/s ...", flush=True)
        start_wall = time.time()
        answers, elapsed = asyncio.run(send_paced(url, sends, args.rate))
        end_wall = time.time()
        wait_until_drained(engine, world.redis_url, {e["id"] for e in events}, limit=600)
        paced = outcome("paced", engine, answers, elapsed, start_wall, end_wall)

        # 2. ceiling: the queue workers are paused (RQ's suspend) while wrk sends, so that the
        # figure is what the web side can take in; then they drain the backlog on their own.
        pool = make_events(patrons, 3000 * args.ceiling_seconds, rng)
        pool_sends = with_duplicates(pool, args.duplicates, rng)
        connection = redis.Redis.from_url(world.redis_url)
        if not args.ceiling_with_workers:
            suspend(connection)
        print(f"ceiling: wrk for {args.ceiling_seconds} s ...", flush=True)
        cpu_before = world.web_cpu_seconds()
        answers, elapsed, report = send_ceiling(
            world, pool_sends, args.ceiling_seconds, args.ceiling_connections
        )
        web_cpu_ms = (world.web_cpu_seconds() - cpu_before) * 1000 / max(len(answers), 1)
        start_wall = time.time()
        resume(connection)
        with engine.connect() as conn:
            stored = set(
                conn.scalars(
                    sa.text(
                        "SELECT stripe_event_id FROM webhook_events WHERE stripe_event_id = "
                        "ANY(:ids)"
                    ),
                    {"ids": [e["id"] for e in pool]},
                )
            )
        wait_until_drained(engine, world.redis_url, stored, limit=900)
        ceiling = outcome("ceiling", engine, answers, elapsed, start_wall, start_wall)

        # 3. checks
        with engine.connect() as conn:
            statuses = dict(
                conn.execute(
                    sa.text("SELECT status, count(*) FROM webhook_events GROUP BY status")
                ).all()
            )
            repeated = conn.scalar(
                sa.text("SELECT count(*) FROM webhook_events WHERE attempts <> 1")
            )
        counts = queue_counts(world.redis_url)
        differ = compare_with_stripe(app, world, patrons)
    finally:
        world.stop()
        engine.dispose()

    cpu = platform.processor() or platform.machine()
    print()
    print(
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores ({cpu}), "
        f"Python {platform.python_version()}; gunicorn {args.web_workers} workers"
        f"{f' x {args.threads} threads' if args.threads > 1 else ''}, "
        f"{args.queue_workers} queue workers, {args.members} members"
    )
    print()
    print("| | paced | ceiling (wrk) |")
    print("|---|---:|---:|")
    print(f"| events sent (repeats included) | {paced.sends} | {ceiling.sends} |")
    print(f"| distinct events | {paced.unique} | {ceiling.unique} |")
    refused = [", ".join(f"{n}x{s}" for s, n in p.refused.items()) or "0" for p in (paced, ceiling)]
    print(f"| answered 2xx | {paced.acked} | {ceiling.acked} |")
    print(f"| answered otherwise (count x status) | {refused[0]} | {refused[1]} |")
    print(
        f"| **acknowledged events/s** | {paced.acked_per_s:.0f} | "
        f"**{ceiling.acked_per_s:.0f}** (target {ACK_TARGET:.0f}) |"
    )
    print(
        f"| ack latency p50 / p99 (ms) | {percentile(paced.latencies, 0.5):.1f} / "
        f"{percentile(paced.latencies, 0.99):.1f} | see wrk below |"
    )
    print(
        f"| **processed events/s** (distinct, first send to last processed) | "
        f"{paced.processed_per_s:.0f} | {ceiling.processed_per_s:.0f} |"
    )
    label = "all processed, s after the send (ceiling: after the workers resumed)"
    print(f"| {label} | {paced.lag_s:.1f} | {ceiling.lag_s:.1f} |")
    print(f"| lost (answered 2xx, not processed) | {len(paced.lost)} | {len(ceiling.lost)} |")
    print()
    print(
        f"- CPU time of the web side per acknowledged event (gunicorn, during the ceiling): "
        f"{web_cpu_ms:.2f} ms, so about {1000 / web_cpu_ms:.0f} events/s per core it has to "
        "itself (PostgreSQL and Redis need some too)"
    )
    print(
        f"- load average (1 min) before the sends {load_before:.1f}, at the end "
        f"{os.getloadavg()[0]:.1f}: everything on the machine, other people's work included"
    )
    print(f"- stored events by status: {statuses}; needing more than one attempt: {repeated}")
    print(f"- queue after draining: {counts}")
    print(f"- members whose state differs from Stripe's: {len(differ)} of {len(patrons)}")
    for line in differ[:10]:
        print(f"  - {line}")
    print(f"- mail sent through the queue's workers: {len(world.mails)}")
    print(f"- logs: {tmp}")
    print()
    print("wrk:")
    print(report)
    ok = (
        not paced.lost
        and not ceiling.lost
        and not differ
        and set(statuses) <= {"processed", "ignored"}
        and counts["queued"] == counts["started"] == counts["scheduled"] == counts["failed"] == 0
    )
    print("PASS" if ok else "FAIL", "(lost = 0, states equal Stripe's, queue drained)")
    print(
        f"{'PASS' if ceiling.acked_per_s >= ACK_TARGET else 'MISS'} "
        f"ack ceiling {ceiling.acked_per_s:.0f}/s (target {ACK_TARGET:.0f}/s)"
    )
    if not ok:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
