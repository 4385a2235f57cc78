"""Joining as a patron, card by card, against localstripe as a real server."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import func, select

from membership.billing.models import (
    JoinAttempt,
    JoinStatus,
    MembershipEvent,
    Payment,
    PaymentKind,
    PaymentStatus,
    Price,
    Subscription,
)
from membership.billing.rules import Interval, MembershipState, SubscriptionStatus
from tests.stripe.conftest import (
    DECLINED_ON_CHARGE,
    THREE_D_SECURE,
    VISA,
    CardStep,
    choose,
    form_inputs,
    is_patron,
    join,
    state_of,
    subscription_of,
)


def _payments(session: Any, member: Any) -> list[Payment]:
    session.expire_all()
    return list(session.scalars(select(Payment).where(Payment.member_id == member.id)))


def _count(session: Any, model: Any, *where: Any) -> int:
    return session.scalar(select(func.count()).select_from(model).where(*where))


def test_joining_with_a_good_card_makes_a_patron_with_a_receipt_and_a_membership_page(
    app, client, login, make_member, catalog, stripe_api, db_session
):
    member = make_member(display_name="Ada Reader")
    login(member)

    _, outcome = join(client, stripe_api, catalog["reader"].id)

    assert outcome["status"] == "active"
    assert state_of(app, member) is MembershipState.ACTIVE
    assert is_patron(app, member)

    db_session.refresh(member)
    customer_id = member.stripe_customer_id
    assert customer_id and customer_id.startswith("cus_")
    customer = stripe_api.customer(customer_id)
    assert customer["email"] == member.email
    assert customer["metadata"] == {"member_id": str(member.id)}
    [remote] = stripe_api.subscriptions_of(customer_id)
    assert remote["status"] == "active"

    subscription = subscription_of(db_session, member)
    assert subscription.stripe_subscription_id == remote["id"]
    assert subscription.status is SubscriptionStatus.ACTIVE
    assert subscription.live
    assert subscription.price.stripe_plan_id == "membership-reader-month-eur-500"
    assert remote["items"]["data"][0]["plan"]["id"] == subscription.price.stripe_plan_id
    period_end = datetime.fromtimestamp(remote["current_period_end"], tz=UTC)
    assert subscription.current_period_end == period_end

    [payment] = _payments(db_session, member)
    assert payment.kind is PaymentKind.SUBSCRIPTION
    assert payment.status is PaymentStatus.SUCCEEDED
    assert (payment.amount, payment.currency) == (500, "EUR")
    assert payment.stripe_invoice_id == remote["latest_invoice"]
    assert payment.subscription_id == subscription.id
    assert payment.paid_at is not None

    [event] = db_session.scalars(
        select(MembershipEvent).where(MembershipEvent.member_id == member.id)
    ).all()
    assert (event.from_state, event.to_state) == (MembershipState.NONE, MembershipState.ACTIVE)
    assert (event.mrr_delta, event.currency) == (500, "EUR")

    page = client.get("/membership").get_data(as_text=True)
    assert "Reader patron" in page
    assert "€5 a month" in page
    assert f"€5 on {period_end.strftime('%d %B %Y')}" in page
    assert "Visa ending 4242" in page
    assert "Paid" in page


def test_a_card_declined_at_the_first_payment_can_be_replaced_without_a_second_membership(
    app, client, login, make_member, catalog, stripe_api, db_session, mailbox
):
    member = make_member()
    login(member)

    step, outcome = join(client, stripe_api, catalog["insider"].id, card=DECLINED_ON_CHARGE)

    assert outcome["status"] == "declined"
    assert outcome["message"] == "Your card was declined."
    assert not is_patron(app, member)
    assert state_of(app, member) is MembershipState.NONE
    assert all(p.status is not PaymentStatus.SUCCEEDED for p in _payments(db_session, member))
    page = client.get("/membership").get_data(as_text=True)
    assert "You are not a patron yet" in page

    outcome = step.pay(VISA)

    assert outcome["status"] == "active", outcome
    assert is_patron(app, member)
    db_session.refresh(member)
    remote = stripe_api.subscriptions_of(member.stripe_customer_id)
    assert [s["status"] for s in remote] == ["active"]
    subscription = subscription_of(db_session, member)
    assert subscription.live
    assert subscription.stripe_subscription_id == remote[0]["id"]
    [payment] = _payments(db_session, member)
    assert payment.status is PaymentStatus.SUCCEEDED
    assert (payment.amount, payment.currency) == (1000, "EUR")
    assert payment.stripe_invoice_id == remote[0]["latest_invoice"]
    # A first payment that needed a second card is not a membership "back in order".
    assert [m["Subject"] for m in mailbox.to(member.email)] == []


@pytest.mark.parametrize(
    ("first_card", "first_outcome"),
    [(DECLINED_ON_CHARGE, "declined"), (THREE_D_SECURE, "requires_action")],
    ids=["declined", "3-D-Secure-abandoned"],
)
def test_after_a_first_payment_fails_the_reader_can_choose_another_tier_and_join_once(
    app, client, login, make_member, catalog, stripe_api, db_session, first_card, first_outcome
):
    member = make_member()
    login(member)
    _, outcome = join(client, stripe_api, catalog["insider"].id, card=first_card)
    assert outcome["status"] == first_outcome

    _, outcome = join(client, stripe_api, catalog["reader"].id, card=VISA)

    assert outcome["status"] == "active", outcome
    assert state_of(app, member) is MembershipState.ACTIVE
    db_session.refresh(member)
    remote = {
        s["items"]["data"][0]["plan"]["id"]: s["status"]
        for s in stripe_api.subscriptions_of(member.stripe_customer_id)
    }
    assert remote == {
        "membership-insider-month-eur-1000": "canceled",  # nobody pays for it later
        "membership-reader-month-eur-500": "active",
    }
    rows = db_session.scalars(
        select(Subscription).where(Subscription.member_id == member.id).order_by(Subscription.id)
    ).all()
    assert [(r.price.stripe_plan_id, r.live) for r in rows] == [
        ("membership-insider-month-eur-1000", False),
        ("membership-reader-month-eur-500", True),
    ]
    succeeded = [p for p in _payments(db_session, member) if p.status is PaymentStatus.SUCCEEDED]
    assert [(p.amount, p.subscription_id) for p in succeeded] == [(500, rows[1].id)]


def test_three_d_secure_completed_makes_a_patron(
    app, client, login, make_member, catalog, stripe_api, db_session
):
    member = make_member()
    login(member)

    step, outcome = join(client, stripe_api, catalog["reader"].id, card=THREE_D_SECURE)

    assert outcome["status"] == "requires_action"
    assert outcome["client_secret"].startswith("pi_")
    assert not is_patron(app, member)

    stripe_api.authenticate(outcome["client_secret"], success=True)
    assert step.confirm()["status"] == "active"

    assert state_of(app, member) is MembershipState.ACTIVE
    [payment] = _payments(db_session, member)
    assert payment.status is PaymentStatus.SUCCEEDED
    assert payment.amount == 500
    assert payment.stripe_payment_intent_id == outcome["client_secret"].split("_secret_")[0]


def test_three_d_secure_failed_charges_nothing_and_the_reader_can_try_another_card(
    app, client, login, make_member, catalog, stripe_api, db_session
):
    member = make_member()
    login(member)

    step, outcome = join(client, stripe_api, catalog["reader"].id, card=THREE_D_SECURE)
    assert outcome["status"] == "requires_action"
    stripe_api.authenticate(outcome["client_secret"], success=False)
    outcome = step.confirm()

    assert outcome["status"] == "failed"
    assert "nothing was charged" in outcome["message"]
    assert not is_patron(app, member)
    assert all(p.status is not PaymentStatus.SUCCEEDED for p in _payments(db_session, member))
    db_session.refresh(member)
    charges = stripe_api.all("charges", customer=member.stripe_customer_id)
    assert [c for c in charges if c["status"] == "succeeded"] == []
    [remote] = stripe_api.subscriptions_of(member.stripe_customer_id)
    assert remote["status"] == "canceled"  # localstripe ends it at once; Stripe waits a day

    outcome = step.pay(VISA)

    assert outcome["status"] == "active", outcome
    assert is_patron(app, member)
    statuses = sorted(s["status"] for s in stripe_api.subscriptions_of(member.stripe_customer_id))
    assert statuses == ["active", "canceled"]
    live = db_session.scalars(
        select(Subscription).where(Subscription.member_id == member.id, Subscription.live)
    ).all()
    assert len(live) == 1
    succeeded = [p for p in _payments(db_session, member) if p.status is PaymentStatus.SUCCEEDED]
    assert [(p.amount, p.subscription_id) for p in succeeded] == [(500, live[0].id)]


def test_paying_what_you_want_above_the_minimum_uses_an_unlisted_price_of_that_amount(
    app, client, login, make_member, catalog, stripe_api, db_session
):
    member = make_member()
    login(member)
    insider = catalog["insider"]

    _, outcome = join(client, stripe_api, insider.id, amount="12.50")

    assert outcome["status"] == "active", outcome
    db_session.refresh(member)
    plan = stripe_api.v1.plans.retrieve("membership-insider-month-eur-1250").to_dict()
    assert (plan["amount"], plan["currency"], plan["interval"]) == (1250, "eur", "month")
    assert plan["product"] == "membership-tier-insider"
    [remote] = stripe_api.subscriptions_of(member.stripe_customer_id)
    assert remote["items"]["data"][0]["plan"]["id"] == plan["id"]

    subscription = subscription_of(db_session, member)
    assert subscription.price.stripe_plan_id == plan["id"]
    assert (subscription.price.amount, subscription.price.listed) == (1250, False)
    db_session.refresh(insider)
    assert insider.listed_price(Interval.MONTH, "EUR").amount == 1000  # the page still says €10
    [payment] = _payments(db_session, member)
    assert (payment.status, payment.amount) == (PaymentStatus.SUCCEEDED, 1250)
    [event] = db_session.scalars(
        select(MembershipEvent).where(MembershipEvent.member_id == member.id)
    ).all()
    assert event.mrr_delta == 1250


def test_a_choice_we_cannot_take_is_explained_and_stripe_is_never_called(
    app, client, login, make_member, catalog, stripe_api, db_session
):
    member = make_member()
    login(member)
    insider = catalog["insider"]
    archived = catalog["co-creator"]
    archived.active = False
    db_session.commit()
    before = stripe_api.counts()
    prices_before = _count(db_session, Price)
    cases = [
        ({"amount": "9.99"}, "The minimum for Insider is €10."),
        ({"amount": "ten euros"}, "Enter the amount as a number, like 5 or 7.50."),
        ({"amount": "12.345"}, "Use at most two decimals for EUR."),
        ({"currency": "JPY"}, "Choose one of the currencies we offer."),
        ({"tier_id": archived.id}, "That tier is not offered any more. Please choose another."),
        ({"tier_id": 987654}, "That tier is not offered any more. Please choose another."),
    ]
    for change, message in cases:
        choice = {"tier_id": insider.id, "interval": "month", "currency": "EUR", "amount": ""}
        choice.update(change)
        tier_id = choice.pop("tier_id")

        # The support page's choice, by GET, as the summary page receives it...
        response = choose(client, tier_id, **choice)
        assert response.status_code == 303, (change, response.status_code)
        assert response.headers["Location"].endswith("/support")
        page = client.get("/support").get_data(as_text=True)
        assert message in page, (change, message)

        # ... and the same choice posted straight to the join form (a crafted or stale form).
        summary = choose(client, insider.id)
        fields = form_inputs(summary.get_data(as_text=True))
        fields.update(tier=str(tier_id), **choice)
        response = client.post("/support/join", data=fields)
        assert response.status_code == 302, change
        assert response.headers["Location"].endswith("/support")
        assert message in client.get("/support").get_data(as_text=True), (change, message)

    assert stripe_api.counts() == before
    db_session.expire_all()
    assert member.stripe_customer_id is None
    assert _count(db_session, JoinAttempt) == 0
    assert _count(db_session, Price) == prices_before


def test_pressing_join_and_pay_twice_makes_one_membership_and_one_payment(
    app, client, login, make_member, catalog, stripe_api, db_session
):
    member = make_member()
    login(member)
    summary = choose(client, catalog["reader"].id)
    fields = form_inputs(summary.get_data(as_text=True))
    first = client.post("/support/join", data=fields)
    again = client.post("/support/join", data=fields)  # the button pressed twice
    assert first.headers["Location"] == again.headers["Location"]
    assert _count(db_session, JoinAttempt, JoinAttempt.member_id == member.id) == 1
    step = CardStep.open(client, stripe_api, first.headers["Location"])
    setup_intent_id = step.new_card(VISA)

    responses = [step.submit(setup_intent_id), step.submit(setup_intent_id)]
    later = step.pay(VISA)  # and once more with a fresh card setup, from another tab

    assert [r.get_json()["status"] for r in responses] == ["active", "active"]
    assert later["status"] == "active"
    db_session.refresh(member)
    assert len(stripe_api.subscriptions_of(member.stripe_customer_id)) == 1
    assert _count(db_session, Subscription, Subscription.member_id == member.id) == 1
    assert len(_payments(db_session, member)) == 1
    db_session.expire_all()
    [attempt] = db_session.scalars(select(JoinAttempt).where(JoinAttempt.member_id == member.id))
    assert attempt.status is JoinStatus.SUBSCRIBED
    assert attempt.subscription_id is not None
