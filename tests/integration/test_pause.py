"""Pausing a membership: Stripe's ``pause_collection``, which localstripe does not have.

So Stripe is replaced by a recording double of our gateway: the real ``StripeGateway`` builds
every request as it would for Stripe, and the double records it instead of sending it, and answers
with the subscription as Stripe would after that request.
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import select

from membership.accounts.models import Member
from membership.billing import get_gateway, service, sync
from membership.billing.gateway import GatewayError, StripeGateway
from membership.billing.models import MembershipEvent, Subscription, Tier
from membership.billing.rules import Interval, MembershipState, pause_resumes_at
from membership.database import utcnow
from membership.extensions import db
from tests.conftest import WEBHOOK_SECRET

Json = dict[str, Any]
PLAN = "membership-insider-month-eur-1000"
SUBSCRIPTION_ID = "sub_pause_double"
CUSTOMER_ID = "cus_pause_double"
PAUSE_MESSAGE = "A pause lasts one, two or three months."


class RecordingGateway(StripeGateway):
    """Our gateway, with Stripe replaced by a recorder that keeps one subscription."""

    def __init__(self, settings: Any, subscription: Json, customer: Json) -> None:
        super().__init__(settings)
        self.subscription = subscription
        self.customer = customer
        self.calls: list[tuple[str, tuple[Any, ...], Json]] = []

    def _call(
        self, method: Any, *args: Any, idempotency_key: str | None = None, **params: Any
    ) -> Json:
        name = f"{type(method.__self__).__name__}.{method.__name__}"
        self.calls.append((name, args, params))
        if name == "SubscriptionService.update" and args == (self.subscription["id"],):
            if "pause_collection" in params:
                # Stripe: an object pauses collection; "" (an empty value) unsets it.
                self.subscription["pause_collection"] = params["pause_collection"] or None
            if "cancel_at_period_end" in params:
                self.subscription["cancel_at_period_end"] = params["cancel_at_period_end"]
            return copy.deepcopy(self.subscription)
        if name == "SubscriptionService.retrieve" and args == (self.subscription["id"],):
            answer = copy.deepcopy(self.subscription)
            if "customer" in (params.get("expand") or []):
                answer["customer"] = copy.deepcopy(self.customer)
            return answer
        if name == "CustomerService.retrieve" and args == (self.customer["id"],):
            return copy.deepcopy(self.customer)
        raise GatewayError(f"the double does not know {name}{args}")

    def updates(self) -> list[Json]:
        """The parameters of every subscription update sent."""
        return [params for name, _, params in self.calls if name == "SubscriptionService.update"]


def subscription_json(member_id: int, **changes: Any) -> Json:
    now = int(time.time())
    data = {
        "id": SUBSCRIPTION_ID,
        "object": "subscription",
        "customer": CUSTOMER_ID,
        "status": "active",
        "cancel_at_period_end": False,
        "pause_collection": None,
        "created": now - 86400,
        "start_date": now - 86400,
        "current_period_start": now - 86400,
        "current_period_end": now + 29 * 86400,
        "metadata": {"member_id": str(member_id)},
        "items": {
            "object": "list",
            "data": [
                {
                    "id": "si_pause_double",
                    "object": "subscription_item",
                    "plan": {
                        "id": PLAN,
                        "object": "plan",
                        "amount": 1000,
                        "currency": "eur",
                        "interval": "month",
                        "product": "membership-tier-insider",
                    },
                }
            ],
        },
    }
    data.update(changes)
    return data


@pytest.fixture
def patron(app: Flask, db_session: Any, make_member: Any) -> Member:
    """An Insider patron (EUR 10 a month), as our tables know them."""
    member = make_member()
    member_id = member.id  # read before another session opens a savepoint on the connection
    with app.app_context():
        tier = Tier(slug="insider", name="Insider", description="", position=0)
        db.session.add(tier)
        db.session.flush()
        service.set_price(db.session, tier, Interval.MONTH, "EUR", 1000)
        me = db.session.get(Member, member_id)
        me.stripe_customer_id = CUSTOMER_ID
        assert sync.apply_subscription(db.session, subscription_json(me.id), reason="joined")
        db.session.commit()
    return member


@pytest.fixture
def stripe_double(app: Flask, patron: Member, monkeypatch: pytest.MonkeyPatch) -> RecordingGateway:
    """The double, in place of the app's gateway for this test (the real one comes back after)."""
    with app.app_context():
        real = get_gateway()
    double = RecordingGateway(
        real.settings,
        subscription_json(patron.id),
        {
            "id": CUSTOMER_ID,
            "object": "customer",
            "email": patron.email,
            "metadata": {"member_id": str(patron.id)},
            "invoice_settings": {"default_payment_method": None},
        },
    )
    monkeypatch.setitem(app.extensions, "stripe_gateway", double)
    return double


def subscription_of(session: Any) -> Subscription:
    session.expire_all()
    row = session.scalar(
        select(Subscription).where(Subscription.stripe_subscription_id == SUBSCRIPTION_ID)
    )
    assert row is not None
    return row


def status_on_my_membership(client: Any) -> str:
    page = client.get("/membership").get_data(as_text=True)
    start = page.index('<dd class="state state-')
    return " ".join(page[start : page.index("</dd>", start)].split(">", 1)[1].split())


def press(client: Any, double: RecordingGateway, url: str, data: Json) -> Any:
    """Submit a form of My membership; ``double.calls`` then holds only what the POST did."""
    token = client.csrf_token("/membership")  # the page itself asks Stripe for the card
    double.calls.clear()
    return client.post(url, data={**data, "csrf_token": token})


def long_date(timestamp: int) -> str:
    return datetime.fromtimestamp(timestamp, tz=UTC).strftime("%d %B %Y")


# --- pausing and resuming from My membership ----------------------------------------------------


def test_a_two_month_pause_asks_stripe_to_void_invoices_until_then(
    client, login, db_session, patron, stripe_double
):
    login(patron)
    assert status_on_my_membership(client) == "Active"
    earliest = pause_resumes_at(utcnow(), 2)
    response = press(client, stripe_double, "/membership/pause", {"months": "2"})
    latest = pause_resumes_at(utcnow(), 2)
    assert response.status_code == 302
    assert response.headers["Location"] == "/membership"
    assert stripe_double.calls == [
        ("SubscriptionService.update", (SUBSCRIPTION_ID,), stripe_double.updates()[0])
    ]
    sent = stripe_double.updates()[0]
    assert set(sent) == {"pause_collection"}
    assert sent["pause_collection"]["behavior"] == "void"
    resumes_at = sent["pause_collection"]["resumes_at"]
    assert isinstance(resumes_at, int)
    assert int(earliest.timestamp()) <= resumes_at <= int(latest.timestamp())

    row = subscription_of(db_session)
    assert row.state is MembershipState.PAUSED
    assert row.pause_requested is True
    assert row.paused_until == datetime.fromtimestamp(resumes_at, tz=UTC)
    change = db_session.scalar(select(MembershipEvent).order_by(MembershipEvent.id.desc()))
    assert (change.from_state, change.to_state) == (MembershipState.ACTIVE, MembershipState.PAUSED)
    assert change.reason == "paused for 2 months"
    assert change.mrr_delta == -1000

    page = client.get("/membership").get_data(as_text=True)
    assert "Your membership is paused." in page
    assert f"Paused until {long_date(resumes_at)}" in page
    assert "Resume now" in page
    assert "Pause payments" not in page


@pytest.mark.parametrize("months", [1, 3])
def test_one_and_three_month_pauses_end_that_many_months_later(
    client, login, db_session, patron, stripe_double, months
):
    login(patron)
    before = utcnow()
    press(client, stripe_double, "/membership/pause", {"months": str(months)})
    (sent,) = stripe_double.updates()
    resumes = datetime.fromtimestamp(sent["pause_collection"]["resumes_at"], tz=UTC)
    assert pause_resumes_at(before, months) - timedelta(seconds=1) <= resumes
    assert resumes <= pause_resumes_at(utcnow(), months)
    assert subscription_of(db_session).state is MembershipState.PAUSED


def test_resuming_unsets_the_pause_and_makes_the_member_active_again(
    client, login, db_session, patron, stripe_double
):
    login(patron)
    press(client, stripe_double, "/membership/pause", {"months": "2"})
    assert subscription_of(db_session).state is MembershipState.PAUSED
    stripe_double.calls.clear()
    response = press(client, stripe_double, "/membership/resume", {})
    assert response.status_code == 302
    assert stripe_double.updates() == [{"pause_collection": ""}]
    row = subscription_of(db_session)
    assert row.state is MembershipState.ACTIVE
    assert row.pause_requested is False
    assert row.paused_until is None
    change = db_session.scalar(select(MembershipEvent).order_by(MembershipEvent.id.desc()))
    assert (change.from_state, change.to_state) == (MembershipState.PAUSED, MembershipState.ACTIVE)
    assert change.reason == "resumed by the member"
    assert change.mrr_delta == 1000
    page = client.get("/membership").get_data(as_text=True)
    assert "Welcome back: your membership is running again." in page
    assert status_on_my_membership(client) == "Active"
    assert "Pause payments" in page


@pytest.mark.parametrize(
    "months", ["0", "4", "x", "", "-1", "2.5", "1e1", "99999999999999999999", None]
)
def test_a_pause_that_is_not_one_to_three_months_is_refused_without_asking_stripe(
    client, login, db_session, patron, stripe_double, months
):
    login(patron)
    stripe_double.calls.clear()
    data = {} if months is None else {"months": months}
    response = press(client, stripe_double, "/membership/pause", data)
    assert response.status_code == 302
    assert stripe_double.calls == []
    assert subscription_of(db_session).state is MembershipState.ACTIVE
    page = client.get("/membership").get_data(as_text=True)
    assert PAUSE_MESSAGE in page


def test_a_pause_without_the_form_token_is_refused_without_asking_stripe(
    client, login, db_session, patron, stripe_double
):
    login(patron)
    stripe_double.calls.clear()
    response = client.post("/membership/pause", data={"months": "2"})
    assert response.status_code in (302, 400)
    assert stripe_double.calls == []
    assert subscription_of(db_session).state is MembershipState.ACTIVE


def test_a_reader_without_a_membership_cannot_pause(
    client, login, make_member, db_session, patron, stripe_double
):
    reader = make_member()
    login(reader)
    stripe_double.calls.clear()
    press(client, stripe_double, "/membership/pause", {"months": "2"})
    assert stripe_double.calls == []
    assert "You have no membership to change." in client.get("/membership").get_data(as_text=True)


# --- the same, told by Stripe's webhooks ---------------------------------------------------------


def deliver(client: Any, type_: str, obj: Json) -> Any:
    event = {
        "id": f"evt_pause_{uuid.uuid4().hex[:20]}",
        "object": "event",
        "api_version": "2025-02-24.acacia",
        "created": int(time.time()),
        "type": type_,
        "data": {"object": obj},
        "livemode": False,
    }
    body = json.dumps(event).encode()
    t = int(time.time())
    mac = hmac.new(WEBHOOK_SECRET.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return client.post(
        "/webhooks/stripe",
        data=body,
        headers={"Content-Type": "application/json", "Stripe-Signature": f"t={t},v1={mac}"},
    )


def test_a_pause_made_in_stripe_reaches_my_membership(
    client, login, db_session, patron, stripe_double
):
    """Sent when staff pause a subscription in the Stripe Dashboard."""
    resumes_at = int((utcnow() + timedelta(days=45)).timestamp())
    pause = {"behavior": "void", "resumes_at": resumes_at}
    stripe_double.subscription["pause_collection"] = pause
    response = deliver(
        client, "customer.subscription.updated", copy.deepcopy(stripe_double.subscription)
    )
    assert response.get_json() == {"received": True, "result": "processed"}
    assert [name for name, _, _ in stripe_double.calls] == ["SubscriptionService.retrieve"]
    row = subscription_of(db_session)
    assert row.state is MembershipState.PAUSED
    assert row.paused_until == datetime.fromtimestamp(resumes_at, tz=UTC)
    login(patron)
    assert status_on_my_membership(client) == f"Paused until {long_date(resumes_at)}"

    # Stripe's resumption at resumes_at comes as customer.subscription.resumed / updated.
    stripe_double.subscription["pause_collection"] = None
    response = deliver(
        client, "customer.subscription.resumed", copy.deepcopy(stripe_double.subscription)
    )
    assert response.get_json()["result"] == "processed"
    assert subscription_of(db_session).state is MembershipState.ACTIVE
    assert status_on_my_membership(client) == "Active"


def test_the_state_follows_stripe_now_not_the_paused_payload(
    client, db_session, patron, stripe_double
):
    """An old "paused" event arriving after the resumption changes nothing."""
    stale = copy.deepcopy(stripe_double.subscription)
    stale["pause_collection"] = {"behavior": "void", "resumes_at": int(time.time()) + 86400}
    response = deliver(client, "customer.subscription.updated", stale)
    assert response.get_json()["result"] == "processed"
    assert subscription_of(db_session).state is MembershipState.ACTIVE


def test_a_subscription_stripe_paused_itself_is_paused_without_an_end_date(
    client, login, db_session, patron, stripe_double
):
    """Status "paused": a trial ended without a card (Stripe's own pause, no resumes_at)."""
    stripe_double.subscription["status"] = "paused"
    response = deliver(
        client, "customer.subscription.paused", copy.deepcopy(stripe_double.subscription)
    )
    assert response.get_json()["result"] == "processed"
    row = subscription_of(db_session)
    assert row.state is MembershipState.PAUSED
    assert row.live is True
    login(patron)
    assert status_on_my_membership(client) == "Paused"
