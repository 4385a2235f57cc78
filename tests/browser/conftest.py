"""Browser fixtures: the app served for real, headless Chromium, and helpers to act as a person.

The rolled-back transactions of ``tests/conftest.py`` cannot reach a server running in another
thread, so the browser tests get their own live server on a fresh SQLite file, for as long as
the tests in this folder run. Nothing is rolled back: every test makes its own accounts, with
unique email addresses. Each test gets a fresh browser context (no cookies carried over);
Chromium starts once.

The live server talks to the session's localstripe, offers the demo tiers (synced there as
Plans), and receives localstripe's signed webhooks at ``/webhooks/stripe`` while the browser
tests run; when they are done the registration is switched off, so that later tests' Stripe
objects never reach this server's database.
"""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TypeVar

import flask_migrate
import pytest
from aiosmtpd.controller import Controller
from flask import Flask
from playwright.sync_api import (
    Browser,
    BrowserContext,
    Locator,
    Page,
    Playwright,
    expect,
    sync_playwright,
)
from playwright.sync_api import Error as PlaywrightError
from sqlalchemy import select
from werkzeug.serving import BaseWSGIServer, make_server

from membership import create_app
from membership.accounts import service
from membership.accounts.models import Member, Role
from membership.billing import get_gateway, sync
from membership.billing import service as billing
from membership.billing.models import EventStatus, Payment, Subscription, Tier, WebhookEvent
from membership.billing.rules import Interval
from membership.cli import DEMO_TIERS
from membership.database import utcnow
from membership.extensions import db, limiter
from tests.conftest import (
    PASSWORD,
    LocalStripe,
    Mailbox,
    settings_for_tests,
    skip_or_fail,
    stripe_settings,
)

T = TypeVar("T")

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
WEBHOOK_ID = "browser-live-server"  # our own registration: other tests may use theirs


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

    def sync_catalog(self) -> None:
        """Make sure every tier and price exists in localstripe (it may have been emptied)."""
        with self.app.app_context():
            gateway = get_gateway()
            for tier in db.session.scalars(select(Tier).order_by(Tier.id)):
                product = sync.PRODUCT_PREFIX + tier.slug
                gateway.ensure_product(product, tier.name)
                for price in tier.prices:
                    gateway.ensure_plan(
                        price.stripe_plan_id,
                        product_id=product,
                        amount=price.amount,
                        currency=price.currency,
                        interval=price.interval.value,
                    )

    def subscriptions(self, email: str) -> list[SubscriptionRow]:
        """The member's subscriptions as the database has them, oldest first."""
        with self.app.app_context():
            rows = db.session.scalars(
                select(Subscription)
                .join(Member, Subscription.member_id == Member.id)
                .where(Member.email == email)
                .order_by(Subscription.id)
            )
            return [
                SubscriptionRow(
                    tier=row.price.tier.name,
                    amount=row.price.amount,
                    currency=row.price.currency,
                    interval=row.price.interval.value,
                    status=row.status.value,
                    live=row.live,
                    cancel_at_period_end=row.cancel_at_period_end,
                    cancel_reason=row.cancel_reason,
                    current_period_end=row.current_period_end,
                )
                for row in rows
            ]

    def payments(self, *, email: str) -> list[PaymentRow]:
        """Payments by the member with this email, or gifts made without an account with it."""
        with self.app.app_context():
            member_id = db.session.scalar(select(Member.id).where(Member.email == email))
            owner = Payment.member_id == member_id if member_id else Payment.email == email
            rows = db.session.scalars(select(Payment).where(owner).order_by(Payment.id))
            return [
                PaymentRow(
                    kind=row.kind.value,
                    status=row.status.value,
                    amount=row.amount,
                    currency=row.currency,
                    stripe_payment_intent_id=row.stripe_payment_intent_id,
                    receipt_sent=row.receipt_sent,
                )
                for row in rows
            ]

    def wait_for_webhook(self, event_type: str, object_id: str, timeout: float = 5.0) -> None:
        """Wait until localstripe's ``event_type`` event about ``object_id`` has been processed."""

        def processed() -> bool:
            with self.app.app_context():
                rows = db.session.scalars(
                    select(WebhookEvent).where(WebhookEvent.type == event_type)
                ).all()
                for row in rows:
                    if json.loads(row.payload)["data"]["object"].get("id") != object_id:
                        continue
                    assert row.status is not EventStatus.FAILED, (
                        f"webhook {event_type} for {object_id} failed: {row.error}"
                    )
                    return row.status in (EventStatus.PROCESSED, EventStatus.IGNORED)
                return False

        wait_until(processed, timeout, f"no {event_type} webhook for {object_id}")


@dataclass(frozen=True)
class SubscriptionRow:
    tier: str
    amount: int
    currency: str
    interval: str
    status: str
    live: bool
    cancel_at_period_end: bool
    cancel_reason: str | None
    current_period_end: datetime | None


@dataclass(frozen=True)
class PaymentRow:
    kind: str
    status: str
    amount: int
    currency: str
    stripe_payment_intent_id: str | None
    receipt_sent: bool


def wait_until(check: Callable[[], T], timeout: float, message: str) -> T:
    """Poll ``check`` until it returns something truthy (for what happens after a response)."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(message)
        time.sleep(0.05)


def seed_demo_tiers(app: Flask) -> None:
    """The demo tiers (Reader, Insider, Co-creator; EUR, USD, GBP), as ``seed-demo`` makes them."""
    with app.app_context():
        for position, (slug, name, description, prices) in enumerate(DEMO_TIERS):
            tier = Tier(slug=slug, name=name, description=description, position=position)
            db.session.add(tier)
            db.session.flush()
            for currency, (monthly, yearly) in prices.items():
                billing.set_price(db.session, tier, Interval.MONTH, currency, monthly)
                billing.set_price(db.session, tier, Interval.YEAR, currency, yearly)
        billing.sync_catalog(db.session, get_gateway())
        db.session.commit()


@pytest.fixture(scope="package")
def live_server(
    tmp_path_factory: pytest.TempPathFactory,
    smtp_server: tuple[Controller, Mailbox],
    localstripe: LocalStripe,
) -> Iterator[LiveServer]:
    database_url = f"sqlite:///{tmp_path_factory.mktemp('browser-db') / 'live.sqlite3'}"
    settings = {
        **settings_for_tests(database_url, smtp_server[0].port),
        **stripe_settings(localstripe),
    }
    app = create_app(settings)
    # Plain HTTP on 127.0.0.1, whatever MEMBERSHIP_ENV says in the environment.
    app.config.update(SESSION_COOKIE_SECURE=False, REMEMBER_COOKIE_SECURE=False)
    with app.app_context():
        flask_migrate.upgrade()
    seed_demo_tiers(app)

    # Port 0: the system picks a free port at bind time (no race with another process).
    server: BaseWSGIServer = make_server("127.0.0.1", 0, app, threaded=True)
    url = f"http://127.0.0.1:{server.server_port}"
    app.config["BASE_URL"] = url  # links in emails point at this server
    thread = threading.Thread(target=server.serve_forever, name="live-server", daemon=True)
    thread.start()
    webhook = f"{url}/webhooks/stripe"
    localstripe.register_webhook(webhook, settings["STRIPE_WEBHOOK_SECRET"], name=WEBHOOK_ID)
    try:
        yield LiveServer(app=app, url=url)
    finally:  # no more deliveries here
        localstripe.register_webhook(webhook, name=WEBHOOK_ID, events=[])
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


# --- paying: localstripe's stand-in for Stripe.js -----------------------------------------------

CARD_OK = "4242424242424242"
CARD_DECLINED_AT_SETUP = "4000000000000002"  # refused when the card is checked
CARD_CHARGES_DECLINED = "4000000000000341"  # accepted, then every charge is declined
CARD_3D_SECURE = "4000002500003155"  # every charge asks for 3-D Secure


@pytest.fixture
def stripe_catalog(live_server: LiveServer) -> None:
    """The demo tiers exist in localstripe for this test (another test may have emptied it)."""
    live_server.sync_catalog()


def enter_card(page: Page, number: str) -> None:
    """Type a test card into the mock Card Element: plain inputs known only by placeholder."""
    element = page.locator("#card-element")
    for placeholder, value in (
        ("number", number),
        ("exp_month", "12"),
        ("exp_year", "34"),  # two digits: the mock makes it 2034
        ("cvc", "123"),
        ("postal_code", "10115"),
    ):
        field = element.get_by_placeholder(placeholder, exact=True)
        field.clear()
        field.press_sequentially(value)  # real key presses: the mock listens to input events


def card_message(page: Page) -> Locator:
    """The card form's live message (errors from the bank, progress)."""
    return page.locator("#card-message")


def answer_3d_secure(page: Page, *, complete: bool, until: Locator) -> int:
    """Answer each 3-D Secure prompt until ``until`` shows; return how many prompts there were.

    localstripe asks when the card is checked and again for each payment; real Stripe usually
    asks once, or not at all: any number is fine here.
    """
    name = "Complete authentication" if complete else "Fail authentication"
    answer = page.get_by_role("button", name=name)
    prompts = 0
    while True:
        expect(answer.or_(until).first).to_be_visible()
        if not answer.is_visible():
            return prompts
        answer.click()
        prompts += 1
        assert prompts <= 3, "3-D Secure asked more than three times"


def become_patron(page: Page, email: str, *, tier: str = "Reader") -> None:
    """Log in and join ``tier`` monthly in EUR with a card that works, through the pages."""
    page.goto("/account/login")
    log_in(page, email)
    expect(page.get_by_role("heading", name="My membership", level=1)).to_be_visible()
    page.goto("/support?interval=month&currency=EUR")
    page.get_by_role("button", name=f"Join as {tier}").click()
    page.get_by_role("button", name="Continue to payment").click()
    enter_card(page, CARD_OK)
    page.get_by_role("button", name="Become a patron").click()
    expect(page.get_by_text("Welcome, and thank you! You are now a patron.")).to_be_visible()
