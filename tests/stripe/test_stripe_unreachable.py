"""Stripe out of reach: the reader is told, is not charged, and nothing is half-saved."""

from __future__ import annotations

from sqlalchemy import func, select

from membership.billing.models import JoinAttempt, JoinStatus, Payment, PaymentStatus, Subscription
from tests.stripe.conftest import VISA, is_patron, start_gift, start_join, token_of

UNAVAILABLE = (
    "The payment service is unavailable right now. You have not been charged; "
    "please try again in a few minutes."
)


def _count(session, model, *where):
    return session.scalar(select(func.count()).select_from(model).where(*where))


def test_card_setup_while_stripe_is_unreachable_says_so_and_keeps_nothing(
    app, client, login, make_member, catalog, stripe_api, stripe_switch, db_session
):
    member = make_member()
    login(member)
    step = start_join(client, stripe_api, catalog["reader"].id)
    stripe_switch.down()

    response = step.post(step.setup_url)

    assert response.status_code == 503
    assert response.get_json() == {"status": "error", "message": UNAVAILABLE}
    db_session.expire_all()
    assert member.stripe_customer_id is None
    assert stripe_api.all("customers") == []


def test_subscribing_while_stripe_is_unreachable_says_so_and_can_be_retried(
    app, client, login, make_member, catalog, stripe_api, stripe_switch, db_session
):
    member = make_member()
    login(member)
    step = start_join(client, stripe_api, catalog["reader"].id)
    setup_intent_id = step.new_card(VISA)  # the card was entered while Stripe worked...
    stripe_switch.down()  # ... and then Stripe went away

    response = step.submit(setup_intent_id)

    assert response.status_code == 503
    assert response.get_json()["message"] == UNAVAILABLE
    db_session.expire_all()
    [attempt] = db_session.scalars(select(JoinAttempt).where(JoinAttempt.member_id == member.id))
    assert (attempt.status, attempt.subscription_id) == (JoinStatus.STARTED, None)
    assert _count(db_session, Subscription) == 0
    assert _count(db_session, Payment) == 0
    assert stripe_api.all("subscriptions") == []
    assert not is_patron(app, member)

    stripe_switch.up()
    response = step.submit(setup_intent_id)

    assert response.status_code == 200
    assert response.get_json()["status"] == "active"
    assert is_patron(app, member)
    assert len(stripe_api.all("subscriptions")) == 1


def test_a_gift_while_stripe_is_unreachable_says_so_and_is_not_charged_twice_later(
    app, client, stripe_api, stripe_switch, db_session
):
    step = start_gift(client, stripe_api, "15", "EUR", email="patient@example.org")
    setup_intent_id = step.new_card(VISA)
    stripe_switch.down()

    responses = [step.post(step.setup_url), step.submit(setup_intent_id)]

    assert [r.status_code for r in responses] == [503, 503]
    assert {r.get_json()["message"] for r in responses} == {UNAVAILABLE}
    db_session.expire_all()
    gift = db_session.scalar(select(Payment).where(Payment.idempotency_token == token_of(step)))
    assert (gift.status, gift.stripe_payment_intent_id) == (PaymentStatus.PENDING, None)
    assert stripe_api.all("payment_intents") == []

    stripe_switch.up()

    assert step.submit(setup_intent_id).get_json()["status"] == "active"
    assert [i["amount"] for i in stripe_api.all("payment_intents")] == [1500]
