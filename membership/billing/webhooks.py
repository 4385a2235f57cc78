"""Stripe webhooks: verify, store once, then apply Stripe's current state.

The event is a trigger, not a source of truth: for each one we fetch the object it names from
Stripe (one API call) and make our tables agree with it. So the final state is Stripe's whatever
order events arrive in, a repeated event changes nothing, and an event that fails is kept with
its error and answered with a 500, so that Stripe retries it (``billing replay-failed`` does too).

With a queue (``REDIS_URL``), :func:`receive_later` stores the event and queues its processing,
and the endpoint answers at once; a worker runs :func:`process_queued`, which leaves a failure
that may pass (Stripe's 429, Stripe or the database out of reach) to the queue to retry later.
An event that could not be stored or queued is not acknowledged: Stripe delivers it again.

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

from sqlalchemy import bindparam, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session

from membership import queue
from membership.billing import get_gateway, sync
from membership.billing.gateway import GatewayError, GatewayUnavailable, StripeGateway
from membership.billing.models import EventStatus, WebhookEvent
from membership.database import utcnow
from membership.extensions import db

log = logging.getLogger(__name__)
Json = dict[str, Any]


class Delivery(Enum):
    PROCESSED = "processed"
    IGNORED = "ignored"
    DUPLICATE = "duplicate"
    FAILED = "failed"
    QUEUED = "queued"


# Failures that may pass if tried again later: Stripe's 429 and 5xx, Stripe or the database out
# of reach (or a deadlock). Anything else (an object Stripe does not know...) fails for good.
TRANSIENT: tuple[type[Exception], ...] = (GatewayUnavailable, OperationalError)


class NotAccepted(Exception):
    """The event could not be stored or queued; it must not be acknowledged."""


def receive(session: Session, gateway: StripeGateway, event: Json) -> Delivery:
    """Store a verified event (once, by its id) and process it unless that was already done."""
    stored = _store(session, event)
    if stored is None:
        return Delivery.DUPLICATE
    return process(session, gateway, stored)


def receive_later(session: Session, event: Json, config: queue.Config) -> Delivery:
    """Store a verified event (once, by its id) and queue its processing unless that was done.

    Raises :class:`NotAccepted` if the database or the queue failed; a stored event then stays
    ``received`` for Stripe's next delivery (or ``billing replay-failed``) to pick up.
    """
    try:
        stored = _store(session, event)
        if stored is None:
            return Delivery.DUPLICATE
        job = "membership.billing.webhooks.process_queued"
        queue.enqueue(config, job, stored, job_id=job_id(stored))
    except (SQLAlchemyError, queue.QueueUnavailable) as exc:
        session.rollback()
        log.warning("webhook %s not accepted: %s", event.get("id"), type(exc).__name__)
        raise NotAccepted(type(exc).__name__) from exc
    return Delivery.QUEUED


def job_id(event_row_id: int) -> str:
    """One job per stored event: a repeated delivery while it waits adds no second job."""
    return f"webhook-{event_row_id}"


@queue.job
def process_queued(event_row_id: int) -> str:
    """The worker's side of :func:`receive_later`: apply the stored event. A failure that may
    pass is raised, so that the queue tries again later; the row says ``failed`` meanwhile, so
    ``billing replay-failed`` finds it even if every retry fails."""
    return process(db.session, get_gateway(), event_row_id, reraise=TRANSIENT).value


def _insert_once(dialect: str) -> Any:
    """INSERT the event unless its id is stored already, RETURNING the new row's id."""
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    table = WebhookEvent.__table__
    return (
        insert(table)
        .values(
            stripe_event_id=bindparam("event_id"),
            type=bindparam("event_type"),
            payload=bindparam("payload"),
        )
        .on_conflict_do_nothing(index_elements=[table.c.stripe_event_id])
        .returning(table.c.id)
    )


# Built once: with a queue, storing is all the endpoint does per delivery besides enqueueing,
# and building the statement anew each time cost about as much as running it.
_INSERT_ONCE = {name: _insert_once(name) for name in ("postgresql", "sqlite")}


def _store(session: Session, event: Json) -> int | None:
    """Insert the event; return the id of the row to process, or None if it was dealt with.

    One statement that inserts unless the event id is there already, then the commit: this is
    the part of a delivery the endpoint waits for when a queue does the rest, so it is kept to
    as few round trips to the database as it can be.
    """
    connection = session.connection()
    new_id = connection.execute(
        _INSERT_ONCE[connection.dialect.name],
        {
            "event_id": event["id"],
            "event_type": str(event.get("type"))[:100],
            "payload": json.dumps(event, separators=(",", ":")),
        },
    ).scalar()
    session.commit()
    if new_id is not None:
        return new_id
    existing = session.execute(
        select(WebhookEvent.id, WebhookEvent.status).where(
            WebhookEvent.stripe_event_id == event["id"]
        )
    ).first()
    session.commit()
    if existing is None or existing.status in (EventStatus.PROCESSED, EventStatus.IGNORED):
        return None
    return existing.id  # stored before but failed (or crashed): Stripe is retrying it


def process(
    session: Session,
    gateway: StripeGateway,
    event_row_id: int,
    *,
    reraise: tuple[type[Exception], ...] = (),
) -> Delivery:
    """Apply one stored event in one transaction; on failure keep it with its error (and raise
    the error again if it is one of ``reraise``)."""
    # populate_existing: the row may already be in the session (loaded before the lock was
    # ours); without it the ORM keeps that stale copy and a duplicate is processed again.
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
        if isinstance(exc, reraise):
            raise
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
    """customer.updated: sent, among other changes, when the default card changes. The link is
    confirmed, and the card fetched (one call) unless the event names the one we hold."""
    customer_id = obj.get("id")
    owner = sync.find_owner(session, customer_id, obj) if isinstance(customer_id, str) else None
    if owner is None:
        return False
    if sync.card_may_have_changed(owner.member, obj):
        sync.apply_customer_card(owner.member, gateway.get_customer_with_card(customer_id))
    return True


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

__all__ = [
    "HANDLERS",
    "Delivery",
    "GatewayError",
    "NotAccepted",
    "process",
    "process_queued",
    "receive",
    "receive_later",
    "replay_failed",
]
