"""Browser fixtures: the app served for real, headless Chromium, and helpers to act as a person.

The rolled-back transactions of ``tests/conftest.py`` cannot reach a server running in another
thread, so the browser tests get their own live server on a fresh SQLite file for the whole
session. Nothing is rolled back: every test makes its own accounts, with unique email addresses.
Each test gets a fresh browser context (no cookies carried over); Chromium starts once.
"""

from __future__ import annotations

import re
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import flask_migrate
import pytest
from aiosmtpd.controller import Controller
from flask import Flask
from playwright.sync_api import Browser, BrowserContext, Page, Playwright, sync_playwright
from playwright.sync_api import Error as PlaywrightError
from werkzeug.serving import BaseWSGIServer, make_server

from membership import create_app
from membership.accounts import service
from membership.accounts.models import Member, Role
from membership.database import utcnow
from membership.extensions import db, limiter
from tests.conftest import PASSWORD, Mailbox, settings_for_tests, skip_or_fail

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-quic",
    "--no-first-run",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
TIMEOUT_MS = 5_000  # a page of this app answers in milliseconds; waiting longer hides a bug


# --- the live server ---------------------------------------------------------------------------


@dataclass
class LiveServer:
    """The app served over HTTP from a thread, with helpers to prepare accounts directly."""

    app: Flask
    url: str  # e.g. http://127.0.0.1:43210, no trailing slash

    def add_member(
        self,
        email: str,
        *,
        password: str = PASSWORD,
        display_name: str = "Test Reader",
        confirmed: bool = True,
    ) -> None:
        """A reader account, as if they had signed up (and confirmed) earlier."""
        with self.app.app_context():
            member = Member(
                email=email,
                display_name=display_name,
                role=Role.READER,
                email_confirmed_at=utcnow() if confirmed else None,
            )
            member.password_hash = service.hash_password(password)
            db.session.add(member)
            db.session.commit()

    def add_staff(self, email: str, *, password: str = PASSWORD) -> None:
        """A staff account, made the way the ``create-staff`` command makes one."""
        with self.app.app_context():
            service.create_or_promote_staff(db.session, email=email, password=password)
            db.session.commit()


@pytest.fixture(scope="session")
def live_server(
    tmp_path_factory: pytest.TempPathFactory, smtp_server: tuple[Controller, Mailbox]
) -> Iterator[LiveServer]:
    database_url = f"sqlite:///{tmp_path_factory.mktemp('browser-db') / 'live.sqlite3'}"
    app = create_app(settings_for_tests(database_url, smtp_server[0].port))
    # Plain HTTP on 127.0.0.1, whatever MEMBERSHIP_ENV says in the environment.
    app.config.update(SESSION_COOKIE_SECURE=False, REMEMBER_COOKIE_SECURE=False)
    with app.app_context():
        flask_migrate.upgrade()

    # Port 0: the system picks a free port at bind time (no race with another process).
    server: BaseWSGIServer = make_server("127.0.0.1", 0, app, threaded=True)
    url = f"http://127.0.0.1:{server.server_port}"
    app.config["BASE_URL"] = url  # links in emails point at this server
    thread = threading.Thread(target=server.serve_forever, name="live-server", daemon=True)
    thread.start()
    try:
        yield LiveServer(app=app, url=url)
    finally:
        server.shutdown()
        thread.join(timeout=10)
        server.server_close()
        with app.app_context():
            db.engine.dispose()


# --- the browser -------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def playwright() -> Iterator[Playwright]:
    if not CHROMIUM.exists():
        skip_or_fail(f"Chromium is not installed at {CHROMIUM} (apt-get install chromium)")
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="session")
def browser(playwright: Playwright) -> Iterator[Browser]:
    try:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
    except PlaywrightError as exc:
        skip_or_fail(f"Chromium at {CHROMIUM} does not start: {exc.message.splitlines()[0]}")
    yield chromium
    chromium.close()


@pytest.fixture
def context(browser: Browser, live_server: LiveServer) -> Iterator[BrowserContext]:
    """A fresh browser profile for each test: no cookies from another test."""
    limiter.reset()  # every test comes from 127.0.0.1; each starts with the full allowance
    fresh = browser.new_context(base_url=live_server.url, viewport={"width": 1280, "height": 900})
    fresh.set_default_timeout(TIMEOUT_MS)
    fresh.set_default_navigation_timeout(TIMEOUT_MS)
    yield fresh
    fresh.close()


@pytest.fixture
def page(context: BrowserContext) -> Page:
    return context.new_page()


# --- helpers -----------------------------------------------------------------------------------


def unique_email(who: str = "reader") -> str:
    """An address no other test, and no earlier run, uses (nothing is rolled back here)."""
    return f"{who}-{uuid.uuid4().hex[:10]}@example.org"


def link_from_email(mailbox: Mailbox, address: str, server: LiveServer, path: str) -> str:
    """The link to ``path...`` in the last email to ``address`` (waits briefly for delivery)."""
    pattern = rf"{re.escape(server.url + path)}\S+"
    deadline = time.monotonic() + 5
    while not mailbox.to(address) and time.monotonic() < deadline:
        time.sleep(0.05)
    return mailbox.link_in_last(address, pattern=pattern)


def log_in(page: Page, email: str, password: str = PASSWORD) -> None:
    """Fill in the login form that is on the page and send it."""
    page.get_by_label("Email address").fill(email)
    page.get_by_label("Password", exact=True).fill(password)
    page.get_by_role("button", name="Log in", exact=True).click()


def screenshot(page: Page, name: str) -> Path:
    """Save a full-page screenshot under test-artifacts/ (kept by CI, ignored by git)."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
