"""Stripe's events, delivered twice and in any order, always leave Stripe's final state."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, func, select, update

from membership.accounts.models import Member
from membership.billing import webhooks
from membership.billing.models import (
    JoinAttempt,
    MembershipEvent,
    Payment,
    Subscription,
    WebhookEvent,
)
from membership.billing.rules import MembershipState
from membership.emails import OutboundEmail
from tests.stripe.conftest import (
    DECLINED_ON_CHARGE,
    THREE_D_SECURE,
    VISA,
    StripeApi,
    apply_events,
    fail_a_renewal,
    join,
)


def _run(app, login, make_member, catalog, api: StripeApi, session) -> list[Member]:
    """Four readers, four stories: a second card, 3-D Secure passed, a failed renewal, 3-D
    Secure failed (the subscription is canceled at once)."""
    members = []
    stories = [
        ("reader", DECLINED_ON_CHARGE, "second card"),
        ("insider", THREE_D_SECURE, "authenticated"),
        ("co-creator", VISA, "renewal fails"),
        ("reader", THREE_D_SECURE, "not authenticated"),
    ]
    for number, (tier, card, story) in enumerate(stories):
        member = make_member(f"story{number}@example.org")
        client = app.test_client()
        login(member, c=client)
        step, outcome = join(client, api, catalog[tier].id, card=card)
        if story == "second card":
            assert step.pay(VISA)["status"] == "active"
        elif story in ("authenticated", "not authenticated"):
            api.authenticate(outcome["client_secret"], success=story == "authenticated")
            step.confirm()
        session.refresh(member)
        if story == "renewal fails":
            [subscription] = api.subscriptions_of(member.stripe_customer_id)
            fail_a_renewal(api, member.stripe_customer_id, subscription["id"])
        members.append(member)
    return members


def _stripe_truth(api: StripeApi, members: list[Member]) -> dict[int, Any]:
    truth = {}
    for member in members:
        customer = member.stripe_customer_id
        subscriptions = {
            (
                s["id"],
                s["status"],
                s["items"]["data"][0]["plan"]["id"],
                datetime.fromtimestamp(s["current_period_end"], tz=UTC),
                s["cancel_at_period_end"],
            )
            for s in api.subscriptions_of(customer)
        }
        payments = {
            (
                i["id"],
                "succeeded" if i["status"] == "paid" else "failed",
                i["amount_due"],
                i["currency"].upper(),
            )
            for i in api.all("invoices", customer=customer)
        }
        truth[member.id] = (customer, subscriptions, payments)
    return truth


def _ours(session, members: list[Member]) -> dict[int, Any]:
    session.expire_all()
    ours = {}
    for member in members:
        subscriptions = {
            (
                s.stripe_subscription_id,
                s.status.value,
                s.price.stripe_plan_id,
                s.current_period_end,
                s.cancel_at_period_end,
            )
            for s in session.scalars(
                select(Subscription).where(Subscription.member_id == member.id)
            )
        }
        payments = {
            (p.stripe_invoice_id, p.status.value, p.amount, p.currency)
            for p in session.scalars(select(Payment).where(Payment.member_id == member.id))
        }
        ours[member.id] = (member.stripe_customer_id, subscriptions, payments)
    return ours


def _history(session) -> list[tuple[Any, ...]]:
    rows = session.execute(
        select(
            MembershipEvent.member_id,
            MembershipEvent.from_state,
            MembershipEvent.to_state,
            MembershipEvent.mrr_delta,
        )
    ).all()
    return sorted(tuple(row) for row in rows)


def _forget_everything(session) -> None:
    """Fresh state: the app knows the readers and the catalog, nothing that Stripe told it."""
    for model in (Payment, MembershipEvent, JoinAttempt, Subscription, WebhookEvent, OutboundEmail):
        session.execute(delete(model))
    session.execute(update(Member).values(stripe_customer_id=None))
    session.commit()


def test_events_delivered_twice_and_in_any_order_leave_what_stripe_says(
    app, client, login, make_member, catalog, stripe_api, db_session
):
    members = _run(app, login, make_member, catalog, stripe_api, db_session)
    truth = _stripe_truth(stripe_api, members)
    statuses = sorted(s[1] for _, subs, _ in truth.values() for s in subs)
    assert statuses == ["active", "active", "canceled", "past_due"]
    events = stripe_api.events()
    unique = len({event["id"] for event in events})
    orders = {
        "as they happened, each twice": [e for event in events for e in (event, event)],
        "newest first, then again": events[::-1] + events[::-1],
    }
    for seed in (1, 2, 3):
        shuffled = events + events
        random.Random(seed).shuffle(shuffled)
        orders[f"shuffled ({seed})"] = shuffled

    histories = {}
    for name, order in orders.items():
        _forget_everything(db_session)

        deliveries = apply_events(app, stripe_api, order)

        assert webhooks.Delivery.FAILED not in deliveries, name
        assert deliveries.count(webhooks.Delivery.DUPLICATE) == len(order) - unique, name
        assert db_session.scalar(select(func.count()).select_from(WebhookEvent)) == unique, name
        assert _ours(db_session, members) == truth, name
        histories[name] = _history(db_session)

    second_card, authenticated, renewal_fails, not_authenticated = (m.id for m in members)
    expected = [
        (second_card, MembershipState.NONE, MembershipState.ACTIVE, 500),
        (authenticated, MembershipState.NONE, MembershipState.ACTIVE, 1000),
        (renewal_fails, MembershipState.NONE, MembershipState.PAST_DUE, 2500),
        (not_authenticated, MembershipState.NONE, MembershipState.ENDED, 0),
    ]
    assert histories == dict.fromkeys(orders, expected)
