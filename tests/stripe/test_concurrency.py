"""Requests that race: Stripe's repeated deliveries, and a reader's double click.

These need real commits in real concurrent transactions, so they cannot use the rolled-back
``db_session``: each test builds its own app on a fresh database (a temporary SQLite file, or a new
PostgreSQL database on the server of ``TEST_DATABASE_URL``, dropped afterwards) and sends its
requests from threads, each with its own test client, started together by a barrier.

On SQLite the app begins every transaction with BEGIN IMMEDIATE (and waits up to busy_timeout for
the write lock), so writers take turns; on PostgreSQL the guards are the unique constraints, the
``SELECT ... FOR UPDATE`` on the stored event and the conditional UPDATE that claims a join.
"""

from __future__ import annotations

import re
import threading
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import flask_migrate
import pytest
import stripe as stripe_sdk
from aiosmtpd.controller import Controller
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from membership import create_app
from membership.accounts import service as accounts
from membership.accounts.models import Member
from membership.billing import get_gateway, service, sync
from membership.billing.models import (
    EventStatus,
    JoinAttempt,
    MembershipEvent,
    Payment,
    Subscription,
    Tier,
    WebhookEvent,
)
from membership.billing.rules import Interval, MembershipState
from membership.cli import DEMO_TIERS
from membership.config import DEFAULT_STRIPE_API_VERSION
from membership.database import utcnow
from membership.extensions import db
from tests.conftest import (
    PASSWORD,
    LocalStripe,
    Mailbox,
    settings_for_tests,
    stripe_settings,
)
from tests.support.stripe_events import signed, stripe_event

READER_EUR = "membership-reader-month-eur-500"
Json = dict[str, Any]


# --- a fresh database and app per test ------------------------------------------------------------


@pytest.fixture
def live_app(
    fresh_database: str, smtp_server: tuple[Controller, Mailbox], localstripe: LocalStripe
) -> Iterator[Flask]:
    """The app on the fresh database, migrated, with the demo tiers synced to localstripe."""
    localstripe.flush()
    app = create_app(
        {**settings_for_tests(fresh_database, smtp_server[0].port), **stripe_settings(localstripe)}
    )
    try:
        with app.app_context():
            flask_migrate.upgrade()
            for position, (slug, name, description, prices) in enumerate(DEMO_TIERS):
                tier = Tier(slug=slug, name=name, description=description, position=position)
                db.session.add(tier)
                db.session.flush()
                for currency, (monthly, yearly) in prices.items():
                    service.set_price(db.session, tier, Interval.MONTH, currency, monthly)
                    service.set_price(db.session, tier, Interval.YEAR, currency, yearly)
            service.sync_catalog(db.session, get_gateway())
            db.session.commit()
        yield app
    finally:
        with app.app_context():
            db.engine.dispose()


@pytest.fixture
def sdk(localstripe: LocalStripe) -> stripe_sdk.StripeClient:
    return stripe_sdk.StripeClient(
        "sk_test_suite",
        base_addresses={"api": localstripe.base_url},
        max_network_retries=0,
        stripe_version=DEFAULT_STRIPE_API_VERSION,
    )


def in_app(app: Flask, work: Callable[[Any], Any]) -> Any:
    """Run ``work(session)`` in its own app context and commit."""
    with app.app_context():
        result = work(db.session)
        db.session.commit()
        return result


def new_member(app: Flask, email: str) -> int:
    def make(session: Any) -> int:
        member = Member(email=email, display_name="Racing Reader", email_confirmed_at=utcnow())
        member.password_hash = accounts.hash_password(PASSWORD)
        session.add(member)
        session.flush()
        return member.id

    return in_app(app, make)


def count(app: Flask, model: Any, *where: Any) -> int:
    return in_app(app, lambda s: s.scalar(select(func.count()).select_from(model).where(*where)))


def race(count_: int, request: Callable[[int], Any]) -> list[Any]:
    """Call ``request(i)`` from ``count_`` threads at once; return the answers (or exceptions)."""
    barrier = threading.Barrier(count_)
    answers: list[Any] = [None] * count_

    def run(i: int) -> None:
        try:
            barrier.wait(timeout=30)
            answers[i] = request(i)
        except BaseException as exc:  # reported by the test, not lost in the thread
            answers[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count_)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads), "a request never finished"
    errors = [answer for answer in answers if isinstance(answer, BaseException)]
    assert not errors, errors
    return answers


# --- ten deliveries of one event at once ----------------------------------------------------------


def patron_in_stripe(app: Flask, sdk: stripe_sdk.StripeClient, email: str) -> tuple[int, str, str]:
    """A member who joined: customer and subscription in localstripe and in our tables."""
    member_id = new_member(app, email)

    def join(session: Any) -> tuple[str, str]:
        gateway = get_gateway()
        customer = service.ensure_customer(session, gateway, session.get(Member, member_id))
        method = sdk.v1.payment_methods.attach("pm_card_visa", params={"customer": customer})
        sdk.v1.customers.update(
            customer, params={"invoice_settings": {"default_payment_method": method.id}}
        )
        data = gateway.create_subscription(
            customer_id=customer,
            plan_id=READER_EUR,
            member_id=member_id,
            idempotency_key=f"race-{uuid.uuid4().hex}",
        )
        sync.apply_subscription(session, data, reason="joined")
        sync.apply_invoice(session, data["latest_invoice"], reason="first payment")
        return customer, data["id"]

    customer, subscription = in_app(app, join)
    return member_id, customer, subscription


def deliver_at_once(app: Flask, event: Json, times: int = 10) -> list[Any]:
    body, headers = signed(event)

    def deliver(_: int) -> tuple[int, Json]:
        response = app.test_client().post("/webhooks/stripe", data=body, headers=headers)
        return response.status_code, response.get_json()

    return race(times, deliver)


def test_ten_deliveries_of_one_renewal_record_one_payment(live_app, sdk):
    _, customer, subscription = patron_in_stripe(live_app, sdk, "renewing@example.org")
    invoice = sdk.v1.invoices.create(params={"customer": customer, "subscription": subscription})
    invoice = sdk.v1.invoices.pay(invoice.id).to_dict()
    payments = count(live_app, Payment)
    event = stripe_event("invoice.paid", invoice)

    answers = deliver_at_once(live_app, event)

    assert [status for status, _ in answers] == [200] * 10, answers
    results = sorted(body["result"] for _, body in answers)
    assert results == ["duplicate"] * 9 + ["processed"], answers
    assert count(live_app, WebhookEvent) == 1
    row = in_app(
        live_app,
        lambda s: s.execute(
            select(WebhookEvent.status, WebhookEvent.attempts, WebhookEvent.error)
        ).one(),
    )
    assert tuple(row) == (EventStatus.PROCESSED, 1, None)
    assert count(live_app, Payment) == payments + 1
    assert count(live_app, Payment, Payment.stripe_invoice_id == invoice["id"]) == 1


def test_ten_deliveries_of_one_cancellation_record_one_membership_event(live_app, sdk):
    member_id, _, subscription = patron_in_stripe(live_app, sdk, "leaving@example.org")
    sdk.v1.subscriptions.update(subscription, params={"cancel_at_period_end": True})
    changes = count(live_app, MembershipEvent, MembershipEvent.member_id == member_id)
    event = stripe_event(
        "customer.subscription.updated", sdk.v1.subscriptions.retrieve(subscription).to_dict()
    )

    answers = deliver_at_once(live_app, event)

    assert [status for status, _ in answers] == [200] * 10, answers
    assert sorted(body["result"] for _, body in answers) == ["duplicate"] * 9 + ["processed"]
    assert count(live_app, WebhookEvent) == 1
    added = in_app(
        live_app,
        lambda s: [
            (e.from_state, e.to_state)
            for e in s.scalars(
                select(MembershipEvent)
                .where(MembershipEvent.member_id == member_id)
                .order_by(MembershipEvent.id)
            ).all()[changes:]
        ],
    )
    assert added == [(MembershipState.ACTIVE, MembershipState.CANCELING)]


# --- a double click on "Join" ---------------------------------------------------------------------


def logged_in_client(app: Flask, email: str) -> FlaskClient:
    client = app.test_client()
    page = client.get("/account/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page).group(1)
    response = client.post(
        "/account/login", data={"email": email, "password": PASSWORD, "csrf_token": token}
    )
    assert response.status_code == 302, response.get_data(as_text=True)
    return client


def same_browser(app: Flask, client: FlaskClient) -> FlaskClient:
    """Another tab of the same browser: a new client with the same cookies."""
    tab = app.test_client()
    name = app.config["SESSION_COOKIE_NAME"]
    cookie = client.get_cookie(name)
    assert cookie is not None
    tab.set_cookie(name, cookie.value, domain=cookie.domain, path=cookie.path)
    return tab


@pytest.mark.parametrize("clicks", [2, 5])
def test_a_double_submit_of_a_join_makes_one_subscription(live_app, sdk, clicks):
    email = f"double-{clicks}@example.org"
    member_id = new_member(live_app, email)
    client = logged_in_client(live_app, email)
    tier_id = in_app(live_app, lambda s: s.scalar(select(Tier.id).where(Tier.slug == "reader")))
    summary = client.get(f"/support/join?tier={tier_id}&interval=month&currency=EUR")
    assert summary.status_code == 200
    csrf = re.search(
        r'name="csrf_token" type="hidden" value="([^"]+)"', summary.get_data(as_text=True)
    ).group(1)
    join_token = uuid.uuid4().hex
    response = client.post(
        "/support/join",
        data={
            "tier": tier_id,
            "interval": "month",
            "currency": "EUR",
            "amount": "",
            "token": join_token,
            "csrf_token": csrf,
        },
    )
    assert response.headers["Location"] == f"/support/join/{join_token}"
    headers = {"X-CSRFToken": csrf}
    setup = client.post(f"/support/join/{join_token}/setup", json={}, headers=headers)
    assert setup.status_code == 200, setup.get_data(as_text=True)
    setup_id = setup.get_json()["client_secret"].split("_secret_")[0]
    sdk.v1.setup_intents.confirm(setup_id, params={"payment_method": "pm_card_visa"})
    customer = in_app(live_app, lambda s: s.get(Member, member_id).stripe_customer_id)
    tabs = [same_browser(live_app, client) for _ in range(clicks)]

    def subscribe(i: int) -> tuple[int, Json]:
        answer = tabs[i].post(
            f"/support/join/{join_token}/subscribe",
            json={"setup_intent_id": setup_id},
            headers=headers,
        )
        return answer.status_code, answer.get_json()

    answers = race(clicks, subscribe)

    assert [status for status, _ in answers] == [200] * clicks, answers
    outcomes = [body["status"] for _, body in answers]
    assert set(outcomes) <= {"active", "pending"}, answers
    assert "active" in outcomes
    in_stripe = sdk.v1.subscriptions.list(params={"customer": customer, "status": "all"}).data
    assert len(in_stripe) == 1, [s.id for s in in_stripe]
    assert count(live_app, Subscription, Subscription.member_id == member_id) == 1
    assert (
        count(live_app, Subscription, Subscription.member_id == member_id, Subscription.live) == 1
    )
    linked = in_app(
        live_app,
        lambda s: s.scalar(
            select(Subscription.stripe_subscription_id)
            .join(JoinAttempt, JoinAttempt.subscription_id == Subscription.id)
            .where(JoinAttempt.token == join_token)
        ),
    )
    assert linked == in_stripe[0].id
    assert count(live_app, Payment, Payment.member_id == member_id) == 1


def test_different_events_bringing_one_change_at_once_record_it_once(live_app, sdk):
    """Stripe sends customer.subscription.updated, invoice.paid and invoice.payment_succeeded
    together, and each makes us apply the subscription: the change is still recorded once."""
    member_id, customer, subscription = patron_in_stripe(live_app, sdk, "twins@example.org")
    invoice = sdk.v1.invoices.create(params={"customer": customer, "subscription": subscription})
    invoice = sdk.v1.invoices.pay(invoice.id).to_dict()
    sdk.v1.subscriptions.update(subscription, params={"cancel_at_period_end": True})
    changes = count(live_app, MembershipEvent, MembershipEvent.member_id == member_id)
    current = sdk.v1.subscriptions.retrieve(subscription).to_dict()
    events = [
        *(stripe_event("customer.subscription.updated", current) for _ in range(3)),
        stripe_event("invoice.paid", invoice),
        stripe_event("invoice.payment_succeeded", invoice),
    ]
    deliveries = [signed(event) for event in events]

    def deliver(i: int) -> tuple[int, Json]:
        body, headers = deliveries[i]
        response = live_app.test_client().post("/webhooks/stripe", data=body, headers=headers)
        return response.status_code, response.get_json()

    answers = race(len(events), deliver)

    assert [status for status, _ in answers] == [200] * len(events), answers
    assert count(live_app, WebhookEvent) == len(events)
    assert count(live_app, MembershipEvent, MembershipEvent.member_id == member_id) == changes + 1
    assert count(live_app, Payment, Payment.stripe_invoice_id == invoice["id"]) == 1
