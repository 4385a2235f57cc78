"""Repair drift between Stripe and our tables, e.g. after lost webhooks. Safe to run any time."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from membership.billing import sync, webhooks
from membership.billing.gateway import StripeGateway
from membership.billing.models import Payment, PaymentStatus, Subscription, WebhookEvent

Progress = Callable[[str, Iterable[Any]], Iterator[Any]]


def _no_progress(label: str, items: Iterable[Any]) -> Iterator[Any]:
    yield from items


@dataclass
class Report:
    subscriptions: int = 0
    events: int = 0
    changes: list[str] = field(default_factory=list)


def _snapshot(subscription: Subscription | None) -> tuple[Any, ...] | None:
    if subscription is None:
        return None
    return (
        subscription.status,
        subscription.price_id,
        subscription.cancel_at_period_end,
        subscription.current_period_end,
        subscription.pause_requested,
        subscription.member_id,
    )


def reconcile(
    session: Session,
    gateway: StripeGateway,
    *,
    events_since: datetime,
    progress: Progress = _no_progress,
) -> Report:
    """Walk every Stripe subscription and apply it; then store and process recent events we
    never received. Commits after each item, so an interrupted run keeps what it repaired."""
    report = Report()
    seen: set[str] = set()
    for data in progress("Subscriptions", gateway.iter_subscriptions()):
        report.subscriptions += 1
        seen.add(data["id"])
        ours = _ours(session, data["id"])
        before = _snapshot(ours)
        card_before = sync.card_facts(ours.member) if ours is not None else None
        # The listed customer carries its default card (see iter_subscriptions): applying the
        # subscription stores it too, with no call per member.
        subscription = sync.apply_subscription(
            session, data, reason="reconcile", customer=data.get("customer")
        )
        after = _snapshot(subscription)
        if subscription is not None and before != after:
            verb = "added" if before is None else "repaired"
            report.changes.append(
                f"{verb} subscription {data['id']} (member {subscription.member_id}): "
                f"{subscription.status.value}"
            )
        if ours is not None and card_before != sync.card_facts(ours.member):
            report.changes.append(f"repaired the card of member {ours.member_id}")
        if subscription is not None:
            _repair_payments(session, gateway, data, report)
        session.commit()

    # Ours but not listed by Stripe (deleted long ago, or listed under another account).
    missing = session.scalars(
        select(Subscription.stripe_subscription_id).where(Subscription.live)
    ).all()
    for stripe_id in [s for s in missing if s not in seen]:
        data = gateway.get_subscription_for_sync(stripe_id)
        subscription = sync.apply_subscription(session, data, reason="reconcile")
        report.changes.append(f"refreshed subscription {stripe_id}: {data.get('status')}")
        session.commit()

    for event in progress("Recent events", _recent_events(gateway, events_since)):
        report.events += 1
        known = session.scalar(
            select(WebhookEvent.id).where(WebhookEvent.stripe_event_id == event["id"])
        )
        if known is None:
            result = webhooks.receive(session, gateway, event)
            report.changes.append(f"event {event['id']} ({event.get('type')}): {result.value}")
    return report


def _repair_payments(
    session: Session, gateway: StripeGateway, data: dict[str, Any], report: Report
) -> None:
    """Record the subscription's paid or failed invoices that our ledger lacks or has stale.

    Their events may have been processed long ago (so replaying events cannot help) while the
    payment row was lost; only invoices that disagree with the ledger are fetched in full.
    """
    customer_id = sync.object_id(data.get("customer"))
    if not customer_id:
        return
    for listed in gateway.list_invoices(customer_id):
        if sync.invoice_subscription_id(listed) != data["id"]:
            continue
        paid = listed.get("status") == "paid"
        if not paid and not (listed.get("status") == "open" and listed.get("attempted")):
            continue  # a draft, or void: nothing was paid or failed
        known = session.scalar(select(Payment).where(Payment.stripe_invoice_id == listed["id"]))
        before = known.status if known is not None else None
        if before is (PaymentStatus.SUCCEEDED if paid else PaymentStatus.FAILED):
            continue  # the ledger already agrees
        invoice = gateway.get_invoice_for_sync(listed["id"])
        payment = sync.apply_invoice(session, invoice, reason="reconcile")
        if payment is not None and payment.status is not before:
            verb = "recorded" if before is None else "repaired"
            report.changes.append(
                f"{verb} payment for invoice {listed['id']} (member {payment.member_id}): "
                f"{payment.status.value}"
            )


def _ours(session: Session, stripe_id: str) -> Subscription | None:
    return session.scalar(
        select(Subscription).where(Subscription.stripe_subscription_id == stripe_id)
    )


MAX_EVENTS_SCANNED = 10_000


def _recent_events(gateway: StripeGateway, since: datetime) -> Iterator[dict[str, Any]]:
    """Events created since ``since``. Stripe lists newest first (and keeps 30 days); we do not
    rely on the order, only bound how many are read."""
    cutoff = int(since.timestamp())
    for scanned, event in enumerate(gateway.iter_events()):
        if scanned >= MAX_EVENTS_SCANNED:
            break
        created = event.get("created")
        if isinstance(created, int) and created >= cutoff:
            yield event
