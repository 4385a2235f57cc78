"""Giving once, with and without an account, in a two-decimal and a zero-decimal currency."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from membership.billing.models import Payment, PaymentKind, PaymentStatus
from tests.stripe.conftest import (
    DECLINED_ON_CHARGE,
    THREE_D_SECURE,
    VISA,
    apply_events,
    start_gift,
    token_of,
)

RECEIPT = "Thank you for your gift: your receipt"


def _gift(session, step) -> Payment:
    session.expire_all()
    payment = session.scalar(select(Payment).where(Payment.idempotency_token == token_of(step)))
    assert payment is not None
    return payment


def _receipts(mailbox, address):
    return [m for m in mailbox.to(address) if m["Subject"] == RECEIPT]


@pytest.mark.parametrize("with_account", [True, False], ids=["member", "guest"])
@pytest.mark.parametrize(
    ("currency", "typed", "minor", "shown"),
    [("EUR", "7.50", 750, "€7.50"), ("JPY", "1500", 1500, "¥1,500")],
    ids=["EUR", "JPY"],
)
def test_a_gift_is_charged_once_in_its_currency_and_the_receipt_arrives_once(
    app,
    client,
    login,
    make_member,
    stripe_api,
    db_session,
    mailbox,
    deliver,
    monkeypatch,
    with_account,
    currency,
    typed,
    minor,
    shown,
):
    monkeypatch.setitem(app.config, "CURRENCIES", ["EUR", "USD", "GBP", "JPY"])
    member = make_member("donor@example.org", display_name="Dora Donor") if with_account else None
    if member:
        login(member)
    address = member.email if member else "guest-donor@example.org"

    step = start_gift(client, stripe_api, typed, currency, email="" if member else address)
    outcome = step.pay(VISA)

    assert outcome["status"] == "active", outcome
    payment = _gift(db_session, step)
    assert payment.kind is PaymentKind.DONATION
    assert payment.status is PaymentStatus.SUCCEEDED
    assert (payment.amount, payment.currency) == (minor, currency)
    assert payment.member_id == (member.id if member else None)
    assert payment.email == (None if member else address)
    intent = stripe_api.v1.payment_intents.retrieve(payment.stripe_payment_intent_id).to_dict()
    assert (intent["amount"], intent["currency"]) == (minor, currency.lower())  # yen are not x100
    assert intent["status"] == "succeeded"
    assert intent["metadata"] == {"kind": "gift", "payment_id": str(payment.id)}

    # Stripe's own events for it, and a second press of the button, change nothing.
    assert step.pay(VISA)["status"] == "active"
    apply_events(app, stripe_api)
    deliver()
    intents = stripe_api.all("payment_intents")
    assert [(i["amount"], i["status"]) for i in intents] == [(minor, "succeeded")]

    [receipt] = _receipts(mailbox, address)
    text = mailbox.text(receipt)
    assert f"Thank you for your gift of {shown}" in text
    assert payment.stripe_payment_intent_id in text
    if member:
        page = client.get("/membership").get_data(as_text=True)
        row = page[page.index("<tbody>") : page.index("</tbody>")]
        assert "Gift" in row
        assert shown in row
        assert "Paid" in row
    thanks = client.get(step.setup_url.removesuffix("/setup"))
    assert thanks.status_code == 302
    assert thanks.headers["Location"].endswith("/thanks")


def test_a_declined_gift_gives_the_banks_reason_and_can_be_paid_with_another_card(
    app, client, stripe_api, db_session, mailbox, deliver
):
    step = start_gift(client, stripe_api, "10", "EUR", email="kind@example.org")

    outcome = step.pay(DECLINED_ON_CHARGE)

    assert outcome == {
        "status": "declined",
        "message": "Your card was declined.",
        "client_secret": None,
    }
    payment = _gift(db_session, step)
    assert payment.status is PaymentStatus.PENDING
    assert payment.failure_message == "Your card was declined."
    deliver()
    assert _receipts(mailbox, "kind@example.org") == []

    outcome = step.pay(VISA)

    assert outcome["status"] == "active", outcome
    payment = _gift(db_session, step)
    assert (payment.status, payment.amount, payment.failure_message) == (
        PaymentStatus.SUCCEEDED,
        1000,
        None,
    )
    intents = stripe_api.all("payment_intents")
    assert sorted(i["status"] for i in intents) == ["requires_payment_method", "succeeded"]
    apply_events(app, stripe_api)
    deliver()
    assert len(_receipts(mailbox, "kind@example.org")) == 1


def test_a_gift_asking_for_three_d_secure_is_charged_after_the_reader_confirms(
    app, client, stripe_api, db_session, mailbox, deliver
):
    step = start_gift(client, stripe_api, "20", "EUR", email="careful@example.org")

    outcome = step.pay(THREE_D_SECURE)

    assert outcome["status"] == "requires_action"
    assert _gift(db_session, step).status is PaymentStatus.PENDING
    stripe_api.authenticate(outcome["client_secret"], success=True)
    assert step.confirm()["status"] == "active"
    payment = _gift(db_session, step)
    assert (payment.status, payment.amount) == (PaymentStatus.SUCCEEDED, 2000)
    deliver()
    assert len(_receipts(mailbox, "careful@example.org")) == 1


def test_a_gift_whose_three_d_secure_fails_is_not_charged_and_can_be_given_again(
    app, client, stripe_api, db_session, mailbox, deliver
):
    step = start_gift(client, stripe_api, "20", "EUR", email="second-try@example.org")
    outcome = step.pay(THREE_D_SECURE)
    stripe_api.authenticate(outcome["client_secret"], success=False)

    outcome = step.confirm()

    assert outcome["status"] == "declined"
    assert outcome["message"] == "The provided PaymentMethod has failed authentication."
    payment = _gift(db_session, step)
    assert payment.status is PaymentStatus.FAILED
    apply_events(app, stripe_api)
    deliver()
    assert _receipts(mailbox, "second-try@example.org") == []

    outcome = step.pay(VISA)

    assert outcome["status"] == "active", outcome
    payment = _gift(db_session, step)
    assert (payment.status, payment.amount) == (PaymentStatus.SUCCEEDED, 2000)
    intents = {i["id"]: i["status"] for i in stripe_api.all("payment_intents")}
    assert sorted(intents.values()) == ["requires_payment_method", "succeeded"]
    assert intents[payment.stripe_payment_intent_id] == "succeeded"
    deliver()
    assert len(_receipts(mailbox, "second-try@example.org")) == 1
