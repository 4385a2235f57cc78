"""The Stripe webhook endpoint with payloads we sign ourselves.

localstripe sends only some event types, never twice and never with a bad signature; real Stripe
sends more types, repeats events and is impersonated by attackers. So these tests build events as
Stripe would, for objects that exist in localstripe, and sign them with the suite's secret (or
deliberately not). They also feed the readers in ``sync`` both API shapes: the one localstripe
answers in (and the pinned version), and the one of Stripe API versions from 2025-03-31.
"""

from __future__ import annotations

import copy
import json
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import stripe as stripe_sdk
from flask import Flask
from sqlalchemy import func, select

from membership.accounts.models import Member
from membership.billing import service, sync
from membership.billing.gateway import GatewayUnavailable, StripeGateway
from membership.billing.models import (
    EventStatus,
    MembershipEvent,
    Payment,
    PaymentStatus,
    Refund,
    Subscription,
    Tier,
    WebhookEvent,
)
from membership.billing.rules import MembershipState, SubscriptionStatus
from membership.config import DEFAULT_STRIPE_API_VERSION
from membership.emails import OutboundEmail
from membership.extensions import db
from tests.conftest import LocalStripe
from tests.support.stripe_events import signature_header, stripe_event

READER_EUR = "membership-reader-month-eur-500"
INSIDER_EUR = "membership-insider-month-eur-1000"
Json = dict[str, Any]


# --- signing and delivering ----------------------------------------------------------------------


def deliver(client: Any, payload: Json | bytes, *, header: str | None = "sign") -> Any:
    """POST a delivery; ``header="sign"`` signs the body correctly, None sends no signature."""
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    headers = {"Content-Type": "application/json"}
    if header == "sign":
        headers["Stripe-Signature"] = signature_header(body)
    elif header is not None:
        headers["Stripe-Signature"] = header
    return client.post("/webhooks/stripe", data=body, headers=headers)


# --- Stripe's JSON in the shapes of API versions from 2025-03-31 --------------------------------


def newer_subscription(subscription: Json, shift: int = 0) -> Json:
    """``current_period_*`` moved from the subscription to its items (``shift`` moves the end)."""
    new = copy.deepcopy(subscription)
    start = new.pop("current_period_start", None)
    end = new.pop("current_period_end")
    for item in new["items"]["data"]:
        item["current_period_start"] = start
        item["current_period_end"] = end + shift
    return new


def newer_invoice(invoice: Json) -> Json:
    """``subscription`` moved to ``parent.subscription_details``; payments are a list."""
    new = copy.deepcopy(invoice)
    subscription = sync.object_id(new.pop("subscription", None))
    intent = sync.object_id(new.pop("payment_intent", None))
    new.pop("charge", None)
    new.pop("paid", None)
    new["parent"] = {
        "type": "subscription_details",
        "quote_details": None,
        "subscription_details": {"metadata": {}, "subscription": subscription},
    }
    new["payments"] = {
        "object": "list",
        "data": [
            {
                "object": "invoice_payment",
                "status": "paid",
                "payment": {"type": "payment_intent", "payment_intent": intent},
            }
        ],
    }
    return new


# --- fixtures and helpers ------------------------------------------------------------------------


@pytest.fixture
def gateway(stripe: StripeGateway) -> StripeGateway:
    """The app's gateway, on an emptied localstripe."""
    return stripe


@pytest.fixture(scope="module")
def sdk(localstripe: LocalStripe) -> stripe_sdk.StripeClient:
    """Stripe's SDK on localstripe, to make and change objects behind the app's back."""
    return stripe_sdk.StripeClient(
        "sk_test_suite",
        base_addresses={"api": localstripe.base_url},
        max_network_retries=0,
        stripe_version=DEFAULT_STRIPE_API_VERSION,
    )


@pytest.fixture
def tiers(catalog: dict[str, Tier]) -> dict[str, int]:
    """The demo tiers, synced to localstripe; slug -> tier id."""
    return {slug: tier.id for slug, tier in catalog.items()}


@pytest.fixture
def calls(gateway: StripeGateway, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every request the app's gateway makes to Stripe, as "Service.method"."""
    made: list[str] = []
    call, iterate = gateway._call, gateway._iterate

    def counted_call(method: Any, *args: Any, **kwargs: Any) -> Json:
        made.append(f"{type(method.__self__).__name__}.{method.__name__}")
        return call(method, *args, **kwargs)

    def counted_iterate(method: Any, params: Json) -> Iterator[Json]:
        made.append(f"{type(method.__self__).__name__}.{method.__name__}")
        return iterate(method, params)

    monkeypatch.setattr(gateway, "_call", counted_call)
    monkeypatch.setattr(gateway, "_iterate", counted_iterate)
    return made


def plain(obj: Any) -> Json:
    return obj.to_dict()


def card_on_file(sdk: stripe_sdk.StripeClient, customer_id: str) -> str:
    method = sdk.v1.payment_methods.attach("pm_card_visa", params={"customer": customer_id})
    sdk.v1.customers.update(
        customer_id, params={"invoice_settings": {"default_payment_method": method.id}}
    )
    return method.id


def join(
    app: Flask,
    gateway: StripeGateway,
    sdk: stripe_sdk.StripeClient,
    member: Member,
    plan: str = READER_EUR,
    *,
    record: bool = True,
) -> tuple[str, str]:
    """Make ``member`` a patron in localstripe (and, if ``record``, in our tables, as joining
    does from the API's answers). Returns (customer id, subscription id)."""
    with app.app_context():
        me = db.session.get(Member, member.id)
        customer = service.ensure_customer(db.session, gateway, me)
        card_on_file(sdk, customer)
        data = gateway.create_subscription(
            customer_id=customer,
            plan_id=plan,
            member_id=me.id,
            idempotency_key=f"join-test-{uuid.uuid4().hex}",
        )
        assert data["status"] == "active"
        if record:
            assert sync.apply_subscription(db.session, data, reason="joined") is not None
            sync.apply_invoice(db.session, data["latest_invoice"], reason="first payment")
        db.session.commit()
    return customer, data["id"]


def renewal_invoice(sdk: stripe_sdk.StripeClient, customer: str, subscription: str) -> Json:
    """A further invoice for the subscription, paid (what a renewal looks like)."""
    invoice = sdk.v1.invoices.create(params={"customer": customer, "subscription": subscription})
    return plain(sdk.v1.invoices.pay(invoice.id))


def failed_renewal(
    localstripe: LocalStripe, sdk: stripe_sdk.StripeClient, customer: str, subscription: str
) -> str:
    """A renewal whose payment fails (localstripe's only way: 3-D Secure, then failed)."""
    card = sdk.v1.payment_methods.create(
        params={
            "type": "card",
            "card": {"number": "4000002500003155", "exp_month": 12, "exp_year": 2040, "cvc": "123"},
        }
    )
    sdk.v1.payment_methods.attach(card.id, params={"customer": customer})
    sdk.v1.customers.update(
        customer, params={"invoice_settings": {"default_payment_method": card.id}}
    )
    invoice = sdk.v1.invoices.create(params={"customer": customer, "subscription": subscription})
    intent = sdk.v1.invoices.pay(invoice.id, params={"expand": ["payment_intent"]}).payment_intent
    assert intent.status == "requires_action"
    form = urllib.parse.urlencode({"success": "false", "client_secret": intent.client_secret})
    request = urllib.request.Request(
        f"{localstripe.base_url}/v1/payment_intents/{intent.id}/_authenticate",
        data=form.encode(),
        headers={"Authorization": "Bearer sk_test_suite"},
    )
    urllib.request.urlopen(request, timeout=5).close()
    return invoice.id


def count(session: Any, model: Any, *where: Any) -> int:
    return session.scalar(select(func.count()).select_from(model).where(*where))


def snapshot(session: Any) -> dict[str, Any]:
    """Everything a webhook could change, to compare before and after a delivery."""
    session.expire_all()
    return {
        "members": session.execute(
            select(Member.id, Member.email, Member.stripe_customer_id).order_by(Member.id)
        ).all(),
        "subscriptions": session.execute(
            select(
                Subscription.id,
                Subscription.member_id,
                Subscription.status,
                Subscription.state,
                Subscription.live,
                Subscription.cancel_at_period_end,
                Subscription.pause_requested,
                Subscription.current_period_end,
            ).order_by(Subscription.id)
        ).all(),
        "payments": session.execute(
            select(Payment.id, Payment.status, Payment.amount, Payment.amount_refunded).order_by(
                Payment.id
            )
        ).all(),
        "refunds": count(session, Refund),
        "membership_events": count(session, MembershipEvent),
        "emails": count(session, OutboundEmail),
    }


def stored(session: Any, event: Json) -> WebhookEvent:
    session.expire_all()
    row = session.scalar(select(WebhookEvent).where(WebhookEvent.stripe_event_id == event["id"]))
    assert row is not None, f"event {event['id']} was not stored"
    return row


def subscription_row(session: Any, stripe_id: str) -> Subscription:
    session.expire_all()
    row = session.scalar(
        select(Subscription).where(Subscription.stripe_subscription_id == stripe_id)
    )
    assert row is not None
    return row


# --- deliveries we must refuse -------------------------------------------------------------------


def _body(event: Json) -> bytes:
    return json.dumps(event).encode()


def _old(body: bytes) -> str:
    return signature_header(body, timestamp=int(time.time()) - 301)


def _tampered(event: Json) -> tuple[bytes, str]:
    signed = signature_header(_body(event))
    return _body({**event, "id": "evt_someone_else"}), signed


BAD_DELIVERIES: dict[str, Callable[[Json], tuple[bytes, str | None]]] = {
    "no signature": lambda e: (_body(e), None),
    "empty signature": lambda e: (_body(e), ""),
    "not a signature header": lambda e: (_body(e), "sha256=abc"),
    "wrong hmac": lambda e: (_body(e), f"t={int(time.time())},v1={'0' * 64}"),
    "wrong secret": lambda e: (_body(e), signature_header(_body(e), "whsec_not_ours")),
    "v0 scheme only": lambda e: (
        _body(e),
        signature_header(_body(e)).replace("v1=", "v0="),
    ),
    "body changed after signing": _tampered,
    "timestamp outside the tolerance": lambda e: (_body(e), _old(_body(e))),
    "timestamp not a number": lambda e: (
        _body(e),
        "t=soon," + signature_header(_body(e)).split(",")[1],
    ),
    "malformed JSON": lambda e: (b'{"id": "evt_1", "type": ', "sign"),
    "not UTF-8": lambda e: (b'{"id": "evt_\xff\xfe", "type": "x", "data": {}}', "sign"),
    "JSON list": lambda e: (b"[]", "sign"),
    "JSON string": lambda e: (b'"customer.deleted"', "sign"),
    "JSON null": lambda e: (b"null", "sign"),
    "empty object": lambda e: (b"{}", "sign"),
    "no id": lambda e: (_body({k: v for k, v in e.items() if k != "id"}), "sign"),
    "id not a string": lambda e: (_body({**e, "id": 12345}), "sign"),
    "no type": lambda e: (_body({k: v for k, v in e.items() if k != "type"}), "sign"),
    "type not a string": lambda e: (_body({**e, "type": ["customer.deleted"]}), "sign"),
    "no data": lambda e: (_body({k: v for k, v in e.items() if k != "data"}), "sign"),
    "data not an object": lambda e: (_body({**e, "data": [e["data"]]}), "sign"),
    "empty body": lambda e: (b"", "sign"),
}


@pytest.fixture
def linked_member(make_member: Any, db_session: Any) -> Member:
    """A member whose Stripe customer a valid ``customer.deleted`` would unlink."""
    member = make_member()
    member.stripe_customer_id = "cus_victim"
    db_session.commit()
    return member


def test_a_correctly_signed_customer_deleted_unlinks_the_member(
    client, db_session, linked_member, calls
):
    """The control for the refusals below: the same event, signed, does change something."""
    event = stripe_event("customer.deleted", {"id": "cus_victim", "object": "customer"})
    response = deliver(client, event)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.get_json() == {"received": True, "result": "processed"}
    db_session.expire_all()
    assert linked_member.stripe_customer_id is None
    assert stored(db_session, event).status is EventStatus.PROCESSED
    assert calls == []  # customer.deleted needs no API call


@pytest.mark.parametrize("case", list(BAD_DELIVERIES))
def test_a_delivery_that_does_not_verify_is_refused_and_leaves_no_trace(
    client, db_session, linked_member, calls, case
):
    before = snapshot(db_session)
    event = stripe_event("customer.deleted", {"id": "cus_victim", "object": "customer"})
    body, header = BAD_DELIVERIES[case](event)
    response = deliver(client, body, header=header)
    assert response.status_code == 400, response.get_data(as_text=True)
    assert response.get_json()["error"] == "invalid webhook"
    assert count(db_session, WebhookEvent) == 0
    assert snapshot(db_session) == before
    assert linked_member.stripe_customer_id == "cus_victim"
    assert calls == []


def test_a_delivery_signed_for_the_future_within_the_tolerance_is_accepted(
    client, db_session, linked_member
):
    """Clocks drift: Stripe's own libraries check only that a signature is not too old."""
    event = stripe_event("customer.deleted", {"id": "cus_victim", "object": "customer"})
    body = _body(event)
    response = deliver(client, body, header=signature_header(body, timestamp=int(time.time()) + 60))
    assert response.status_code == 200


def test_a_signature_among_several_is_enough(client, db_session, linked_member):
    """Stripe sends one v1 per active secret while a secret is being rolled."""
    event = stripe_event("customer.deleted", {"id": "cus_victim", "object": "customer"})
    body = _body(event)
    good = signature_header(body)
    t, v1 = good.split(",")
    header = f"{t},v1={'ab' * 32},{v1},v0={'cd' * 32}"
    assert deliver(client, body, header=header).status_code == 200
    assert count(db_session, WebhookEvent) == 1


# --- deliveries we accept but do not act on ------------------------------------------------------


@pytest.mark.parametrize(
    ("type_", "obj"),
    [
        ("balance.available", {"object": "balance", "available": []}),
        ("checkout.session.completed", {"id": "cs_test_1", "object": "checkout.session"}),
        ("product.created", {"id": "prod_1", "object": "product"}),
        ("customer.subscription.updated", {}),  # a type we act on, with nothing to act on
        ("customer.subscription.updated", {"object": "subscription"}),
        ("invoice.paid", {"id": "in_1", "object": "invoice"}),  # not a subscription invoice
        ("charge.refunded", {"object": "charge"}),
        ("customer.deleted", {"id": 42}),
    ],
)
def test_an_event_we_do_not_act_on_is_stored_acknowledged_and_ignored(
    client, db_session, linked_member, calls, type_, obj
):
    before = snapshot(db_session)
    event = stripe_event(type_, obj)
    response = deliver(client, event)
    assert response.status_code == 200
    assert response.get_json() == {"received": True, "result": "ignored"}
    row = stored(db_session, event)
    assert row.status is EventStatus.IGNORED
    assert row.type == type_
    assert row.processed_at is not None
    assert json.loads(row.payload) == event
    assert snapshot(db_session) == before
    assert calls == []


# --- repeats -------------------------------------------------------------------------------------


def test_a_repeated_event_has_no_second_effect_and_makes_no_stripe_call(
    app, client, db_session, make_member, gateway, sdk, tiers, calls
):
    member = make_member()
    _, sub_id = join(app, gateway, sdk, member)
    sdk.v1.subscriptions.update(sub_id, params={"cancel_at_period_end": True})
    event = stripe_event(
        "customer.subscription.updated",
        plain(sdk.v1.subscriptions.retrieve(sub_id)),
        previous={"cancel_at_period_end": False},
    )
    calls.clear()
    first = deliver(client, event)
    assert first.get_json() == {"received": True, "result": "processed"}
    assert calls == ["SubscriptionService.retrieve"]
    assert subscription_row(db_session, sub_id).state is MembershipState.CANCELING
    after_first = snapshot(db_session)

    # Stripe changes its mind meanwhile: a reprocessed repeat would undo the cancellation.
    sdk.v1.subscriptions.update(sub_id, params={"cancel_at_period_end": False})
    calls.clear()
    for _ in range(3):
        again = deliver(client, event)
        assert again.status_code == 200
        assert again.get_json() == {"received": True, "result": "duplicate"}
    assert calls == []
    assert snapshot(db_session) == after_first
    assert count(db_session, WebhookEvent) == 1
    assert stored(db_session, event).attempts == 1


def test_a_repeat_with_a_different_body_is_still_a_repeat(client, db_session, linked_member):
    first = stripe_event("balance.available", {"object": "balance"}, event_id="evt_same")
    second = stripe_event(
        "customer.deleted", {"id": "cus_victim", "object": "customer"}, event_id="evt_same"
    )
    assert deliver(client, first).get_json()["result"] == "ignored"
    assert deliver(client, second).get_json()["result"] == "duplicate"
    db_session.expire_all()
    assert linked_member.stripe_customer_id == "cus_victim"
    assert count(db_session, WebhookEvent) == 1


# --- objects that are not ours ------------------------------------------------------------------


def test_a_subscription_of_a_customer_we_cannot_match_is_ignored(
    client, db_session, make_member, gateway, sdk, tiers, calls
):
    """Made in the Dashboard for a customer without an email and without our metadata."""
    make_member("someone@example.org")
    stranger = sdk.v1.customers.create(params={"name": "No Email"})
    card_on_file(sdk, stranger.id)
    subscription = sdk.v1.subscriptions.create(
        params={"customer": stranger.id, "items": [{"plan": READER_EUR}]}
    )
    before = snapshot(db_session)
    for type_ in ("customer.subscription.created", "customer.subscription.updated"):
        event = stripe_event(type_, plain(subscription))
        assert deliver(client, event).get_json() == {"received": True, "result": "ignored"}
        assert stored(db_session, event).status is EventStatus.IGNORED
    first_invoice = plain(sdk.v1.invoices.retrieve(plain(subscription)["latest_invoice"]))
    invoice = stripe_event("invoice.payment_succeeded", first_invoice)
    assert deliver(client, invoice).get_json()["result"] == "ignored"
    assert snapshot(db_session) == before
    assert "SubscriptionService.retrieve" in calls  # it did look, then left it alone


def test_a_subscription_to_a_plan_that_is_not_ours_is_ignored_even_for_a_known_email(
    client, db_session, make_member, gateway, sdk, tiers
):
    member = make_member("print-reader@example.org")
    sdk.v1.products.create(params={"id": "print-edition", "name": "Print edition"})
    sdk.v1.plans.create(
        params={
            "id": "print-monthly",
            "product": "print-edition",
            "amount": 1200,
            "currency": "eur",
            "interval": "month",
        }
    )
    customer = sdk.v1.customers.create(params={"email": "other-reader@example.org"})
    card_on_file(sdk, customer.id)
    known = sdk.v1.customers.create(params={"email": member.email})
    card_on_file(sdk, known.id)
    before = snapshot(db_session)
    for who in (customer, known):
        foreign = sdk.v1.subscriptions.create(
            params={"customer": who.id, "items": [{"plan": "print-monthly"}]}
        )
        event = stripe_event("customer.subscription.created", plain(foreign))
        assert deliver(client, event).get_json()["result"] == "ignored"
    assert snapshot(db_session) == before


def test_a_dashboard_subscription_for_a_known_email_is_linked_to_that_member(
    client, db_session, make_member, gateway, sdk, tiers
):
    """The counterpart of the two above: same kind of event, but ours."""
    member = make_member("Dashboard.Reader@example.org".lower())
    customer = sdk.v1.customers.create(params={"email": "Dashboard.Reader@Example.org"})
    card_on_file(sdk, customer.id)
    subscription = sdk.v1.subscriptions.create(
        params={"customer": customer.id, "items": [{"plan": READER_EUR}]}
    )
    event = stripe_event("customer.subscription.created", plain(subscription))
    assert deliver(client, event).get_json()["result"] == "processed"
    row = subscription_row(db_session, subscription.id)
    assert row.member_id == member.id
    assert row.state is MembershipState.ACTIVE
    db_session.expire_all()
    assert member.stripe_customer_id == customer.id
    assert count(db_session, Member) == 1


def test_a_payment_without_our_metadata_is_ignored(client, db_session, gateway, sdk, calls):
    intent = sdk.v1.payment_intents.create(
        params={
            "amount": 2500,
            "currency": "eur",
            "payment_method": "pm_card_visa",
            "payment_method_types": ["card"],
            "confirm": True,
        }
    )
    assert intent.status == "succeeded"
    before = snapshot(db_session)
    for type_ in ("payment_intent.succeeded", "payment_intent.payment_failed"):
        event = stripe_event(type_, plain(intent))
        assert deliver(client, event).get_json()["result"] == "ignored"
    charge = sdk.v1.refunds.create(params={"payment_intent": intent.id, "amount": 500}).charge
    refunded = stripe_event("charge.refunded", plain(sdk.v1.charges.retrieve(charge)))
    assert deliver(client, refunded).get_json()["result"] == "ignored"
    assert snapshot(db_session) == before
    assert count(db_session, WebhookEvent) == 3


def test_the_deletion_of_a_customer_we_do_not_know_is_ignored(client, db_session, linked_member):
    before = snapshot(db_session)
    event = stripe_event("customer.deleted", {"id": "cus_stranger", "object": "customer"})
    assert deliver(client, event).get_json()["result"] == "ignored"
    assert snapshot(db_session) == before


# --- events localstripe never sends, for objects that exist in it ------------------------------


def test_subscription_updated_after_a_cancellation_made_in_stripe(
    app, client, db_session, make_member, gateway, sdk, tiers
):
    """Sent when someone cancels in the Stripe Dashboard: the member sees "Ends on ..."."""
    member = make_member()
    _, sub_id = join(app, gateway, sdk, member)
    assert subscription_row(db_session, sub_id).state is MembershipState.ACTIVE
    sdk.v1.subscriptions.update(sub_id, params={"cancel_at_period_end": True})
    event = stripe_event(
        "customer.subscription.updated",
        plain(sdk.v1.subscriptions.retrieve(sub_id)),
        previous={"cancel_at_period_end": False},
    )
    assert deliver(client, event).get_json()["result"] == "processed"
    row = subscription_row(db_session, sub_id)
    assert row.cancel_at_period_end is True
    assert row.state is MembershipState.CANCELING
    change = db_session.scalar(select(MembershipEvent).order_by(MembershipEvent.id.desc()).limit(1))
    assert (change.from_state, change.to_state) == (
        MembershipState.ACTIVE,
        MembershipState.CANCELING,
    )
    assert change.mrr_delta == 0  # still paid for until the period ends
    assert change.member_id == member.id


def test_subscription_updated_uses_stripe_now_not_the_stale_payload(
    app, client, db_session, make_member, gateway, sdk, tiers
):
    """Out of order: an old "canceling" payload arrives after the cancellation was undone."""
    member = make_member()
    _, sub_id = join(app, gateway, sdk, member)
    stale = plain(sdk.v1.subscriptions.update(sub_id, params={"cancel_at_period_end": True}))
    sdk.v1.subscriptions.update(sub_id, params={"cancel_at_period_end": False})
    before = snapshot(db_session)
    event = stripe_event("customer.subscription.updated", stale)
    assert deliver(client, event).get_json()["result"] == "processed"
    assert subscription_row(db_session, sub_id).state is MembershipState.ACTIVE
    assert snapshot(db_session) == before


@pytest.mark.parametrize("shape", ["pinned", "newer"])
def test_invoice_paid_records_the_renewal_once(
    app, client, db_session, make_member, gateway, sdk, tiers, shape
):
    member = make_member()
    customer, sub_id = join(app, gateway, sdk, member)
    assert count(db_session, Payment) == 1  # the first payment, from joining
    invoice = renewal_invoice(sdk, customer, sub_id)
    payload = invoice if shape == "pinned" else newer_invoice(invoice)
    event = stripe_event("invoice.paid", payload)
    assert deliver(client, event).get_json()["result"] == "processed"
    db_session.expire_all()
    renewal = db_session.scalar(select(Payment).where(Payment.stripe_invoice_id == invoice["id"]))
    assert renewal is not None
    assert renewal.status is PaymentStatus.SUCCEEDED
    assert (renewal.amount, renewal.currency) == (500, "EUR")
    assert renewal.member_id == member.id
    assert renewal.subscription_id == subscription_row(db_session, sub_id).id
    assert renewal.paid_at is not None
    assert renewal.stripe_payment_intent_id == sync.object_id(invoice["payment_intent"])
    # invoice.payment_succeeded comes with it (a different event): still one payment.
    twin = stripe_event("invoice.payment_succeeded", payload)
    assert deliver(client, twin).get_json()["result"] == "processed"
    assert count(db_session, Payment) == 2
    assert count(db_session, WebhookEvent) == 2


def test_charge_refunded_records_each_refund_of_a_gift(
    app, client, db_session, gateway, sdk, calls
):
    with app.app_context():
        gift = service.start_gift(
            db.session,
            member=None,
            email="giver@example.org",
            amount_text="10",
            currency="EUR",
            currencies=["EUR", "USD", "GBP"],
            minimum_major=2,
            token=service.new_token(),
        )
        secret = service.gift_card_setup(db.session, gateway, gift)
        setup_id = secret.split("_secret_")[0]
        sdk.v1.setup_intents.confirm(setup_id, params={"payment_method": "pm_card_visa"})
        assert service.pay_gift(db.session, gateway, gift, setup_id).status == "active"
        db.session.commit()
        payment_id, intent_id, charge_id = (
            gift.id,
            gift.stripe_payment_intent_id,
            gift.stripe_charge_id,
        )
    assert charge_id
    first = sdk.v1.refunds.create(params={"payment_intent": intent_id, "amount": 300})
    event = stripe_event("charge.refunded", plain(sdk.v1.charges.retrieve(charge_id)))
    calls.clear()
    assert deliver(client, event).get_json()["result"] == "processed"
    assert calls == ["ChargeService.retrieve"]
    db_session.expire_all()
    payment = db_session.get(Payment, payment_id)
    assert payment.amount_refunded == 300
    refunds = db_session.scalars(select(Refund).where(Refund.payment_id == payment_id)).all()
    assert [(r.stripe_refund_id, r.amount, r.currency) for r in refunds] == [(first.id, 300, "EUR")]

    second = sdk.v1.refunds.create(params={"payment_intent": intent_id, "amount": 700})
    again = stripe_event("charge.refunded", plain(sdk.v1.charges.retrieve(charge_id)))
    assert deliver(client, again).get_json()["result"] == "processed"
    assert deliver(client, again).get_json()["result"] == "duplicate"
    db_session.expire_all()
    assert db_session.get(Payment, payment_id).amount_refunded == 1000
    assert sorted(
        db_session.execute(
            select(Refund.stripe_refund_id, Refund.amount).where(Refund.payment_id == payment_id)
        ).all()
    ) == sorted([(first.id, 300), (second.id, 700)])


def test_customer_deleted_unlinks_the_member_and_keeps_their_history(
    app, client, db_session, make_member, gateway, sdk, tiers
):
    member = make_member()
    customer, _ = join(app, gateway, sdk, member)
    before = snapshot(db_session)
    deleted = plain(sdk.v1.customers.delete(customer))
    assert deliver(client, stripe_event("customer.deleted", deleted)).status_code == 200
    db_session.expire_all()
    assert member.stripe_customer_id is None
    after = snapshot(db_session)
    assert after["subscriptions"] == before["subscriptions"]  # ended by their own events
    assert after["payments"] == before["payments"]


# --- both API shapes, read directly -------------------------------------------------------------


def test_the_subscription_of_an_invoice_is_read_in_both_shapes():
    assert sync.invoice_subscription_id({"subscription": "sub_old"}) == "sub_old"
    assert sync.invoice_subscription_id({"subscription": {"id": "sub_exp"}}) == "sub_exp"
    newer = {"parent": {"subscription_details": {"subscription": "sub_new"}}}
    assert sync.invoice_subscription_id(newer) == "sub_new"
    expanded = {"parent": {"subscription_details": {"subscription": {"id": "sub_new2"}}}}
    assert sync.invoice_subscription_id(expanded) == "sub_new2"
    both = {"subscription": None, "parent": {"subscription_details": {"subscription": "sub_n"}}}
    assert sync.invoice_subscription_id(both) == "sub_n"
    for none in (
        {},
        {"subscription": None},
        {"parent": None},
        {"parent": {"type": "quote_details", "subscription_details": None}},
    ):
        assert sync.invoice_subscription_id(none) is None


def test_the_payment_intent_of_an_invoice_is_read_in_both_shapes():
    assert sync.invoice_payment_intent_id({"payment_intent": "pi_old"}) == "pi_old"
    assert sync.invoice_payment_intent_id({"payment_intent": {"id": "pi_exp"}}) == "pi_exp"
    newer = newer_invoice({"id": "in_1", "subscription": "sub_1", "payment_intent": "pi_new"})
    assert sync.invoice_payment_intent_id(newer) == "pi_new"
    assert sync.invoice_payment_intent_id({"payments": {"data": []}}) is None
    assert sync.invoice_payment_intent_id({}) is None


def test_the_period_end_of_a_subscription_is_read_in_both_shapes():
    end = 1_800_000_000
    expected = datetime.fromtimestamp(end, tz=UTC)
    old = {"current_period_end": end, "items": {"data": [{"id": "si_1"}]}}
    new = {"items": {"data": [{"id": "si_1", "current_period_end": end}]}}
    assert sync.subscription_period_end(old) == expected
    assert sync.subscription_period_end(new) == expected
    assert sync.subscription_period_end({"items": {"data": []}}) is None
    assert sync.subscription_period_end({}) is None
    assert sync.subscription_period_end({"current_period_end": None, "items": None}) is None


def _subscription_json(member_id: int, plan_ref: Json, *, newer: bool, end: int) -> Json:
    item: Json = {"id": "si_shape", "object": "subscription_item", **plan_ref}
    data: Json = {
        "id": f"sub_shape_{'new' if newer else 'old'}",
        "object": "subscription",
        "customer": f"cus_shape_{member_id}",
        "status": "active",
        "cancel_at_period_end": False,
        "pause_collection": None,
        "start_date": end - 30 * 86400,
        "metadata": {"member_id": str(member_id)},
        "items": {"object": "list", "data": [item]},
    }
    if newer:
        item["current_period_end"] = end
    else:
        data["current_period_end"] = end
    return data


@pytest.mark.parametrize("newer", [False, True], ids=["pinned", "newer"])
@pytest.mark.parametrize("plan_key", ["plan", "price"])
def test_apply_subscription_reads_both_shapes(app, db_session, make_member, tiers, newer, plan_key):
    member = make_member()
    end = int(time.time()) + 20 * 86400
    data = _subscription_json(member.id, {plan_key: {"id": INSIDER_EUR}}, newer=newer, end=end)
    with app.app_context():
        subscription = sync.apply_subscription(db.session, data, reason="test")
        assert subscription is not None
        assert subscription.current_period_end == datetime.fromtimestamp(end, tz=UTC)
        assert subscription.price.stripe_plan_id == INSIDER_EUR
        assert subscription.member_id == member.id
        assert subscription.state is MembershipState.ACTIVE
        db.session.commit()
    db_session.expire_all()
    assert member.stripe_customer_id == f"cus_shape_{member.id}"


@pytest.mark.parametrize("newer", [False, True], ids=["pinned", "newer"])
def test_apply_invoice_reads_both_shapes(app, db_session, make_member, tiers, newer):
    member = make_member()
    end = int(time.time()) + 20 * 86400
    data = _subscription_json(member.id, {"plan": {"id": READER_EUR}}, newer=newer, end=end)
    paid_at = int(time.time()) - 60
    invoice: Json = {
        "id": "in_shape",
        "object": "invoice",
        "status": "paid",
        "paid": True,
        "amount_due": 500,
        "amount_paid": 500,
        "currency": "eur",
        "customer": data["customer"],
        "subscription": data["id"],
        "payment_intent": "pi_shape",
        "charge": "ch_shape",
        "status_transitions": {"paid_at": paid_at},
    }
    if newer:
        invoice = newer_invoice(invoice)
        assert "subscription" not in invoice
        assert "payment_intent" not in invoice
    with app.app_context():
        subscription = sync.apply_subscription(db.session, data, reason="test")
        payment = sync.apply_invoice(db.session, invoice, reason="test")
        assert payment is not None
        assert payment.subscription_id == subscription.id
        assert payment.member_id == member.id
        assert payment.status is PaymentStatus.SUCCEEDED
        assert (payment.amount, payment.currency) == (500, "EUR")
        assert payment.stripe_payment_intent_id == "pi_shape"
        assert payment.paid_at == datetime.fromtimestamp(paid_at, tz=UTC)
        assert sync.apply_invoice(db.session, invoice, reason="again").id == payment.id
        db.session.commit()
    assert count(db_session, Payment) == 1


def test_apply_invoice_ignores_an_invoice_for_no_subscription_of_ours(app, db_session, tiers):
    newer = newer_invoice(
        {
            "id": "in_x",
            "status": "paid",
            "amount_paid": 500,
            "currency": "eur",
            "subscription": "sub_x",
        }
    )
    with app.app_context():
        assert sync.apply_invoice(db.session, newer, reason="test") is None
        unpriced = {"id": "in_y", "amount_paid": 500}
        assert sync.apply_invoice(db.session, unpriced, reason="test") is None
    assert count(db_session, Payment) == 0


# --- both API shapes, through the endpoint ------------------------------------------------------


@pytest.fixture
def newer_api(gateway: StripeGateway, monkeypatch: pytest.MonkeyPatch) -> None:
    """The gateway answers as Stripe does on API versions from 2025-03-31 (localstripe cannot)."""
    fetch_subscription = gateway.get_subscription_for_sync
    fetch_invoice = gateway.get_invoice_for_sync

    def subscription_for_sync(subscription_id: str) -> Json:
        return newer_subscription(fetch_subscription(subscription_id), shift=86400)

    def invoice_for_sync(invoice_id: str) -> Json:
        # These versions cannot expand ``subscription``: the gateway falls back to no expansion.
        return newer_invoice(fetch_invoice(invoice_id))

    monkeypatch.setattr(gateway, "get_subscription_for_sync", subscription_for_sync)
    monkeypatch.setattr(gateway, "get_invoice_for_sync", invoice_for_sync)


def test_subscription_updated_in_the_newer_shape_takes_the_period_end_from_the_item(
    app, client, db_session, make_member, gateway, sdk, tiers, newer_api
):
    member = make_member()
    _, sub_id = join(app, gateway, sdk, member)
    current = plain(sdk.v1.subscriptions.update(sub_id, params={"cancel_at_period_end": True}))
    event = stripe_event("customer.subscription.updated", newer_subscription(current))
    assert deliver(client, event).get_json()["result"] == "processed"
    row = subscription_row(db_session, sub_id)
    assert row.current_period_end == datetime.fromtimestamp(
        current["current_period_end"] + 86400, tz=UTC
    )
    assert row.state is MembershipState.CANCELING


def test_an_invoice_before_its_subscription_records_both_in_the_newer_shape(
    app, client, db_session, make_member, gateway, sdk, tiers, newer_api
):
    """Out of order on a newer API version: invoice.paid arrives before the subscription's
    own event, and the invoice can no longer be fetched with its subscription expanded."""
    member = make_member()
    _, sub_id = join(app, gateway, sdk, member, record=False)
    assert count(db_session, Subscription) == 0
    first_id = plain(sdk.v1.subscriptions.retrieve(sub_id))["latest_invoice"]
    first = plain(sdk.v1.invoices.retrieve(first_id))
    event = stripe_event("invoice.paid", newer_invoice(first))
    assert deliver(client, event).get_json()["result"] == "processed"
    row = subscription_row(db_session, sub_id)
    assert row.member_id == member.id
    assert row.state is MembershipState.ACTIVE
    payment = db_session.scalar(select(Payment).where(Payment.stripe_invoice_id == first["id"]))
    assert payment is not None
    assert payment.status is PaymentStatus.SUCCEEDED
    assert payment.subscription_id == row.id


@pytest.mark.parametrize("shape", ["pinned", "newer"])
def test_a_failed_renewal_makes_the_member_past_due_in_both_shapes(
    app, request, client, db_session, make_member, gateway, sdk, tiers, localstripe, shape
):
    """The subscription turns past_due with no event of its own: the invoice event must bring
    the subscription's new status along, on every API version."""
    member = make_member()
    customer, sub_id = join(app, gateway, sdk, member)
    invoice_id = failed_renewal(localstripe, sdk, customer, sub_id)
    assert sdk.v1.subscriptions.retrieve(sub_id).status == "past_due"
    failed = plain(sdk.v1.invoices.retrieve(invoice_id, params={"expand": ["payment_intent"]}))
    if shape == "newer":
        request.getfixturevalue("newer_api")
        failed = newer_invoice(failed)
    event = stripe_event("invoice.payment_failed", failed)
    assert deliver(client, event).get_json()["result"] == "processed"
    row = subscription_row(db_session, sub_id)
    assert row.status is SubscriptionStatus.PAST_DUE
    assert row.state is MembershipState.PAST_DUE
    payment = db_session.scalar(select(Payment).where(Payment.stripe_invoice_id == invoice_id))
    assert payment.status is PaymentStatus.FAILED
    # Newer versions no longer embed the payment intent in the invoice: a generic reason then.
    assert payment.failure_message == (
        "The provided PaymentMethod has failed authentication."
        if shape == "pinned"
        else "The payment was declined."
    )
    # A renewal failed: the patron is told how to fix it.
    assert count(db_session, OutboundEmail, OutboundEmail.template == "payment_failed") == 1


# --- failures: kept, answered 500, replayed -----------------------------------------------------


def test_a_processing_failure_is_kept_with_its_error_and_replayed_later(
    app, client, runner, db_session, make_member, gateway, sdk, tiers, monkeypatch
):
    member = make_member()
    _, sub_id = join(app, gateway, sdk, member)
    sdk.v1.subscriptions.update(sub_id, params={"cancel_at_period_end": True})
    event = stripe_event(
        "customer.subscription.updated", plain(sdk.v1.subscriptions.retrieve(sub_id))
    )
    working = gateway.get_subscription_for_sync
    down = {"now": True}

    def unreliable(subscription_id: str) -> Json:
        if down["now"]:
            raise GatewayUnavailable("Stripe is having a bad day")
        return working(subscription_id)

    monkeypatch.setattr(gateway, "get_subscription_for_sync", unreliable)
    before = snapshot(db_session)
    response = deliver(client, event)
    assert response.status_code == 500
    assert response.get_json() == {"received": True, "processed": False}
    row = stored(db_session, event)
    assert row.status is EventStatus.FAILED
    assert row.error == "GatewayUnavailable: Stripe is having a bad day"
    assert row.attempts == 1
    assert row.processed_at is None
    assert snapshot(db_session) == before

    # Still down: the replay fails again and keeps the event.
    result = runner.invoke(args=["billing", "replay-failed"])
    assert result.exit_code == 0, result.output
    assert "Replayed 1 event(s): 1 failed." in result.output
    assert stored(db_session, event).attempts == 2
    assert snapshot(db_session) == before

    down["now"] = False
    result = runner.invoke(args=["billing", "replay-failed"])
    assert result.exit_code == 0, result.output
    assert "Replayed 1 event(s): 1 processed." in result.output
    row = stored(db_session, event)
    assert row.status is EventStatus.PROCESSED
    assert row.error is None
    assert row.processed_at is not None
    assert subscription_row(db_session, sub_id).state is MembershipState.CANCELING
    assert "nothing to do" in runner.invoke(args=["billing", "replay-failed"]).output
    # Stripe's own retry of the same event, after the replay: nothing more happens.
    assert deliver(client, event).get_json()["result"] == "duplicate"


def test_stripes_retry_of_a_failed_event_processes_it(
    app, client, db_session, make_member, gateway, sdk, tiers, monkeypatch
):
    member = make_member()
    _, sub_id = join(app, gateway, sdk, member)
    sdk.v1.subscriptions.update(sub_id, params={"cancel_at_period_end": True})
    event = stripe_event(
        "customer.subscription.updated", plain(sdk.v1.subscriptions.retrieve(sub_id))
    )
    with monkeypatch.context() as patch:
        patch.setattr(
            gateway,
            "get_subscription_for_sync",
            lambda _id: (_ for _ in ()).throw(GatewayUnavailable("timeout")),
        )
        assert deliver(client, event).status_code == 500
    retry = deliver(client, event)
    assert retry.status_code == 200
    assert retry.get_json()["result"] == "processed"
    assert subscription_row(db_session, sub_id).state is MembershipState.CANCELING
    assert count(db_session, WebhookEvent) == 1


def test_a_failure_half_way_keeps_nothing_of_the_first_half(
    app, client, runner, db_session, make_member, gateway, sdk, tiers, monkeypatch
):
    """invoice.paid applies the subscription, then the invoice: both or neither."""
    member = make_member()
    customer, sub_id = join(app, gateway, sdk, member)
    invoice = renewal_invoice(sdk, customer, sub_id)
    sdk.v1.subscriptions.update(sub_id, params={"cancel_at_period_end": True})
    event = stripe_event("invoice.paid", invoice)
    record = sync.apply_invoice

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("disk full")

    monkeypatch.setattr(sync, "apply_invoice", broken)
    before = snapshot(db_session)
    assert deliver(client, event).status_code == 500
    assert snapshot(db_session) == before  # the subscription's cancellation was rolled back
    assert stored(db_session, event).error == "RuntimeError: disk full"

    monkeypatch.setattr(sync, "apply_invoice", record)
    assert "1 processed" in runner.invoke(args=["billing", "replay-failed"]).output
    assert subscription_row(db_session, sub_id).state is MembershipState.CANCELING
    assert db_session.scalar(select(Payment).where(Payment.stripe_invoice_id == invoice["id"]))
