"""Webhooks that localstripe itself signs and sends to the app served over HTTP.

The app runs in a thread on its own SQLite file (the rolled-back test transaction cannot reach
a server thread), so this test runs once, not once per database.
"""

from __future__ import annotations

import time

from sqlalchemy import select

from membership.accounts.models import Member
from membership.billing.models import (
    EventStatus,
    Payment,
    PaymentStatus,
    Subscription,
    Tier,
    WebhookEvent,
)
from membership.billing.rules import SubscriptionStatus
from membership.cli import DEMO_READERS
from membership.extensions import db
from tests.stripe.conftest import api_for, form_inputs, join

# What a join makes Stripe send, and what we must act on rather than merely store.
ACTED_ON = {"customer.subscription.created", "invoice.payment_succeeded", "customer.updated"}
STORED = ACTED_ON | {"customer.created", "invoice.created", "payment_intent.succeeded"}


def _stored(app) -> dict[str, tuple[str, EventStatus, str | None]]:
    with app.app_context():
        rows = db.session.execute(
            select(
                WebhookEvent.stripe_event_id,
                WebhookEvent.type,
                WebhookEvent.status,
                WebhookEvent.error,
            )
        ).all()
    return {row[0]: (row[1], row[2], row[3]) for row in rows}


def test_the_webhooks_localstripe_sends_for_a_join_are_verified_stored_and_processed(
    live_app, localstripe
):
    app = live_app.app
    api = api_for(localstripe)
    result = app.test_cli_runner().invoke(args=["seed-demo"])
    assert result.exit_code == 0, result.output
    email, _, password = DEMO_READERS[0]
    client = app.test_client()
    login_page = client.get("/account/login").get_data(as_text=True)
    fields = form_inputs(login_page) | {"email": email, "password": password}
    assert client.post("/account/login", data=fields).status_code == 302
    with app.app_context():
        insider = db.session.scalar(select(Tier.id).where(Tier.slug == "insider"))

    _, outcome = join(client, api, insider)
    assert outcome["status"] == "active", outcome

    # Deliveries still on their way from an earlier test may arrive too: match by our own ids.
    ours = {event["id"]: event["type"] for event in api.events()}
    assert set(ours.values()) >= STORED
    deadline = time.monotonic() + 10
    while True:
        stored = _stored(app)
        waiting = [i for i in ours if i not in stored or stored[i][1] is EventStatus.RECEIVED]
        if not waiting or time.monotonic() > deadline:
            break
        time.sleep(0.1)

    assert waiting == [], [ours[i] for i in waiting]
    failed = {ours[i]: stored[i][2] for i in ours if stored[i][1] is EventStatus.FAILED}
    assert failed == {}
    processed = {ours[i] for i in ours if stored[i][1] is EventStatus.PROCESSED}
    assert processed >= ACTED_ON
    assert {stored[i][0] for i in ours} == set(ours.values())
    with app.app_context():
        member = db.session.scalar(select(Member).where(Member.email == email))
        subscriptions = db.session.scalars(
            select(Subscription).where(Subscription.member_id == member.id)
        ).all()
        payments = db.session.scalars(select(Payment).where(Payment.member_id == member.id)).all()
        assert [s.status for s in subscriptions] == [SubscriptionStatus.ACTIVE]
        assert [(p.status, p.amount) for p in payments] == [(PaymentStatus.SUCCEEDED, 1000)]
