"""Shared fixtures: the app on a real database (SQLite, and PostgreSQL when TEST_DATABASE_URL is
set), a real SMTP server, a test client that speaks CSRF, and factories.

Every test that uses the database runs once per backend. Each gets its own transaction that is
rolled back at the end; the app's own commits become savepoints inside it.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import flask_migrate
import pytest
import sqlalchemy as sa
from aiosmtpd.controller import Controller
from flask import Flask
from flask.globals import _cv_app
from flask.testing import FlaskClient
from sqlalchemy.orm import Session, scoped_session, sessionmaker

from membership import create_app
from membership.accounts import service as accounts
from membership.accounts.models import Member, Role
from membership.config import normalise_database_url
from membership.database import utcnow
from membership.emails import deliver_pending
from membership.extensions import db, limiter
from tests.support.stripe_events import WEBHOOK_SECRET

IN_CI = os.environ.get("CI", "").lower() == "true"
PASSWORD = "correct horse battery staple"


# --- under CI, a skipped test is a failed run -------------------------------------------------


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: Any) -> None:
    skipped = terminalreporter.stats.get("skipped", [])
    reasons: dict[str, int] = {}
    for report in skipped:
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        reason = reason.removeprefix("Skipped: ")
        reasons[reason] = reasons.get(reason, 0) + 1
    for reason, count in sorted(reasons.items()):
        terminalreporter.write_line(f"skipped {count}: {reason}", yellow=True)
    if IN_CI and skipped:
        terminalreporter.write_line(
            f"CI=true: {len(skipped)} test(s) were skipped; under CI every test must run "
            "(PostgreSQL and Chromium are installed by .ci/run).",
            red=True,
        )


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if IN_CI and reporter is not None and reporter.stats.get("skipped"):
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def skip_or_fail(reason: str) -> None:
    """Skip on a developer's machine that lacks a service; fail under CI, where it must exist."""
    if IN_CI:
        pytest.fail(f"{reason} (required under CI)")
    pytest.skip(reason)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- SMTP -------------------------------------------------------------------------------------


@dataclass
class Mailbox:
    """What the test SMTP server received."""

    messages: list[EmailMessage] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = message_from_bytes(envelope.content, policy=policy.default)
        assert isinstance(message, EmailMessage)
        self.messages.append(message)
        return "250 Message accepted for delivery"

    def to(self, address: str) -> list[EmailMessage]:
        return [m for m in self.messages if m["To"] == address]

    def last_to(self, address: str) -> EmailMessage:
        found = self.to(address)
        assert found, f"no email to {address}; got {[m['To'] for m in self.messages]}"
        return found[-1]

    @staticmethod
    def text(message: EmailMessage) -> str:
        body = message.get_body(preferencelist=("plain",))
        assert body is not None
        return body.get_content()

    def link_in_last(self, address: str, pattern: str = r"http://localhost\S+") -> str:
        match = re.search(pattern, self.text(self.last_to(address)))
        assert match, "no link in the email"
        return match.group(0).removeprefix("http://localhost")


@pytest.fixture(scope="session")
def smtp_server() -> Iterator[tuple[Controller, Mailbox]]:
    mailbox = Mailbox()
    controller = Controller(mailbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    yield controller, mailbox
    controller.stop()


@pytest.fixture
def mailbox(smtp_server: tuple[Controller, Mailbox]) -> Mailbox:
    box = smtp_server[1]
    box.messages.clear()
    return box


# --- Stripe: localstripe as a real server process ---------------------------------------------


@dataclass
class LocalStripe:
    base_url: str

    def flush(self) -> None:
        """Forget every object (webhook registrations stay)."""
        request = urllib.request.Request(f"{self.base_url}/_config/data", method="DELETE")
        urllib.request.urlopen(request, timeout=5).close()

    def register_webhook(
        self,
        url: str,
        secret: str = WEBHOOK_SECRET,
        *,
        name: str = "tests",
        events: list[str] | None = None,
    ) -> None:
        """Send events to ``url``. localstripe cannot forget a webhook: to stop one, register
        the same ``name`` again with ``events=[]``."""
        body: dict[str, Any] = {"url": url, "secret": secret}
        if events is not None:
            body["events"] = events
        request = urllib.request.Request(
            f"{self.base_url}/_config/webhooks/{name}",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        urllib.request.urlopen(request, timeout=5).close()


@pytest.fixture(scope="session")
def localstripe() -> Iterator[LocalStripe]:
    """localstripe on 127.0.0.1 and a free port, for the whole test session."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.support.localstripe_server", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    server = LocalStripe(f"http://127.0.0.1:{port}")
    deadline = time.monotonic() + 20
    while True:
        try:
            urllib.request.urlopen(f"{server.base_url}/js.stripe.com/v3/", timeout=1).close()
            break
        except OSError:
            if time.monotonic() > deadline or process.poll() is not None:
                process.kill()
                pytest.fail("localstripe did not start")
            time.sleep(0.05)
    yield server
    process.terminate()
    process.wait(timeout=10)


def stripe_settings(localstripe: LocalStripe) -> dict[str, Any]:
    return {
        "STRIPE_SECRET_KEY": "sk_test_suite",
        "STRIPE_PUBLISHABLE_KEY": "pk_test_suite",
        "STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "STRIPE_API_BASE": localstripe.base_url,
        "STRIPE_MAX_NETWORK_RETRIES": 0,
    }


# --- database and app -------------------------------------------------------------------------


def _reset_postgres(url: str) -> None:
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("DROP SCHEMA public CASCADE"))
        conn.execute(sa.text("CREATE SCHEMA public"))
    engine.dispose()


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path_factory.mktemp('db') / 'test.sqlite3'}"
    url = os.environ.get("TEST_DATABASE_URL", "")
    if not url:
        skip_or_fail(
            "PostgreSQL half skipped: set TEST_DATABASE_URL, e.g. "
            "postgresql://postgres@127.0.0.1:5432/membership_test"
        )
    url = normalise_database_url(url)
    try:
        _reset_postgres(url)
    except sa.exc.OperationalError as exc:
        skip_or_fail(f"PostgreSQL at TEST_DATABASE_URL is unreachable: {exc.orig}")
    return url


def settings_for_tests(database_url: str, smtp_port: int) -> dict[str, Any]:
    return {
        "TESTING": True,
        "SECRET_KEY": "test-secret-key-that-is-long-enough-for-signing",
        "SQLALCHEMY_DATABASE_URI": database_url,
        "BASE_URL": "http://localhost",
        "SMTP_HOST": "127.0.0.1",
        "SMTP_PORT": smtp_port,
        "SMTP_STARTTLS": False,
        "SMTP_TIMEOUT": 5,
        "MAIL_FROM": "Test Newsroom <members@example.org>",
        "NEWSROOM_NAME": "Test Newsroom",
        "RATELIMIT_STORAGE_URI": "memory://",
    }


@pytest.fixture(scope="session")
def app(
    database_url: str, smtp_server: tuple[Controller, Mailbox], localstripe: LocalStripe
) -> Iterator[Flask]:
    application = create_app(
        {**settings_for_tests(database_url, smtp_server[0].port), **stripe_settings(localstripe)}
    )
    with application.app_context():
        flask_migrate.upgrade()
    yield application
    with application.app_context():
        db.engine.dispose()


def _scope() -> int:
    """One session per app context (as in the app), and one for the test body outside any."""
    return id(_cv_app.get(None))


@pytest.fixture
def db_session(app: Flask) -> Iterator[scoped_session[Session]]:
    """A transaction for the test; the app's commits are savepoints inside it, rolled back after.

    No app context stays pushed during the test: each request gets its own, as in production
    (a shared one would leak ``g`` between requests).
    """
    with app.app_context():
        engine = db.engine
    connection = engine.connect()
    outer = connection.begin()
    original = db.session
    factory = sessionmaker(bind=connection, join_transaction_mode="create_savepoint")
    db.session = scoped_session(factory, scopefunc=_scope)
    limiter.reset()
    try:
        yield db.session
    finally:
        db.session.remove()
        db.session = original
        outer.rollback()
        connection.close()


class CsrfClient(FlaskClient):
    """A test client that fills in the CSRF token, as a browser with the page open would."""

    def csrf_token(self, page: str = "/account/login") -> str:
        html = self.get(page).get_data(as_text=True)
        match = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', html) or re.search(
            r'name="csrf_token" value="([^"]+)"', html
        )
        assert match, f"no CSRF token on {page}"
        return match.group(1)

    def submit(self, url: str, data: dict[str, Any] | None = None, **kwargs: Any) -> Any:
        form = dict(data or {})
        form.setdefault("csrf_token", self.csrf_token(kwargs.pop("token_page", "/account/login")))
        return self.post(url, data=form, **kwargs)


@pytest.fixture
def client(app: Flask, db_session: Any) -> FlaskClient:
    app.test_client_class = CsrfClient
    return app.test_client()


@pytest.fixture
def another_client(app: Flask, db_session: Any) -> FlaskClient:
    app.test_client_class = CsrfClient
    return app.test_client()


@pytest.fixture
def runner(app: Flask, db_session: Any) -> Any:
    return app.test_cli_runner()


# --- factories --------------------------------------------------------------------------------

_hash_cache: dict[str, str] = {}


def _hash(password: str) -> str:
    if password not in _hash_cache:
        _hash_cache[password] = accounts.hash_password(password)
    return _hash_cache[password]


@pytest.fixture
def make_member(db_session: Any) -> Any:
    counter = iter(range(1, 10_000))

    def make(
        email: str | None = None,
        *,
        password: str = PASSWORD,
        role: Role = Role.READER,
        confirmed: bool = True,
        display_name: str = "Test Reader",
    ) -> Member:
        member = Member(
            email=email or f"reader{next(counter)}@example.org",
            display_name=display_name,
            role=role,
            email_confirmed_at=utcnow() if confirmed else None,
        )
        member.password_hash = _hash(password)
        db_session.add(member)
        db_session.commit()
        return member

    return make


@pytest.fixture
def login(client: CsrfClient) -> Any:
    def do_login(member_or_email: Member | str, password: str = PASSWORD, c: Any = None) -> Any:
        email = member_or_email if isinstance(member_or_email, str) else member_or_email.email
        response = (c or client).submit("/account/login", {"email": email, "password": password})
        assert response.status_code == 302, response.get_data(as_text=True)
        return response

    return do_login


@pytest.fixture
def deliver(app: Flask, db_session: Any) -> Any:
    """Send queued mail now (what the after-request hook and the CLI do)."""

    def run() -> tuple[int, int]:
        with app.app_context():
            return deliver_pending(db.session)

    return run


# --- billing ----------------------------------------------------------------------------------


@pytest.fixture
def stripe(app: Flask, localstripe: LocalStripe) -> Any:
    """The app's Stripe gateway, talking to an emptied localstripe.

    No app context stays pushed (requests would share its ``g``); the gateway needs none.
    """
    from membership.billing import get_gateway

    localstripe.flush()
    with app.app_context():
        return get_gateway()


@pytest.fixture
def catalog(db_session: Any, stripe: Any) -> dict[str, Any]:
    """The demo tiers (Reader, Insider, Co-creator in EUR, USD, GBP), synced to localstripe."""
    from membership.billing import service as billing
    from membership.billing.models import Tier
    from membership.billing.rules import Interval
    from membership.cli import DEMO_TIERS

    tiers = {}
    for position, (slug, name, description, prices) in enumerate(DEMO_TIERS):
        tier = Tier(slug=slug, name=name, description=description, position=position)
        db_session.add(tier)
        db_session.flush()
        for currency, (monthly, yearly) in prices.items():
            billing.set_price(db_session, tier, Interval.MONTH, currency, monthly)
            billing.set_price(db_session, tier, Interval.YEAR, currency, yearly)
        tiers[slug] = tier
    billing.sync_catalog(db_session, stripe)
    db_session.commit()
    return tiers


@pytest.fixture
def fresh_database(database_url: str, tmp_path: Path) -> Iterator[str]:
    """An empty database on the backend of ``database_url``, for commits that really happen
    (concurrency tests): a file for SQLite, a new database (dropped after) for PostgreSQL."""
    if database_url.startswith("sqlite"):
        yield f"sqlite:///{tmp_path / 'fresh.sqlite3'}"
        return
    server = sa.make_url(database_url)
    name = f"{server.database}_fresh_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(server, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
        yield server.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
