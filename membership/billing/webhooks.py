"""Stripe webhooks: verify, store once, then apply Stripe's current state.

The event is a trigger, not a source of truth: for each one we fetch the object it names from
Stripe (one API call) and make our tables agree with it. So the final state is Stripe's whatever
order events arrive in, a repeated event changes nothing, and an event that fails is kept with
its error and answered with a 500, so that Stripe retries it (``billing replay-failed`` does too).

Unlike services, the functions here own their transactions: storing the event must be committed
before it is processed, whatever happens to the processing.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from datetime import timedelta
from enum import Enum
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from membership.billing import sync
from membership.billing.gateway import GatewayError, StripeGateway
from membership.billing.models import EventStatus, WebhookEvent
from membership.database import utcnow

log = logging.getLogger(__name__)
Json = dict[str, Any]


class Delivery(Enum):
    PROCESSED = "processed"
    IGNORED = "ignored"
    DUPLICATE = "duplicate"
    FAILED = "failed"


def receive(session: Session, gateway: StripeGateway, event: Json) -> Delivery:
    """Store a verified event (once, by its id) and process it unless that was already done."""
    stored = _store(session, event)
    if stored is None:
        return Delivery.DUPLICATE
    return process(session, gateway, stored.id)


def _store(session: Session, event: Json) -> WebhookEvent | None:
    """Insert the event; return the row to process, or None if it was already dealt with."""
    row = WebhookEvent(
        stripe_event_id=event["id"],
        type=str(event.get("type"))[:100],
        payload=json.dumps(event, separators=(",", ":")),
    )
    try:
        with session.begin_nested():
            session.add(row)
        session.commit()
        return row
    except IntegrityError:
        session.rollback()
    existing = session.scalar(
        select(WebhookEvent).where(WebhookEvent.stripe_event_id == event["id"])
    )
    if existing is None or existing.status in (EventStatus.PROCESSED, EventStatus.IGNORED):
        return None
    return existing  # stored before but failed (or crashed): Stripe is retrying it


def process(session: Session, gateway: StripeGateway, event_row_id: int) -> Delivery:
    """Apply one stored event in one transaction; on failure keep it with its error."""
    # populate_existing: the row may already be in the session (loaded by _store before the
    # lock was ours); without it the ORM keeps that stale copy and a duplicate is processed again.
    row = session.scalar(
        select(WebhookEvent)
        .where(WebhookEvent.id == event_row_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    if row is None or row.status in (EventStatus.PROCESSED, EventStatus.IGNORED):
        session.commit()
        return Delivery.DUPLICATE
    row.attempts += 1
    try:
        event = json.loads(row.payload)
        applied = handle(session, gateway, event)
    except Exception as exc:
        session.rollback()
        _mark_failed(session, event_row_id, exc)
        log.warning("webhook %s (%s) failed: %s", row.stripe_event_id, row.type, type(exc))
        return Delivery.FAILED
    row.status = EventStatus.PROCESSED if applied else EventStatus.IGNORED
    row.processed_at = utcnow()
    row.error = None
    session.commit()
    return Delivery.PROCESSED if applied else Delivery.IGNORED


def _mark_failed(session: Session, event_row_id: int, exc: Exception) -> None:
    row = session.get(WebhookEvent, event_row_id)
    if row is not None:
        row.status = EventStatus.FAILED
        row.attempts += 1
        row.error = f"{type(exc).__name__}: {exc}"[:1000]
        session.commit()


def replay_failed(
    session: Session, gateway: StripeGateway, stale_after: timedelta
) -> list[Delivery]:
    """Process again the events that failed, or that were stored but never finished."""
    cutoff = utcnow() - stale_after
    ids = session.scalars(
        select(WebhookEvent.id)
        .where(
            (WebhookEvent.status == EventStatus.FAILED)
            | ((WebhookEvent.status == EventStatus.RECEIVED) & (WebhookEvent.received_at < cutoff))
        )
        .order_by(WebhookEvent.id)
    ).all()
    session.commit()
    return [process(session, gateway, event_id) for event_id in ids]


# --- what each event means ---------------------------------------------------------------------


def handle(session: Session, gateway: StripeGateway, event: Json) -> bool:
    """Apply one event; True if it changed or confirmed something of ours."""
    handler = HANDLERS.get(event.get("type", ""))
    if handler is None:
        return False  # a type we do not act on: stored, acknowledged, no effect
    obj = (event.get("data") or {}).get("object") or {}
    if not isinstance(obj, dict):
        return False
    return handler(session, gateway, obj)


def _subscription_changed(session: Session, gateway: StripeGateway, obj: Json) -> bool:
    """customer.subscription.created / updated / deleted / paused / resumed."""
    if not isinstance(obj.get("id"), str):
        return False
    current = gateway.get_subscription_for_sync(obj["id"])
    subscription = sync.apply_subscription(
        session, current, reason="Stripe: subscription changed", customer=current.get("customer")
    )
    return subscription is not None


def _invoice_changed(session: Session, gateway: StripeGateway, obj: Json) -> bool:
    """invoice.paid / payment_succeeded / payment_failed / payment_action_required.

    Sent when a renewal is paid or fails. The invoice is fetched with its subscription, because
    the subscription's own status changes (past_due, back to active) come with no event of
    their own on some Stripe setups.
    """
    if not isinstance(obj.get("id"), str) or not sync.invoice_subscription_id(obj):
        return False  # not a subscription invoice
    invoice = gateway.get_invoice_for_sync(obj["id"])
    expanded = invoice.get("subscription")
    if not isinstance(expanded, dict):
        # API versions from 2025-03-31 cannot expand it (it moved to invoice.parent): fetch it.
        subscription_id = sync.invoice_subscription_id(invoice)
        expanded = gateway.get_subscription_for_sync(subscription_id) if subscription_id else None
    if isinstance(expanded, dict):
        sync.apply_subscription(
            session, expanded, reason="Stripe: invoice", customer=invoice.get("customer")
        )
    return sync.apply_invoice(session, invoice, reason="Stripe: invoice") is not None


def _payment_intent_changed(session: Session, gateway: StripeGateway, obj: Json) -> bool:
    """payment_intent.succeeded / payment_failed: one-off gifts (renewals go by invoice)."""
    if not isinstance(obj.get("id"), str):
        return False
    if (obj.get("metadata") or {}).get("kind") != "gift" and obj.get("invoice"):
        return False
    return sync.apply_payment_intent(session, gateway.get_payment_intent(obj["id"])) is not None


def _charge_refunded(session: Session, gateway: StripeGateway, obj: Json) -> bool:
    """charge.refunded: a refund made here or in the Stripe Dashboard."""
    if not isinstance(obj.get("id"), str):
        return False
    return sync.apply_charge_refunds(session, gateway.get_charge(obj["id"])) is not None


def _customer_updated(session: Session, gateway: StripeGateway, obj: Json) -> bool:
    """customer.updated: nothing of the customer's is copied; we only confirm the link."""
    customer_id = obj.get("id")
    return isinstance(customer_id, str) and sync.find_owner(session, customer_id, obj) is not None


def _customer_deleted(session: Session, gateway: StripeGateway, obj: Json) -> bool:
    """customer.deleted: the customer is gone from Stripe; unlink the member (no API call)."""
    customer_id = obj.get("id")
    return isinstance(customer_id, str) and sync.forget_customer(session, customer_id) is not None


Handler = Callable[[Session, StripeGateway, Json], bool]
HANDLERS: dict[str, Handler] = {
    "customer.subscription.created": _subscription_changed,
    "customer.subscription.updated": _subscription_changed,
    "customer.subscription.deleted": _subscription_changed,
    "customer.subscription.paused": _subscription_changed,
    "customer.subscription.resumed": _subscription_changed,
    "invoice.paid": _invoice_changed,
    "invoice.payment_succeeded": _invoice_changed,
    "invoice.payment_failed": _invoice_changed,
    "invoice.payment_action_required": _invoice_changed,
    "payment_intent.succeeded": _payment_intent_changed,
    "payment_intent.payment_failed": _payment_intent_changed,
    "charge.refunded": _charge_refunded,
    "customer.updated": _customer_updated,
    "customer.deleted": _customer_deleted,
}

__all__ = ["HANDLERS", "Delivery", "GatewayError", "process", "receive", "replay_failed"]
