"""The card on "My membership" is kept in our database, in step with Stripe, so that a page view
asks Stripe nothing.

Stripe requests are counted where the SDK sends them (its HTTP client), so every call the app
makes through the gateway is seen, whatever gateway method made it.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

import pytest
import stripe as stripe_sdk

from membership.accounts.models import Member
from membership.billing import get_gateway, reconciliation
from membership.database import utcnow
from membership.extensions import db
from tests.conftest import PASSWORD
from tests.stripe.conftest import MASTERCARD, CardStep, Patron, StripeApi, apply_events, join

Requests = list[tuple[str, str]]


@pytest.fixture
def stripe_requests(monkeypatch: pytest.MonkeyPatch) -> Requests:
    """Every HTTP request the Stripe SDK sends from now on, as (method, path)."""
    seen: Requests = []
    original = stripe_sdk.HTTPClient.request_with_retries

    def counted(self: Any, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        seen.append((method.upper(), urlsplit(url).path))
        return original(self, method, url, *args, **kwargs)

    monkeypatch.setattr(stripe_sdk.HTTPClient, "request_with_retries", counted)
    return seen


def _page(client: Any, url: str = "/membership") -> str:
    response = client.get(url)
    assert response.status_code == 200
    return response.get_data(as_text=True)


def _stored(db_session: Any, member: Member) -> tuple[Any, ...]:
    db_session.expire_all()
    row = db_session.get(Member, member.id)
    return (row.card_brand, row.card_last4, row.card_exp_month, row.card_exp_year)


def _change_card_in_stripe(api: StripeApi, customer_id: str, number: str = MASTERCARD) -> str:
    """What the Stripe Dashboard (or another app) does: a new default card, unknown to us."""
    card = {"number": number, "exp_month": 3, "exp_year": 2031, "cvc": "123"}
    method = api.v1.payment_methods.create(params={"type": "card", "card": card})
    api.v1.payment_methods.attach(method["id"], params={"customer": customer_id})
    api.v1.customers.update(
        customer_id, params={"invoice_settings": {"default_payment_method": method["id"]}}
    )
    return method["id"]


def test_after_joining_my_membership_shows_the_card_without_asking_stripe(
    client, login, make_member, catalog, stripe_api, db_session, stripe_requests
):
    member = make_member()
    login(member)
    _, outcome = join(client, stripe_api, catalog["reader"].id)
    assert outcome["status"] == "active", outcome
    assert stripe_requests, "the counter sees the gateway's requests"
    assert _stored(db_session, member) == ("visa", "4242", 12, 2030)

    stripe_requests.clear()
    first = _page(client)
    second = _page(client)

    assert "Visa ending 4242, expires 12/2030" in first
    assert "Visa ending 4242, expires 12/2030" in second
    assert stripe_requests == []


def test_a_new_card_shows_at_once_and_the_page_still_asks_stripe_nothing(
    client, patron, stripe_api, db_session, stripe_requests
):
    step = CardStep.open(client, stripe_api, "/membership/card")
    response = step.submit(step.new_card(MASTERCARD))
    assert response.get_json()["status"] == "active"
    assert _stored(db_session, patron.member) == ("visa", "4444", 12, 2030)

    stripe_requests.clear()
    page = _page(client)
    card_page = _page(client, "/membership/card")

    assert "Visa ending 4444" in page  # localstripe calls every card a Visa
    assert "ending 4242" not in page
    assert "Your card now: Visa ending 4444, expires 12/2030." in card_page
    assert stripe_requests == []


def test_a_card_changed_in_stripe_arrives_with_customer_updated_in_one_call(
    app, client, patron, stripe_api, db_session, stripe_requests
):
    method = _change_card_in_stripe(stripe_api, patron.customer_id)
    [event] = [
        e
        for e in stripe_api.events()
        if e["type"] == "customer.updated"
        and e["data"]["object"]["invoice_settings"]["default_payment_method"] == method
    ]

    stripe_requests.clear()
    apply_events(app, stripe_api, [event])

    assert stripe_requests == [("GET", f"/v1/customers/{patron.customer_id}")]
    assert _stored(db_session, patron.member) == ("visa", "4444", 3, 2031)
    stripe_requests.clear()
    assert "Visa ending 4444, expires 03/2031" in _page(client)
    assert stripe_requests == []


def test_late_events_naming_the_old_card_do_not_bring_it_back(
    app, client, patron, stripe_api, db_session, stripe_requests
):
    _change_card_in_stripe(stripe_api, patron.customer_id)
    events = stripe_api.events()
    # Newest first: the join's own customer.updated (naming 4242) arrives after the change.
    apply_events(app, stripe_api, list(reversed(events)))

    assert _stored(db_session, patron.member) == ("visa", "4444", 3, 2031)


def test_an_event_that_names_the_card_we_hold_costs_no_call(
    app, patron, stripe_api, db_session, stripe_requests
):
    customer = stripe_api.customer(patron.customer_id)
    event = {
        "id": "evt_card_same",
        "type": "customer.updated",
        "data": {"object": customer},
    }
    stripe_requests.clear()

    apply_events(app, stripe_api, [event])

    assert stripe_requests == []
    assert _stored(db_session, patron.member) == ("visa", "4242", 12, 2030)


def test_a_subscription_event_that_names_another_card_makes_the_next_view_fetch_it_once(
    app, client, patron, stripe_api, db_session, stripe_requests
):
    _change_card_in_stripe(stripe_api, patron.customer_id)
    event = {
        "id": "evt_card_subscription",
        "type": "customer.subscription.updated",
        "data": {"object": {"id": patron.subscription_id, "object": "subscription"}},
    }
    stripe_requests.clear()
    apply_events(app, stripe_api, [event])
    # The subscription comes with its customer, which names the new card by id only: one call
    # for the event, none more, and the old card is no longer shown as the member's.
    assert stripe_requests == [("GET", f"/v1/subscriptions/{patron.subscription_id}")]
    assert _stored(db_session, patron.member) == (None, None, None, None)

    stripe_requests.clear()
    first = _page(client)
    assert stripe_requests == [("GET", f"/v1/customers/{patron.customer_id}")]
    stripe_requests.clear()
    second = _page(client)

    assert "Visa ending 4444, expires 03/2031" in first
    assert "Visa ending 4444, expires 03/2031" in second
    assert stripe_requests == []


def test_reconcile_repairs_a_card_changed_behind_our_back_without_a_call_per_member(
    app, patron, stripe_api, db_session, stripe_requests
):
    _change_card_in_stripe(stripe_api, patron.customer_id)
    stripe_requests.clear()

    with app.app_context():
        report = reconciliation.reconcile(
            db.session, get_gateway(), events_since=utcnow() + timedelta(days=1)
        )

    assert _stored(db_session, patron.member) == ("visa", "4444", 3, 2031)
    assert f"repaired the card of member {patron.member.id}" in report.changes
    customer_reads = [r for r in stripe_requests if r[1].startswith("/v1/customers")]
    assert customer_reads == [], "the card came with the subscriptions listed"


def test_accounts_from_before_cards_were_kept_fetch_theirs_once(
    client, patron, db_session, stripe_requests
):
    member = db_session.get(Member, patron.member.id)
    member.forget_card()
    db_session.commit()
    stripe_requests.clear()

    first = _page(client)
    assert stripe_requests == [("GET", f"/v1/customers/{patron.customer_id}")]
    stripe_requests.clear()
    second = _page(client)

    assert "Visa ending 4242, expires 12/2030" in first
    assert "Visa ending 4242, expires 12/2030" in second
    assert stripe_requests == []
    assert _stored(db_session, patron.member) == ("visa", "4242", 12, 2030)


def test_my_data_lists_the_card_and_deleting_the_account_clears_it_for_good(
    app, client, patron: Patron, stripe_api, db_session
):
    data = json.loads(client.get("/account/export").get_data(as_text=True))
    assert {k: v for k, v in data["card"].items() if k != "synced_at"} == {
        "brand": "visa",
        "last4": "4242",
        "exp_month": 12,
        "exp_year": 2030,
    }

    response = client.submit(
        "/account/delete", {"password": PASSWORD, "confirm": "y"}, token_page="/account/delete"
    )
    assert response.status_code == 302
    db_session.expire_all()
    row = db_session.get(Member, patron.member.id)
    assert row.deleted_at is not None
    assert (row.stripe_payment_method_id, row.card_last4, row.card_synced_at) == (None, None, None)

    # Stripe still lists the ended subscription with the customer's card: it is not taken back.
    with app.app_context():
        reconciliation.reconcile(
            db.session, get_gateway(), events_since=utcnow() + timedelta(days=1)
        )
    assert _stored(db_session, patron.member) == (None, None, None, None)
