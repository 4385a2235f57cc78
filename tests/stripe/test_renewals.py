"""A renewal that fails, the grace period, and the way back, with Stripe's events applied.

localstripe has no clock, so a renewal is made by hand as STRIPE.md describes: the 3-D Secure card
becomes the default, an invoice for the subscription is created and paid, and authentication
fails. That emits ``invoice.payment_failed`` and makes the subscription ``past_due``.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from membership.billing import webhooks
from membership.billing.models import MembershipEvent, Payment, PaymentStatus
from membership.billing.rules import MembershipState, SubscriptionStatus
from membership.database import utcnow
from tests.stripe.conftest import (
    VISA,
    CardStep,
    apply_events,
    fail_a_renewal,
    is_patron,
    state_of,
    subscription_of,
)

FAILED = "Your membership payment did not go through"
RECOVERED = "Thank you: your membership is back in order"


def _subjects(mailbox, address: str) -> list[str]:
    return [message["Subject"] for message in mailbox.to(address)]


def _payment(session, invoice_id: str) -> Payment:
    session.expire_all()
    payment = session.scalar(select(Payment).where(Payment.stripe_invoice_id == invoice_id))
    assert payment is not None, "no payment recorded for the renewal invoice"
    return payment


def test_a_failed_renewal_keeps_the_perks_for_a_while_and_a_new_card_puts_it_right(
    app, client, patron, stripe_api, db_session, mailbox, deliver
):
    invoice_id = fail_a_renewal(stripe_api, patron.customer_id, patron.subscription_id)

    deliveries = apply_events(app, stripe_api)
    deliver()

    assert webhooks.Delivery.FAILED not in deliveries
    subscription = subscription_of(db_session, patron.member)
    assert subscription.status is SubscriptionStatus.PAST_DUE
    assert subscription.past_due_since is not None
    assert state_of(app, patron.member) is MembershipState.PAST_DUE
    assert is_patron(app, patron.member)  # within the grace period
    payment = _payment(db_session, invoice_id)
    assert (payment.status, payment.amount, payment.currency) == (PaymentStatus.FAILED, 500, "EUR")
    assert payment.failure_message == "The provided PaymentMethod has failed authentication."
    assert _subjects(mailbox, patron.member.email) == [FAILED]
    text = mailbox.text(mailbox.last_to(patron.member.email))
    assert "http://localhost/membership/card" in text
    assert "€5" in text
    assert "Payment overdue" in client.get("/membership").get_data(as_text=True)

    outcome = CardStep.open(client, stripe_api, "/membership/card").pay(VISA)

    assert outcome["status"] == "active", outcome
    assert stripe_api.subscription(patron.subscription_id)["status"] == "active"
    assert stripe_api.v1.invoices.retrieve(invoice_id)["status"] == "paid"
    deliveries = apply_events(app, stripe_api)  # the earlier events come again: duplicates
    deliver()
    assert webhooks.Delivery.FAILED not in deliveries
    subscription = subscription_of(db_session, patron.member)
    assert (subscription.status, subscription.past_due_since) == (SubscriptionStatus.ACTIVE, None)
    assert state_of(app, patron.member) is MembershipState.ACTIVE
    payment = _payment(db_session, invoice_id)
    assert (payment.status, payment.failure_message) == (PaymentStatus.SUCCEEDED, None)
    assert _subjects(mailbox, patron.member.email) == [FAILED, RECOVERED]
    transitions = db_session.execute(
        select(MembershipEvent.from_state, MembershipEvent.to_state)
        .where(MembershipEvent.member_id == patron.member.id)
        .order_by(MembershipEvent.id)
    ).all()
    assert [tuple(t) for t in transitions] == [
        (MembershipState.NONE, MembershipState.ACTIVE),
        (MembershipState.ACTIVE, MembershipState.PAST_DUE),
        (MembershipState.PAST_DUE, MembershipState.ACTIVE),
    ]


def test_a_renewal_left_unpaid_past_the_grace_period_stops_the_perks(
    app, client, patron, stripe_api, db_session
):
    fail_a_renewal(stripe_api, patron.customer_id, patron.subscription_id)
    apply_events(app, stripe_api)
    subscription = subscription_of(db_session, patron.member)

    subscription.past_due_since = utcnow() - timedelta(days=6)
    db_session.commit()
    assert state_of(app, patron.member) is MembershipState.PAST_DUE
    assert is_patron(app, patron.member)

    subscription.past_due_since = utcnow() - timedelta(days=8)
    db_session.commit()

    assert state_of(app, patron.member) is MembershipState.LAPSED
    assert not is_patron(app, patron.member)
    assert "perks stopped" in client.get("/membership").get_data(as_text=True)
    apply_events(app, stripe_api)  # Stripe saying "past_due" again does not restart the clock
    assert state_of(app, patron.member) is MembershipState.LAPSED
