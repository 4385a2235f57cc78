"""A patron manages their membership alone: tier, period, cancelling, card.

(Pausing is not here: localstripe has no ``pause_collection`` and answers 500.)
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import select

from membership.billing import service
from membership.billing.models import MembershipEvent
from membership.billing.rules import Interval, MembershipState
from tests.stripe.conftest import MASTERCARD, CardStep, is_patron, state_of, subscription_of


def _events(session, member) -> list[tuple[MembershipState, MembershipState, int, str]]:
    session.expire_all()
    rows = session.scalars(
        select(MembershipEvent)
        .where(MembershipEvent.member_id == member.id)
        .order_by(MembershipEvent.id)
    )
    return [(e.from_state, e.to_state, e.mrr_delta, e.reason) for e in rows]


def _plan_in_stripe(stripe_api, subscription_id: str) -> str:
    return stripe_api.subscription(subscription_id)["items"]["data"][0]["plan"]["id"]


def test_upgrading_and_then_paying_yearly_moves_the_plan_in_stripe_and_the_revenue(
    app, client, patron, catalog, stripe, stripe_api, db_session
):
    insider = catalog["insider"]
    monthly = insider.listed_price(Interval.MONTH, "EUR")

    response = client.submit("/membership/change", {"price": monthly.id}, token_page="/membership")

    assert response.status_code == 302
    assert (
        _plan_in_stripe(stripe_api, patron.subscription_id) == "membership-insider-month-eur-1000"
    )
    assert subscription_of(db_session, patron.member).price_id == monthly.id
    assert _events(db_session, patron.member)[-1] == (
        MembershipState.ACTIVE,
        MembershipState.ACTIVE,
        1000 - 500,
        "changed to Insider monthly",
    )

    # €100.14 a year is €8.345 a month: MRR rounds half up to €8.35 (not to even, not down).
    yearly = service.set_price(db_session, insider, Interval.YEAR, "EUR", 10014)
    service.sync_catalog(db_session, stripe)
    db_session.commit()
    response = client.submit("/membership/change", {"price": yearly.id}, token_page="/membership")

    assert response.status_code == 302
    assert (
        _plan_in_stripe(stripe_api, patron.subscription_id) == "membership-insider-year-eur-10014"
    )
    subscription = subscription_of(db_session, patron.member)
    assert subscription.price_id == yearly.id
    assert stripe_api.subscription(patron.subscription_id)["status"] == "active"
    assert _events(db_session, patron.member)[-1] == (
        MembershipState.ACTIVE,
        MembershipState.ACTIVE,
        835 - 1000,
        "changed to Insider yearly",
    )
    page = client.get("/membership").get_data(as_text=True)
    assert "Insider patron" in page
    assert "€100.14 a year" in page


def test_cancelling_keeps_the_perks_until_the_period_ends_and_can_be_undone(
    app, client, patron, stripe_api, db_session
):
    response = client.submit(
        "/membership/cancel", {"reason": "Money is tight this year"}, token_page="/membership"
    )

    assert response.status_code == 302
    assert stripe_api.subscription(patron.subscription_id)["cancel_at_period_end"] is True
    subscription = subscription_of(db_session, patron.member)
    assert subscription.cancel_at_period_end
    assert subscription.cancel_reason == "Money is tight this year"
    assert state_of(app, patron.member) is MembershipState.CANCELING
    assert is_patron(app, patron.member)
    page = client.get("/membership").get_data(as_text=True)
    ends = subscription.current_period_end
    assert f"Ends on {ends.strftime('%d %B %Y')}" in page
    assert "Keep my membership" in page

    response = client.submit("/membership/undo-cancel", {}, token_page="/membership")

    assert response.status_code == 302
    assert stripe_api.subscription(patron.subscription_id)["cancel_at_period_end"] is False
    subscription = subscription_of(db_session, patron.member)
    assert (subscription.cancel_at_period_end, subscription.cancel_reason) == (False, None)
    assert state_of(app, patron.member) is MembershipState.ACTIVE
    assert [(e[0], e[1], e[2]) for e in _events(db_session, patron.member)] == [
        (MembershipState.NONE, MembershipState.ACTIVE, 500),
        (MembershipState.ACTIVE, MembershipState.CANCELING, 0),  # still paid until the end
        (MembershipState.CANCELING, MembershipState.ACTIVE, 0),
    ]


def test_a_new_card_becomes_the_default_for_the_next_payment(
    app, client, patron, stripe_api, db_session
):
    step = CardStep.open(client, stripe_api, "/membership/card")
    setup_intent_id = step.new_card(MASTERCARD)

    response = step.submit(setup_intent_id)

    assert response.status_code == 200
    assert response.get_json()["status"] == "active"
    method = stripe_api.v1.setup_intents.retrieve(setup_intent_id)["payment_method"]
    customer = stripe_api.customer(patron.customer_id)
    assert customer["invoice_settings"]["default_payment_method"] == method
    card = stripe_api.v1.payment_methods.retrieve(method).to_dict()
    assert (card["customer"], card["card"]["last4"]) == (patron.customer_id, "4444")
    page = client.get("/membership").get_data(as_text=True)
    assert "ending 4444" in page  # localstripe calls every card a Visa
    assert "ending 4242" not in page
    assert is_patron(app, patron.member)
    assert subscription_of(db_session, patron.member).current_period_end > datetime.now(UTC)
