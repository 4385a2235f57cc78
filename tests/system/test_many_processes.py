"""Many processes, one truth: two app servers on one PostgreSQL and one Redis.

Two gunicorn servers (separate processes, two workers each, started with the production
settings file and ``MEMBERSHIP_ENV=production``) share a fresh PostgreSQL database and a Redis
database; with the queue in place, one ``flask --app wsgi worker`` runs beside them. The tests
talk HTTP to both, as a load balancer would spread readers over them, and then read the
database: votes counted exactly, each Stripe event applied once, login limits counted for all
processes together, and a login made on one server valid on the other.

Requests carry what the reverse proxy in front adds (``X-Forwarded-For``, ``X-Forwarded-Proto:
https``; ``TRUSTED_PROXIES=1``), so each simulated reader has an address of their own.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import queue
import re
import secrets
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any

import flask_migrate
import limits
import pytest
import sqlalchemy as sa
import stripe as stripe_sdk
from aiosmtpd.controller import Controller
from flask import Flask
from sqlalchemy import func, select

from membership import PROJECT_ROOT, create_app
from membership.accounts import service as accounts
from membership.accounts.models import Member
from membership.accounts.views import LOGIN_LIMIT
from membership.billing import get_gateway, service, sync
from membership.billing.models import (
    EventStatus,
    MembershipEvent,
    Payment,
    Subscription,
    Tier,
    WebhookEvent,
)
from membership.billing.rules import Interval, MembershipState
from membership.config import DEFAULT_STRIPE_API_VERSION, normalise_database_url
from membership.database import utcnow
from membership.extensions import db
from membership.voting.models import Ballot, Round, Topic, TopicStatus, Vote
from tests.conftest import (
    PASSWORD,
    WEBHOOK_SECRET,
    LocalStripe,
    Mailbox,
    settings_for_tests,
    skip_or_fail,
    stripe_settings,
)
from tests.support.stripe_events import signed, stripe_event
from tests.voting_fixtures import grant_votes, subscribe

PATRONS = 100
TOPICS = 3
VOTES = 2  # each patron's budget in the round: fewer than the topics they try
READER_EUR = "membership-reader-month-eur-500"
READER_EMAIL = "reader@example.org"
Json = dict[str, Any]


# --- services: a fresh PostgreSQL database and a Redis database -----------------------------------


@pytest.fixture(scope="module")
def database() -> Iterator[str]:
    """A new PostgreSQL database beside TEST_DATABASE_URL's, dropped after the module."""
    url = os.environ.get("TEST_DATABASE_URL", "")
    if not url:
        skip_or_fail("many-process tests need PostgreSQL: set TEST_DATABASE_URL")
    server = sa.make_url(normalise_database_url(url))
    name = f"{server.database}_procs_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(server, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
    except sa.exc.OperationalError as exc:
        admin.dispose()
        skip_or_fail(f"PostgreSQL at TEST_DATABASE_URL is unreachable: {exc.orig}")
    try:
        yield server.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    import redis

    url = os.environ.get("REDIS_TEST_URL", "redis://127.0.0.1:6379/15")
    client = redis.Redis.from_url(url, socket_connect_timeout=1)
    try:
        client.ping()
    except redis.exceptions.ConnectionError:
        skip_or_fail(f"many-process tests need Redis: none at {url} (REDIS_TEST_URL)")
    client.flushdb()
    yield url
    client.flushdb()
    client.close()


# --- the data: a tier with votes, an open round, patrons, a reader, three Stripe patrons ---------


@dataclass
class StripePatron:
    member_id: int
    customer_id: str
    subscription_id: str


@dataclass
class World:
    app: Flask  # this process's view of the shared database
    sdk: Any  # localstripe, through the Stripe SDK
    patrons: list[str]  # emails
    topics: list[int]
    stripe_patrons: list[StripePatron]


def in_app(app: Flask, work: Callable[[Any], Any]) -> Any:
    with app.app_context():
        result = work(db.session)
        db.session.commit()
        return result


@pytest.fixture(scope="module")
def world(
    database: str,
    redis_url: str,  # checked before the work of seeding
    smtp_server: tuple[Controller, Mailbox],
    localstripe: LocalStripe,
) -> Iterator[World]:
    localstripe.flush()
    app = create_app(
        {**settings_for_tests(database, smtp_server[0].port), **stripe_settings(localstripe)}
    )
    sdk = stripe_sdk.StripeClient(
        "sk_test_suite",
        base_addresses={"api": localstripe.base_url},
        max_network_retries=0,
        stripe_version=DEFAULT_STRIPE_API_VERSION,
    )
    try:
        with app.app_context():
            flask_migrate.upgrade()
        password_hash = accounts.hash_password(PASSWORD)

        def seed(session: Any) -> tuple[list[str], list[int]]:
            tier = Tier(slug="reader", name="Reader", position=0)
            session.add(tier)
            session.flush()
            service.set_price(session, tier, Interval.MONTH, "EUR", 500)
            service.sync_catalog(session, get_gateway())
            grant_votes(session, tier, votes=VOTES)
            round_ = Round(
                title="What should we cover next?",
                opens_at=utcnow() - timedelta(hours=1),
                closes_at=utcnow() + timedelta(days=1),
                results_live=True,
            )
            session.add(round_)
            session.flush()
            topics = [
                Topic(round_id=round_.id, title=f"Topic {n}", status=TopicStatus.APPROVED)
                for n in range(TOPICS)
            ]
            session.add_all(topics)
            emails = [f"patron{n:03d}@example.org" for n in range(PATRONS)]
            for email in [*emails, READER_EMAIL]:
                member = Member(
                    email=email,
                    display_name="Patron",
                    email_confirmed_at=utcnow(),
                    password_hash=password_hash,
                )
                session.add(member)
                session.flush()
                if email != READER_EMAIL:
                    subscribe(session, member, tier, commit=False)
            session.flush()
            return emails, [topic.id for topic in topics]

        patrons, topics = in_app(app, seed)
        stripe_patrons = [joined_in_stripe(app, sdk, f"stripe{n}@example.org") for n in range(3)]
        yield World(app, sdk, patrons, topics, stripe_patrons)
    finally:
        with app.app_context():
            db.engine.dispose()


def joined_in_stripe(app: Flask, sdk: Any, email: str) -> StripePatron:
    """A member who joined: customer, card and subscription in localstripe and in our tables."""

    def join(session: Any) -> StripePatron:
        member = Member(email=email, display_name="Stripe Patron", email_confirmed_at=utcnow())
        member.password_hash = accounts.hash_password(PASSWORD)
        session.add(member)
        session.flush()
        gateway = get_gateway()
        customer = service.ensure_customer(session, gateway, member)
        method = sdk.v1.payment_methods.attach("pm_card_visa", params={"customer": customer})
        sdk.v1.customers.update(
            customer, params={"invoice_settings": {"default_payment_method": method.id}}
        )
        data = gateway.create_subscription(
            customer_id=customer,
            plan_id=READER_EUR,
            member_id=member.id,
            idempotency_key=f"procs-{uuid.uuid4().hex}",
        )
        sync.apply_subscription(session, data, reason="joined")
        sync.apply_invoice(session, data["latest_invoice"], reason="first payment")
        return StripePatron(member.id, customer, data["id"])

    return in_app(app, join)


# --- the processes ----------------------------------------------------------------------------


@dataclass
class Servers:
    ports: list[int]
    worker: bool  # a queue worker runs (the queue exists in this version of the app)


def server_environment(
    database: str, redis_url: str, smtp_port: int, localstripe: LocalStripe
) -> dict[str, str]:
    """Production settings, as an operator would set them; nothing from the caller's shell
    that could change the app's behaviour."""
    kept = {
        name: value
        for name, value in os.environ.items()
        if name in ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "VIRTUAL_ENV", "PYTHONPATH")
    }
    return {
        **kept,
        "MEMBERSHIP_ENV": "production",
        "SECRET_KEY": secrets.token_urlsafe(48),
        "DATABASE_URL": database,
        "REDIS_URL": redis_url,
        "BASE_URL": "https://members.example.org",
        "TRUSTED_PROXIES": "1",
        "SMTP_HOST": "127.0.0.1",
        "SMTP_PORT": str(smtp_port),
        "SMTP_STARTTLS": "false",
        "STRIPE_SECRET_KEY": "sk_test_suite",
        "STRIPE_PUBLISHABLE_KEY": "pk_test_suite",
        "STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "STRIPE_API_BASE": localstripe.base_url,
        "STRIPE_MAX_NETWORK_RETRIES": "0",
        "PYTHONUNBUFFERED": "1",
    }


def start(command: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        # A session of its own: teardown signals the process group, workers included.
        return subprocess.Popen(
            command, env=env, cwd=PROJECT_ROOT, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip


def stop(processes: list[tuple[subprocess.Popen[bytes], signal.Signals]]) -> None:
    """Ask every process to stop at once, then wait; a process group still there after 10 s
    is killed (a leader that has not exited keeps its group id from being reused)."""
    for process, sig in processes:
        # To the leader only: gunicorn's master and RQ's worker stop their own children.
        process.send_signal(sig)
    deadline = time.monotonic() + 10
    for process, _ in processes:
        try:
            process.wait(timeout=max(deadline - time.monotonic(), 0.1))
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


def listening_port(process: subprocess.Popen[bytes], log: Path) -> int:
    """The port gunicorn bound (port 0: the system picked a free one), once it answers."""
    deadline = time.monotonic() + 45
    port = None
    while time.monotonic() < deadline and process.poll() is None:
        if port is None:
            found = re.search(r"Listening at: http://127\.0\.0\.1:(\d+)", log.read_text())
            port = int(found.group(1)) if found else None
        if port is not None:
            with contextlib.suppress(OSError):
                if request(port, "GET", "/healthz").status == 200:
                    return port
        time.sleep(0.1)
    pytest.fail(f"an app server did not start:\n{log.read_text()[-3000:]}")


@pytest.fixture(scope="module")
def servers(
    world: World,
    database: str,
    redis_url: str,
    smtp_server: tuple[Controller, Mailbox],
    localstripe: LocalStripe,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Servers]:
    env = server_environment(database, redis_url, smtp_server[0].port, localstripe)
    logs = tmp_path_factory.mktemp("processes")
    gunicorn = str(Path(sys.executable).parent / "gunicorn")
    flask = [sys.executable, "-m", "flask", "--app", "wsgi"]
    processes: list[tuple[subprocess.Popen[bytes], signal.Signals]] = []
    try:
        # The queue worker exists once webhooks are queued (REDIS_URL); until then the servers
        # process each webhook in its request, and there is nothing for a worker to do. Asked
        # while the servers boot.
        probe = start([*flask, "worker", "--help"], env, logs / "worker-help.log")
        processes.append((probe, signal.SIGKILL))
        command = [
            gunicorn, "-c", "python:membership.gunicorn_conf", "--bind", "127.0.0.1:0",
            "--workers", "2", "--threads", "4", "wsgi:app",
        ]  # fmt: skip
        apps = [start(command, env, logs / f"server{n}.log") for n in range(2)]
        # SIGINT: gunicorn's quick shutdown (SIGTERM would wait for keep-alive clients).
        processes += [(app, signal.SIGINT) for app in apps]
        has_worker = probe.wait(timeout=60) == 0
        if has_worker:
            # SIGTERM: RQ's warm shutdown, the job at hand is finished first.
            worker = start([*flask, "worker"], env, logs / "worker.log")
            processes.append((worker, signal.SIGTERM))
        ports = [listening_port(app, logs / f"server{n}.log") for n, app in enumerate(apps)]
        yield Servers(ports=ports, worker=has_worker)
    finally:
        stop(processes)


# --- a browser without a cookie jar's scruples ---------------------------------------------------


@dataclass
class Answer:
    status: int
    headers: http.client.HTTPMessage
    text: str

    @property
    def location(self) -> str:
        return self.headers.get("Location", "")


def request(
    port: int,
    method: str,
    path: str,
    *,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> Answer:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return Answer(response.status, response.headers, response.read().decode())
    finally:
        connection.close()


@dataclass
class Browser:
    """One reader's browser behind the TLS proxy. It sends its cookies to either server: the
    session cookie is ``Secure``, and between the proxy and the app the traffic is plain HTTP."""

    address: str  # the reader's address, as the proxy reports it
    cookies: dict[str, str] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def send(self, port: int, method: str, path: str, form: dict[str, str] | None = None) -> Answer:
        with self.lock:
            cookie = "; ".join(f"{name}={value}" for name, value in self.cookies.items())
        headers = {
            "X-Forwarded-For": self.address,
            "X-Forwarded-Proto": "https",
            # Over HTTPS, the CSRF check wants a referrer from this site, as browsers send.
            "Referer": f"https://127.0.0.1:{port}/",
        }
        if cookie:
            headers["Cookie"] = cookie
        body = None
        if form is not None:
            body = urllib.parse.urlencode(form).encode()
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        answer = request(port, method, path, body=body, headers=headers)
        self.keep_cookies(answer)
        return answer

    def keep_cookies(self, answer: Answer) -> None:
        for header in answer.headers.get_all("Set-Cookie") or []:
            for name, morsel in SimpleCookie(header).items():
                with self.lock:
                    if morsel["max-age"] == "0" or "1970" in morsel["expires"]:
                        self.cookies.pop(name, None)
                    else:
                        self.cookies[name] = morsel.value

    def csrf_token(self, port: int, page: str) -> str:
        answer = self.send(port, "GET", page)
        assert answer.status == 200, (page, answer.status)
        found = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', answer.text)
        assert found, f"no CSRF token on {page}"
        return found.group(1)

    def log_in(self, port: int, email: str, password: str = PASSWORD) -> Answer:
        token = self.csrf_token(port, "/account/login")
        form = {"email": email, "password": password, "csrf_token": token}
        return self.send(port, "POST", "/account/login", form)


def at_once(calls: list[Callable[[], Any]], threads: int) -> list[Any]:
    """Run the calls from ``threads`` threads that start together, each taking the next call
    as soon as it is free; the answers come back in the calls' order."""
    threads = min(threads, len(calls))
    answers: list[Any] = [None] * len(calls)
    failures: list[BaseException] = []
    pending = queue.SimpleQueue[int]()
    for index in range(len(calls)):
        pending.put(index)
    barrier = threading.Barrier(threads)

    def work() -> None:
        barrier.wait(timeout=30)
        while True:
            try:
                index = pending.get_nowait()
            except queue.Empty:
                return
            try:
                answers[index] = calls[index]()
            except BaseException as exc:  # raised below, not lost in the thread
                failures.append(exc)

    running = [threading.Thread(target=work) for _ in range(threads)]
    for thread in running:
        thread.start()
    for thread in running:
        thread.join(timeout=180)
    assert not any(thread.is_alive() for thread in running), "a request never finished"
    if failures:
        raise failures[0]
    return answers


def count(app: Flask, model: Any, *where: Any) -> int:
    return in_app(app, lambda s: s.scalar(select(func.count()).select_from(model).where(*where)))


# --- votes ---------------------------------------------------------------------------------------


def test_votes_sent_to_both_servers_at_once_are_counted_exactly(world, servers):
    """Each patron logs in on one server, opens the ballot on the other, and votes through
    both at once: three topics for a budget of two, and the first one twice. Every vote the
    servers accepted is in the database, and nothing else: two per patron, one per topic."""
    browsers = [Browser(address=f"10.1.{n // 250}.{n % 250 + 1}") for n in range(PATRONS)]
    logins = at_once(
        [
            lambda n=n: browsers[n].log_in(servers.ports[n % 2], world.patrons[n])
            for n in range(PATRONS)
        ],
        threads=8,
    )
    assert [answer.status for answer in logins] == [302] * PATRONS, [
        (answer.status, answer.text[:200]) for answer in logins if answer.status != 302
    ]
    # The vote forms' token, read from the other server than the one that logged the patron in.
    tokens = at_once(
        [
            lambda n=n: browsers[n].csrf_token(servers.ports[(n + 1) % 2], "/vote")
            for n in range(PATRONS)
        ],
        threads=8,
    )

    def vote(n: int, attempt: int, topic: int) -> Callable[[], tuple[int, int, Answer]]:
        port = servers.ports[(n + attempt) % 2]
        form = {"csrf_token": tokens[n]}
        path = f"/vote/topics/{topic}/vote"
        return lambda: (n, topic, browsers[n].send(port, "POST", path, form))

    calls = []
    for n in range(PATRONS):
        mine = world.topics[n % TOPICS :] + world.topics[: n % TOPICS]
        calls += [vote(n, attempt, topic) for attempt, topic in enumerate([*mine, mine[0]])]
    answers = at_once(calls, threads=16)

    refused_for_login = [a for _, _, a in answers if "/account/login" in a.location]
    assert not refused_for_login, "a session made on one server was not known to the other"
    statuses = Counter(answer.status for _, _, answer in answers)
    assert set(statuses) <= {302, 409}, statuses
    accepted = [(n, topic) for n, topic, answer in answers if answer.status == 302]
    assert Counter(n for n, _ in accepted) == dict.fromkeys(range(PATRONS), VOTES)
    assert len(set(accepted)) == len(accepted), "a patron's vote for one topic was taken twice"

    in_database = in_app(
        world.app,
        lambda s: dict(
            s.execute(select(Vote.topic_id, func.count()).group_by(Vote.topic_id)).all()
        ),
    )
    assert in_database == Counter(topic for _, topic in accepted)
    assert sum(in_database.values()) == PATRONS * VOTES
    ballots = in_app(world.app, lambda s: s.execute(select(Ballot.used, Ballot.budget)).all())
    assert len(ballots) == PATRONS
    assert all(used == budget == VOTES for used, budget in ballots), ballots


# --- duplicate webhooks --------------------------------------------------------------------------


def wait_until_processed(
    app: Flask, event_ids: list[str], *, queued: bool, seconds: float = 45
) -> None:
    """With the queue, the servers answer once an event is stored; a worker applies it."""
    deadline = time.monotonic() + seconds
    done = (EventStatus.PROCESSED, EventStatus.IGNORED)
    while True:
        statuses = in_app(
            app,
            lambda s: s.scalars(
                select(WebhookEvent.status).where(WebhookEvent.stripe_event_id.in_(event_ids))
            ).all(),
        )
        if len(statuses) >= len(event_ids) and all(status in done for status in statuses):
            return
        where = "by the queue worker" if queued else "in the request"
        assert time.monotonic() < deadline, f"not processed {where} in {seconds} s: {statuses}"
        time.sleep(0.2)


def states_of(app: Flask, member_id: int) -> list[tuple[MembershipState, MembershipState]]:
    return in_app(
        app,
        lambda s: [
            (event.from_state, event.to_state)
            for event in s.scalars(
                select(MembershipEvent)
                .where(MembershipEvent.member_id == member_id)
                .order_by(MembershipEvent.id)
            )
        ],
    )


def test_each_stripe_event_delivered_to_both_servers_many_times_is_applied_once(world, servers):
    """Stripe delivers again when it is unsure, and a load balancer sends each delivery to any
    server: a renewal, a cancellation at the period's end and a cancellation now, four copies
    of each to each server at once. Each event is stored once and applied once."""
    renewing, canceling, leaving = world.stripe_patrons
    sdk = world.sdk
    invoice = sdk.v1.invoices.create(
        params={"customer": renewing.customer_id, "subscription": renewing.subscription_id}
    )
    invoice = sdk.v1.invoices.pay(invoice.id).to_dict()
    sdk.v1.subscriptions.update(canceling.subscription_id, params={"cancel_at_period_end": True})
    ended = sdk.v1.subscriptions.cancel(leaving.subscription_id).to_dict()
    events = [
        stripe_event("invoice.paid", invoice),
        stripe_event(
            "customer.subscription.updated",
            sdk.v1.subscriptions.retrieve(canceling.subscription_id).to_dict(),
        ),
        stripe_event("customer.subscription.deleted", ended),
    ]
    payments = count(world.app, Payment)
    before = {p.member_id: states_of(world.app, p.member_id) for p in world.stripe_patrons}
    copies = 4

    def deliver(event: Json, port: int) -> Callable[[], Answer]:
        body, headers = signed(event)
        return lambda: request(port, "POST", "/webhooks/stripe", body=body, headers=headers)

    calls = [deliver(e, port) for e in events for port in servers.ports for _ in range(copies)]
    answers = at_once(calls, threads=len(calls))

    refused = [(a.status, a.text) for a in answers if not 200 <= a.status < 300]
    assert not refused, refused
    event_ids = [event["id"] for event in events]
    wait_until_processed(world.app, event_ids, queued=servers.worker)
    stored = in_app(
        world.app,
        lambda s: s.execute(select(WebhookEvent.stripe_event_id, WebhookEvent.status)).all(),
    )
    assert sorted(stored) == sorted((event_id, EventStatus.PROCESSED) for event_id in event_ids)
    # The renewal: one payment more, for that invoice.
    assert count(world.app, Payment) == payments + 1
    assert count(world.app, Payment, Payment.stripe_invoice_id == invoice["id"]) == 1
    # The cancellations: one membership event each, to the state Stripe's object implies.
    assert states_of(world.app, renewing.member_id) == before[renewing.member_id]
    assert states_of(world.app, canceling.member_id) == [
        *before[canceling.member_id],
        (MembershipState.ACTIVE, MembershipState.CANCELING),
    ]
    assert states_of(world.app, leaving.member_id) == [
        *before[leaving.member_id],
        (MembershipState.ACTIVE, MembershipState.ENDED),
    ]
    for patron in world.stripe_patrons:
        ours = in_app(
            world.app,
            lambda s, patron=patron: s.execute(
                select(Subscription.status, Subscription.cancel_at_period_end).where(
                    Subscription.stripe_subscription_id == patron.subscription_id
                )
            ).one(),
        )
        theirs = sdk.v1.subscriptions.retrieve(patron.subscription_id)
        assert (ours.status.value, ours.cancel_at_period_end) == (
            theirs["status"],
            bool(theirs["cancel_at_period_end"]),
        ), patron


# --- login attempts ------------------------------------------------------------------------------


def test_wrong_passwords_are_counted_for_all_servers_together(world, servers):
    """Someone tries passwords from one address, spreading the attempts over both servers (and
    their workers): the limit holds for the total, because the counts live in Redis."""
    allowed = limits.parse_many(LOGIN_LIMIT)[0].amount  # per minute
    attacker = Browser(address="203.0.113.66")
    tries = allowed + 6
    tokens = [attacker.csrf_token(servers.ports[n % 2], "/account/login") for n in range(2)]

    def attempt(n: int) -> Callable[[], int]:
        form = {"email": READER_EMAIL, "password": f"guess-{n}", "csrf_token": tokens[n % 2]}
        return lambda: attacker.send(servers.ports[n % 2], "POST", "/account/login", form).status

    statuses = at_once([attempt(n) for n in range(tries)], threads=8)

    assert Counter(statuses) == {400: allowed, 429: tries - allowed}, Counter(statuses)
    # Even the right password waits now, on either server...
    for port in servers.ports:
        form = {"email": READER_EMAIL, "password": PASSWORD, "csrf_token": tokens[0]}
        assert attacker.send(port, "POST", "/account/login", form).status == 429
    # ...while the reader, from their own address, logs in on one server and is known on both.
    reader = Browser(address="198.51.100.7")
    assert reader.log_in(servers.ports[0], READER_EMAIL).status == 302
    for port in servers.ports:
        page = reader.send(port, "GET", "/account/")
        assert page.status == 200, (port, page.status, page.location)
