"""Benchmark: the app's pages under gunicorn against a bare Flask app on the same settings.

    make bench                      # .venv/bin/python bench/pages.py
    .venv/bin/python bench/pages.py --quick
    .venv/bin/python bench/pages.py --database postgresql://postgres@127.0.0.1:5432/NAME

It creates the PostgreSQL database if it is missing, empties it, migrates it to head and seeds
a newsroom (the demo tiers and perks, ``--members`` members of whom about a third are patrons
with months of payments, an open voting round with votes, an API key). Then it starts two
gunicorns with ``membership/gunicorn_conf.py`` on loopback: the app (``MEMBERSHIP_ENV=production``,
PostgreSQL) and ``bench/bare_app.py``, the ceiling. It logs a patron in through the real login
form, warms both up, and drives each route with wrk (``-t2 -c32 -d10s --latency``). The ceiling is
measured first and last; ratios are to the mean of the two. Last, it reads each gunicorn
worker's resident memory (VmRSS) and prints a Markdown table with PASS or MISS per target.

wrk shares the machine's cores with gunicorn and PostgreSQL, which is why it runs with two
threads: the figures are for the whole machine serving itself, not for the app alone.
"""

from __future__ import annotations

import argparse
import http.client
import os
import random
import re
import resource
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from urllib.parse import quote, urlencode

import sqlalchemy as sa

_HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = Path(_HERE).parent
VENV_BIN = Path(sys.executable).parent
DEFAULT_DATABASE = "postgresql://postgres@127.0.0.1:5432/membership_bench_http"
WRK = "/usr/bin/wrk"
PASSWORD = "bench-patron-pass-2026"  # noqa: S105 - a throwaway account in a throwaway database
PATRON_EMAIL = "patron{}@bench.example.org"
APP_PORT = 8471
BARE_PORT = 8472

# Targets from the performance issue.
PAGE_RATIO = 0.70
API_RATIO = 0.60
P99_LIMIT_MS = 50.0
RSS_LIMIT_MB = 150.0


# --- the database --------------------------------------------------------------------------------


def ensure_database(url: str) -> None:
    """Create the PostgreSQL database named in ``url`` if it does not exist yet."""
    target = sa.make_url(url)
    if not target.drivername.startswith("postgresql"):
        raise SystemExit("bench/pages.py measures the app on PostgreSQL: give a postgresql:// URL")
    name = target.database or ""
    if not re.fullmatch(r"[a-z_][a-z0-9_]*", name):
        raise SystemExit(f"use a plain database name (a-z, 0-9, _), got {name!r}")
    server = target.set(drivername="postgresql+psycopg", database="postgres")
    engine = sa.create_engine(server, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        exists = conn.scalar(sa.text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name})
        if not exists:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    engine.dispose()


def reset_schema(url: str) -> None:
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("DROP SCHEMA public CASCADE"))
        conn.execute(sa.text("CREATE SCHEMA public"))
    engine.dispose()


@dataclass
class Seeded:
    api_key: str
    patrons: list[str]  # emails of patrons who log in (password PASSWORD)
    lookups: list[str]  # member emails the API is asked about
    counts: dict[str, int] = field(default_factory=dict)


def migrate_and_seed(url: str, members: int, rng: random.Random) -> Seeded:
    """Empty the database, migrate it to head and fill it with a realistic small newsroom."""
    import flask_migrate

    from membership import create_app
    from membership.config import normalise_database_url
    from membership.extensions import db

    sql_url = normalise_database_url(url)
    ensure_database(sql_url)
    reset_schema(sql_url)
    app = create_app({"SQLALCHEMY_DATABASE_URI": sql_url, "TESTING": True})
    with app.app_context():
        flask_migrate.upgrade()
        seeded = _seed(db.session, members, rng)
        db.session.commit()
    return seeded


def _seed(session: sa.orm.Session, members: int, rng: random.Random) -> Seeded:
    from membership.accounts.models import Member
    from membership.accounts.service import hash_password
    from membership.api import service as api
    from membership.billing import service as billing
    from membership.billing.models import Payment, PaymentKind, PaymentStatus, Subscription, Tier
    from membership.billing.rules import Interval, MembershipState, SubscriptionStatus
    from membership.cli import DEMO_TIERS
    from membership.database import utcnow
    from membership.perks import demo as perks_demo
    from membership.voting import demo as voting_demo
    from membership.voting import service as voting
    from membership.voting.models import Round, Topic
    from membership.voting.rules import TopicStatus

    now = utcnow()
    # The demo tiers and prices, as staff would set them up (no Stripe: nothing here pays).
    tiers = []
    for position, (slug, name, description, prices) in enumerate(DEMO_TIERS):
        tier = Tier(slug=slug, name=name, description=description, position=position)
        session.add(tier)
        session.flush()
        for currency, (monthly, yearly) in prices.items():
            billing.set_price(session, tier, Interval.MONTH, currency, monthly)
            billing.set_price(session, tier, Interval.YEAR, currency, yearly)
        tiers.append(tier)
    perks_demo.seed_demo(session)
    session.flush()

    # One argon2 hash for every account: hashing thousands of passwords would take minutes.
    password_hash = hash_password(PASSWORD)
    bench_patrons = [PATRON_EMAIL.format(i) for i in range(1, 6)]
    rows = [
        {
            "email": email,
            "display_name": f"Bench Patron {i}",
            "password_hash": password_hash,
            "email_confirmed_at": now - timedelta(days=400),
            "created_at": now - timedelta(days=400),
        }
        for i, email in enumerate(bench_patrons, 1)
    ]
    rows += [
        {
            "email": f"reader{i}@example.org",
            "display_name": f"Reader {i}",
            "password_hash": password_hash,
            "email_confirmed_at": now - timedelta(days=rng.randrange(1, 900)),
            "created_at": now - timedelta(days=rng.randrange(1, 900)),
        }
        for i in range(1, members + 1)
    ]
    session.execute(sa.insert(Member), rows)
    ids = dict(session.execute(sa.select(Member.email, Member.id)).all())

    prices = [p for tier in tiers for p in tier.prices if p.listed]
    insider_eur = next(
        p
        for p in prices
        if p.tier.slug == "insider" and p.currency == "EUR" and p.interval is Interval.MONTH
    )
    readers = [f"reader{i}@example.org" for i in range(1, members + 1)]
    patron_readers = rng.sample(readers, members // 3)
    plan: list[tuple[str, object, int]] = [(email, insider_eur, 12) for email in bench_patrons]
    plan += [(email, rng.choice(prices), rng.randrange(1, 25)) for email in patron_readers]
    sub_rows, payment_rows = [], []
    for n, (email, price, months) in enumerate(plan, 1):
        started = now - timedelta(days=30 * months + rng.randrange(0, 28))
        sub_rows.append(
            {
                "member_id": ids[email],
                "price_id": price.id,
                "stripe_subscription_id": f"sub_bench_{n}",
                "status": SubscriptionStatus.ACTIVE,
                "live": True,
                "state": MembershipState.ACTIVE,
                "current_period_end": now + timedelta(days=rng.randrange(1, 30)),
                "started_at": started,
                "synced_at": now,
            }
        )
    session.execute(sa.insert(Subscription), sub_rows)
    subs = dict(session.execute(sa.select(Subscription.member_id, Subscription.id)).all())
    for email, price, months in plan:
        step = 365 if price.interval is Interval.YEAR else 30
        count = max(1, months * 30 // step)
        for k in range(count):
            paid = now - timedelta(days=step * k + 2)
            payment_rows.append(
                {
                    "member_id": ids[email],
                    "subscription_id": subs[ids[email]],
                    "kind": PaymentKind.SUBSCRIPTION,
                    "status": PaymentStatus.SUCCEEDED,
                    "amount": price.amount,
                    "currency": price.currency,
                    "stripe_invoice_id": f"in_bench_{len(payment_rows) + 1}",
                    "paid_at": paid,
                    "created_at": paid,
                }
            )
    session.execute(sa.insert(Payment), payment_rows)
    session.flush()

    # The demo voting rounds (one open, one closed and covered), and votes in the open one.
    voting_demo.seed_demo(session)
    session.flush()
    open_round = session.scalar(sa.select(Round).where(Round.title == voting_demo.OPEN_TITLE))
    topic_ids = list(
        session.scalars(
            sa.select(Topic.id).where(
                Topic.round_id == open_round.id, Topic.status == TopicStatus.APPROVED
            )
        )
    )
    voters = bench_patrons[1:] + rng.sample(patron_readers, min(300, len(patron_readers)))
    votes = 0
    for email in voters:
        member = session.get(Member, ids[email])
        for topic_id in rng.sample(topic_ids, 1):
            voting.cast_vote(session, member, topic_id, now)
            votes += 1
    made = api.create_key(session, "bench")
    session.flush()
    lookups = bench_patrons + rng.sample(readers, 200)
    return Seeded(
        api_key=made.secret,
        patrons=bench_patrons,
        lookups=lookups,
        counts={
            "members": len(rows),
            "subscriptions": len(sub_rows),
            "payments": len(payment_rows),
            "votes": votes,
        },
    )


# --- servers -------------------------------------------------------------------------------------


def gunicorn_settings(env: dict[str, str]) -> str:
    """The settings gunicorn_conf.py resolves to in ``env`` (read the way gunicorn reads them)."""
    code = (
        "import json\n"
        "from membership import gunicorn_conf as c\n"
        "print(json.dumps({k: getattr(c, k) for k in ('workers', 'threads', 'worker_class',"
        " 'keepalive', 'timeout', 'preload_app', 'max_requests', 'accesslog')}))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    return out.stdout.strip()


class Gunicorn:
    """One gunicorn master on loopback, started with membership/gunicorn_conf.py."""

    def __init__(self, name: str, app: str, port: int, env: dict[str, str], logdir: Path) -> None:
        self.name, self.port = name, port
        self.log_path = logdir / f"{name}.log"
        args = [
            str(VENV_BIN / "gunicorn"),
            "-c",
            "python:membership.gunicorn_conf",
            "--bind",
            f"127.0.0.1:{port}",
        ]
        if app == "bare_app:app":
            args += ["--pythonpath", _HERE]
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [*args, app], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
            )

    def wait_ready(self, path: str, seconds: float = 60) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            try:
                if get(self.port, path)[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        self.stop()
        tail = self.log_path.read_text(errors="replace")[-3000:]
        raise SystemExit(f"{self.name} did not start on port {self.port}:\n{tail}")

    def workers(self) -> list[int]:
        return children_of(self.process.pid)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def children_of(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        # The command name (in parentheses) may hold spaces: the parent id follows the last ")".
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found.append(int(entry))
    return sorted(found)


def cpu_seconds(pids: list[int]) -> float:
    """User plus system CPU time used so far by these processes (those still alive)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
    return total / os.sysconf("SC_CLK_TCK")


def postgres_backends(database: str) -> list[int]:
    """The PostgreSQL server processes serving connections to ``database``."""
    name = sa.make_url(database).database
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            title = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except (OSError, UnicodeDecodeError):
            continue
        if title.startswith("postgres:") and f" {name} " in title:
            found.append(int(entry))
    return found


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def pss_mb(pid: int) -> float:
    """Proportional set size: the pages shared with the master (preload_app) count in part."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def server_env(database: str, extra: dict[str, str]) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("STRIPE_", "SMTP_", "REDIS_URL", "GUNICORN_", "WEB_CONCURRENCY"))
    }
    env.update(
        {
            "MEMBERSHIP_ENV": "production",
            "SECRET_KEY": secrets.token_urlsafe(48),
            # Production refuses an http:// address; nothing here follows the links it makes.
            "BASE_URL": "https://members.bench.invalid",
            "DATABASE_URL": database,
            # Production wants a mail relay. No request measured here sends mail; a message
            # would meet a closed port on loopback and wait in the outbox.
            "SMTP_HOST": "127.0.0.1",
            "SMTP_PORT": "9",
            # Billing on, so the support page offers its tiers as in production. No page
            # measured here calls Stripe (the seeded patrons have no Stripe customer); should
            # one try, it meets a closed port on loopback and fails fast instead of leaving
            # the machine.
            "STRIPE_SECRET_KEY": "sk_test_bench_never_sent",
            "STRIPE_PUBLISHABLE_KEY": "pk_test_bench_never_sent",
            "STRIPE_WEBHOOK_SECRET": "whsec_bench_never_sent",
            "STRIPE_API_BASE": "http://127.0.0.1:9",
            "STRIPE_MAX_NETWORK_RETRIES": "0",
            # The member API allows 6,000 requests a minute per key; wrk asks far more often.
            # The limiter still counts every request.
            "API_RATE_LIMIT": "10000000 per minute",
            # Likewise every page allows 600 requests a minute per client address, and here
            # every request comes from 127.0.0.1.
            "PAGE_RATE_LIMIT": "10000000 per minute",
        }
    )
    env.update(extra)
    return env


# --- HTTP helpers --------------------------------------------------------------------------------


def get(
    port: int, path: str, headers: dict[str, str] | None = None
) -> tuple[int, http.client.HTTPResponse, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path, headers=headers or {})
        response = conn.getresponse()
        return response.status, response, response.read()
    finally:
        conn.close()


def _cookie(response: http.client.HTTPResponse, name: str) -> str | None:
    for header in response.headers.get_all("Set-Cookie") or []:
        pair = header.split(";", 1)[0]
        if pair.startswith(name + "="):
            return pair
    return None


def log_in(port: int, email: str, password: str = PASSWORD) -> str:
    """Log in through the real form (CSRF and all); return the ``Cookie`` header to send."""
    status, response, body = get(port, "/account/login")
    cookie = _cookie(response, "membership_session")
    match = re.search(rb'name="csrf_token"[^>]*value="([^"]+)"', body)
    if status != 200 or cookie is None or match is None:
        raise SystemExit(f"the login page answered {status} without a form and a session")
    form = urlencode({"email": email, "password": password, "csrf_token": match[1].decode()})
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(
            "POST",
            "/account/login",
            body=form,
            headers={"Cookie": cookie, "Content-Type": "application/x-www-form-urlencoded"},
        )
        response = conn.getresponse()
        response.read()
    finally:
        conn.close()
    cookie = _cookie(response, "membership_session")
    if response.status != 302 or cookie is None:
        raise SystemExit(f"logging {email} in answered {response.status}")
    # The first page shows (and removes) the welcome message, which changes the session. Take
    # the cookie from there, so that each measured request reads an unchanged session.
    for _ in range(3):
        _, response, _ = get(port, "/membership", {"Cookie": cookie})
        newer = _cookie(response, "membership_session")
        if newer is None or newer == cookie:
            return cookie
        cookie = newer
    return cookie


# --- wrk -----------------------------------------------------------------------------------------


@dataclass
class WrkResult:
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    errors: int  # socket errors plus responses that are not 2xx or 3xx
    cpu_ms: dict[str, float] = field(default_factory=dict)  # CPU per request, by who spent it


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}


def _ms(text: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)([a-z]+)", text).groups()
    return float(number) * _UNITS[unit]


def run_wrk(
    url: str,
    headers: dict[str, str],
    threads: int,
    connections: int,
    seconds: int,
    watch: dict[str, Callable[[], list[int]]] | None = None,
) -> WrkResult:
    """One wrk run; ``watch`` names processes whose CPU time per request to report."""
    args = [WRK, f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency"]
    for name, value in headers.items():
        args += ["-H", f"{name}: {value}"]
    watched = {name: list_pids() for name, list_pids in (watch or {}).items()}
    before = {name: {pid: cpu_seconds([pid]) for pid in pids} for name, pids in watched.items()}
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run(
        [*args, url], capture_output=True, text=True, check=True, timeout=seconds + 60
    ).stdout
    after_children = resource.getrusage(resource.RUSAGE_CHILDREN)
    # Per process: new ones (database connections opened during the run) count from zero, and
    # the last moments of those that ended (connections closed) are lost: an underestimate.
    spent = {}
    for name, list_pids in (watch or {}).items():
        spent[name] = sum(cpu_seconds([pid]) - before[name].get(pid, 0.0) for pid in list_pids())
    spent["wrk"] = (after_children.ru_utime + after_children.ru_stime) - (
        children.ru_utime + children.ru_stime
    )
    latency = dict(re.findall(r"^\s+(50|99)%\s+(\S+)\s*$", out, re.MULTILINE))
    if len(latency) != 2 or "Requests/sec" not in out:
        raise SystemExit(f"unexpected output from wrk for {url}:\n{out}")
    errors = sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", out))
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    requests = int(re.search(r"(\d+) requests in", out)[1])
    return WrkResult(
        rps=float(re.search(r"Requests/sec:\s+([\d.]+)", out)[1]),
        p50_ms=_ms(latency["50"]),
        p99_ms=_ms(latency["99"]),
        requests=requests,
        errors=errors + (int(non_2xx[1]) if non_2xx else 0),
        cpu_ms={name: 1000 * cpu / max(requests, 1) for name, cpu in spent.items()},
    )


# --- the run -------------------------------------------------------------------------------------


@dataclass
class Route:
    name: str
    path: str
    kind: str  # "page" or "api": which ratio target applies
    headers: dict[str, str]
    port: int = APP_PORT


def machine() -> str:
    model = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    return f"{os.cpu_count()} cores ({model})"


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def start_servers(
    database: str, extra_env: dict[str, str], logdir: Path
) -> tuple[Gunicorn, Gunicorn, dict[str, str]]:
    env = server_env(database, extra_env)
    app = Gunicorn("app", "wsgi:app", APP_PORT, env, logdir)
    bare = Gunicorn("bare", "bare_app:app", BARE_PORT, env, logdir)
    try:
        app.wait_ready("/healthz")
        bare.wait_ready("/")
    except BaseException:
        app.stop()
        bare.stop()
        raise
    return app, bare, env


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database", default=DEFAULT_DATABASE)
    parser.add_argument("--members", type=int, default=3000)
    parser.add_argument("--quick", action="store_true", help="3 s per route, 500 members")
    parser.add_argument("--duration", type=int, default=10, help="seconds of wrk per route")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--workers", type=int, help="WEB_CONCURRENCY for both servers")
    parser.add_argument("--worker-threads", type=int, help="GUNICORN_THREADS for both servers")
    parser.add_argument(
        "--redis", metavar="URL", help="REDIS_URL for the app's rate limits (default: memory)"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.duration = min(args.duration, 3)
        args.members = min(args.members, 500)
    return args


def extra_env(args: argparse.Namespace) -> dict[str, str]:
    extra = {}
    if args.workers:
        extra["WEB_CONCURRENCY"] = str(args.workers)
    if args.worker_threads:
        extra["GUNICORN_THREADS"] = str(args.worker_threads)
    if args.redis:
        extra["REDIS_URL"] = args.redis
    return extra


def _cpu(result: WrkResult) -> str:
    """CPU per request by who spent it, and the request rate the machine's cores allow at that
    cost (what the cores can do when nothing else runs on them)."""
    spent = result.cpu_ms
    total = sum(spent.values())
    parts = " + ".join(f"{spent.get(k, 0.0):.2f}" for k in ("gunicorn", "PostgreSQL", "wrk"))
    limit = (os.cpu_count() or 1) * 1000 / total if total else 0.0
    return f"{parts} = {total:.2f} | {limit:,.0f}"


def main() -> None:
    args = parse_args()
    if not os.access(WRK, os.X_OK):
        raise SystemExit(f"{WRK} is missing: apt-get install wrk")
    rng = random.Random(2026)
    started = time.monotonic()
    print(f"Seeding {args.database} ...", file=sys.stderr)
    seeded = migrate_and_seed(args.database, args.members, rng)
    print(f"  {seeded.counts} in {time.monotonic() - started:.0f} s", file=sys.stderr)

    logdir = Path(tempfile.mkdtemp(prefix="bench-http-"))
    app, bare, env = start_servers(args.database, extra_env(args), logdir)
    try:
        patron = log_in(APP_PORT, seeded.patrons[0])
        lookup = quote(seeded.lookups[0], safe="@")
        ceiling = Route("bare Flask (ceiling)", "/", "ceiling", {}, BARE_PORT)
        routes = [
            Route("support page (anonymous)", "/support", "page", {}),
            Route("home page (anonymous)", "/", "page", {}),
            Route("voting page (patron)", "/vote", "page", {"Cookie": patron}),
            Route("My membership (patron)", "/membership", "page", {"Cookie": patron}),
            Route(
                "member API",
                f"/api/v1/members/{lookup}",
                "api",
                {"Authorization": f"Bearer {seeded.api_key}"},
            ),
            Route("/healthz", "/healthz", "page", {}),
        ]
        for route in [ceiling, *routes]:
            status, _, body = get(route.port, route.path, route.headers)
            if status != 200:
                raise SystemExit(f"{route.path} answered {status}: {body[:300]!r}")
        if b"Bench Patron 1" not in get(APP_PORT, "/membership", {"Cookie": patron})[2]:
            raise SystemExit("the patron's session did not hold: /membership is not theirs")
        warm = 1 if args.quick else 2
        print(f"Warming up ({warm} s per route) ...", file=sys.stderr)
        for route in [ceiling, *routes]:
            run_wrk(f"http://127.0.0.1:{route.port}{route.path}", route.headers, 1, 8, warm)

        load_before = loadavg()
        results: dict[str, WrkResult] = {}
        order = [ceiling, *routes, ceiling]
        ceilings = []
        for route in order:
            print(f"  wrk {route.name} ...", file=sys.stderr)
            server = bare if route is ceiling else app
            result = run_wrk(
                f"http://127.0.0.1:{route.port}{route.path}",
                route.headers,
                args.threads,
                args.connections,
                args.duration,
                watch={
                    "gunicorn": server.workers,
                    "PostgreSQL": lambda: postgres_backends(args.database),
                },
            )
            if route is ceiling:
                ceilings.append(result)
            else:
                results[route.name] = result
        rss = {
            "app": [(rss_mb(pid), pss_mb(pid)) for pid in app.workers()],
            "bare": [(rss_mb(pid), pss_mb(pid)) for pid in bare.workers()],
        }
        load_after = loadavg()
        settings = gunicorn_settings(env)
    finally:
        app.stop()
        bare.stop()
    shutil.rmtree(logdir, ignore_errors=True)

    ceiling_rps = statistics.mean(r.rps for r in ceilings)
    print()
    print(f"Machine: {machine()}; load average before {load_before}, after {load_after}")
    print(f"gunicorn: {settings}")
    print(
        f"wrk -t{args.threads} -c{args.connections} -d{args.duration}s --latency; data: "
        + ", ".join(f"{v:,} {k}" for k, v in seeded.counts.items())
    )
    print(
        f"Ceiling runs (first, last): {ceilings[0].rps:,.0f} and {ceilings[1].rps:,.0f} req/s, "
        f"p50 {ceilings[0].p50_ms:.1f}/{ceilings[1].p50_ms:.1f} ms, "
        f"p99 {ceilings[0].p99_ms:.1f}/{ceilings[1].p99_ms:.1f} ms"
    )
    print()
    print(
        "| route | req/s | p50 (ms) | p99 (ms) | errors | ratio to ceiling | target | result "
        "| CPU ms per request: gunicorn + PostgreSQL + wrk | what the cores allow (req/s) |"
    )
    print("|---|---:|---:|---:|---:|---:|---|---|---:|---:|")
    print(
        f"| bare Flask (ceiling, mean of 2) | {ceiling_rps:,.0f} "
        f"| {statistics.mean(r.p50_ms for r in ceilings):.1f} "
        f"| {statistics.mean(r.p99_ms for r in ceilings):.1f} "
        f"| {sum(r.errors for r in ceilings)} | 1.00 | | | {_cpu(ceilings[-1])} |"
    )
    for route in routes:
        r = results[route.name]
        ratio = r.rps / ceiling_rps
        wanted = API_RATIO if route.kind == "api" else PAGE_RATIO
        ok = ratio >= wanted and r.p99_ms < P99_LIMIT_MS and r.errors == 0
        shown = "/api/v1/members/<email>" if route.kind == "api" else route.path
        print(
            f"| {route.name} `{shown}` | {r.rps:,.0f} | {r.p50_ms:.1f} | {r.p99_ms:.1f} "
            f"| {r.errors} | {ratio:.2f} | >= {wanted:.2f}, p99 < {P99_LIMIT_MS:.0f} ms "
            f"| {'PASS' if ok else 'MISS'} | {_cpu(r)} |"
        )
    print()
    for name, values in rss.items():
        worst = max((r for r, _ in values), default=0.0)
        verdict = "PASS" if worst < RSS_LIMIT_MB else "MISS"
        listed = ", ".join(f"{r:.0f} ({p:.0f})" for r, p in values)
        print(
            f"RSS (PSS) of {name} workers after the run, MB: {listed}; "
            f"largest RSS {worst:.0f} < {RSS_LIMIT_MB:.0f}: {verdict}"
        )


if __name__ == "__main__":
    main()
