"""Bring our tables in line with what Stripe says.

Every function here takes Stripe's current JSON for an object (fetched by the caller, or returned
by one of our own API calls) and makes the database agree with it. Applying the same object twice
changes nothing, and applying an older object after a newer one cannot happen because callers
always fetch the current state first: that is what makes webhook order irrelevant.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from flask import current_app
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from membership.accounts.models import Member
from membership.accounts.rules import InvalidEmail, normalise_email
from membership.billing import rules
from membership.billing.models import (
    MembershipEvent,
    Payment,
    PaymentKind,
    PaymentStatus,
    Price,
    Refund,
    Subscription,
    Tier,
)
from membership.billing.rules import Interval, MembershipState, SubscriptionStatus
from membership.database import utcnow
from membership.emails import queue_email
from membership.staff.models import Comp

log = logging.getLogger(__name__)
Json = dict[str, Any]

PRODUCT_PREFIX = "membership-tier-"


# --- reading Stripe's JSON, whatever the API version ---------------------------------------------


def _ts(value: Any) -> datetime | None:
    return datetime.fromtimestamp(int(value), tz=UTC) if isinstance(value, int | float) else None


def object_id(value: Any) -> str | None:
    """An expandable field: either the id itself or the embedded object."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and isinstance(value.get("id"), str):
        return value["id"]
    return None


def first_item(subscription: Json) -> Json:
    items = (subscription.get("items") or {}).get("data") or []
    return items[0] if items else {}


def subscription_plan_id(subscription: Json) -> str | None:
    item = first_item(subscription)
    return (
        object_id(item.get("plan"))
        or object_id(item.get("price"))
        or object_id(subscription.get("plan"))
    )


def subscription_period_end(subscription: Json) -> datetime | None:
    """``current_period_end`` on the subscription (API before 2025-03-31) or on its items."""
    return _ts(subscription.get("current_period_end")) or _ts(
        first_item(subscription).get("current_period_end")
    )


def invoice_subscription_id(invoice: Json) -> str | None:
    """``invoice.subscription`` (older API versions) or its home in ``invoice.parent``."""
    direct = object_id(invoice.get("subscription"))
    if direct:
        return direct
    parent = invoice.get("parent") or {}
    details = parent.get("subscription_details") or {}
    return object_id(details.get("subscription"))


def invoice_payment_intent_id(invoice: Json) -> str | None:
    direct = object_id(invoice.get("payment_intent"))
    if direct:
        return direct
    payments = ((invoice.get("payments") or {}).get("data")) or []
    for entry in payments:
        found = object_id((entry.get("payment") or {}).get("payment_intent"))
        if found:
            return found
    return None


def _charge_id(obj: Json) -> str | None:
    return object_id(obj.get("latest_charge")) or object_id(obj.get("charge"))


def _member_id_from_metadata(obj: Json) -> int | None:
    raw = (obj.get("metadata") or {}).get("member_id")
    return int(raw) if isinstance(raw, str) and raw.isdigit() else None


def _facts(subscription: Subscription) -> rules.SubscriptionFacts:
    return rules.SubscriptionFacts(
        status=subscription.status,
        cancel_at_period_end=subscription.cancel_at_period_end,
        current_period_end=subscription.current_period_end,
        paused_until=subscription.paused_until,
        pause_requested=subscription.pause_requested,
        past_due_since=subscription.past_due_since,
    )


def grace_period() -> timedelta:
    return timedelta(days=current_app.config["GRACE_PERIOD_DAYS"])


def state_of(
    subscription: Subscription | None,
    now: datetime | None = None,
    comped_until: datetime | None = None,
) -> MembershipState:
    """The member's state right now (time matters: grace periods and period ends pass).

    ``comped_until`` is the end of a current staff comp (see :func:`current_comps`): it makes a
    member without a paid membership "comped"; a paid membership still wins.
    """
    facts = _facts(subscription) if subscription is not None else None
    return rules.membership_state(facts, now or utcnow(), grace_period(), comped_until)


def current_comps(
    session: Session, member_ids: list[int], now: datetime | None = None
) -> dict[int, Comp]:
    """Each member's current comp (started, not yet over, not ended early): the latest ending."""
    if not member_ids:
        return {}
    now = now or utcnow()
    comps = session.scalars(
        select(Comp)
        .where(
            Comp.member_id.in_(member_ids),
            Comp.starts_at <= now,
            Comp.ends_at > now,
            Comp.ended_early_at.is_(None),
        )
        .order_by(Comp.member_id, Comp.ends_at.desc(), Comp.id.desc())
    )
    found: dict[int, Comp] = {}
    for comp in comps:
        found.setdefault(comp.member_id, comp)
    return found


# --- finding what an object belongs to ----------------------------------------------------------


def find_price(session: Session, plan_id: str | None) -> Price | None:
    if not plan_id:
        return None
    return session.scalar(select(Price).where(Price.stripe_plan_id == plan_id))


def price_for_plan(session: Session, plan: Json) -> Price | None:
    """Our price for a Stripe plan, adding it (unlisted) if it belongs to one of our tiers."""
    price = find_price(session, object_id(plan))
    if price is not None:
        return price
    product = object_id(plan.get("product")) or ""
    if not product.startswith(PRODUCT_PREFIX):
        return None
    tier = session.scalar(select(Tier).where(Tier.slug == product.removeprefix(PRODUCT_PREFIX)))
    amount, currency = plan.get("amount"), plan.get("currency")
    interval = plan.get("interval")
    if tier is None or not isinstance(amount, int) or amount <= 0 or not isinstance(currency, str):
        return None
    if interval not in (Interval.MONTH.value, Interval.YEAR.value):
        return None
    price = Price(
        tier=tier,
        interval=Interval(interval),
        currency=currency.upper(),
        amount=amount,
        stripe_plan_id=object_id(plan) or "",
        listed=False,
        synced_at=utcnow(),
    )
    session.add(price)
    session.flush()
    return price


@dataclass
class Owner:
    member: Member
    created: bool = False


def find_owner(session: Session, customer: Json | str | None, obj: Json) -> Owner | None:
    """The member a Stripe object belongs to: by our metadata, by customer id, or by email.

    A subscription made outside the app (in the Stripe Dashboard, say) is linked to the member
    whose email matches the customer's, or to a new member who is invited to set a password.
    An existing account is never linked by email when it already has another Stripe customer.
    """
    customer_id = object_id(customer)
    member_id = _member_id_from_metadata(obj)
    if member_id is not None:
        member = session.get(Member, member_id)
        if member is not None and member.deleted_at is None:
            if customer_id and member.stripe_customer_id in (None, customer_id):
                member.stripe_customer_id = customer_id
                return Owner(member)
            if not customer_id:
                return Owner(member)
    if customer_id:
        member = session.scalar(select(Member).where(Member.stripe_customer_id == customer_id))
        if member is not None:
            return Owner(member)
    if not isinstance(customer, dict) or not customer_id or customer.get("deleted"):
        return None
    try:
        email = normalise_email(customer.get("email") or "")
    except InvalidEmail:
        return None
    member = session.scalar(
        select(Member).where(Member.email == email, Member.deleted_at.is_(None))
    )
    if member is not None:
        if member.stripe_customer_id not in (None, customer_id):
            log.warning(
                "customer %s matches member %s, who has another customer", customer_id, member.id
            )
            return None
        member.stripe_customer_id = customer_id
        return Owner(member)
    name = (customer.get("name") or "").strip()[:80] or email.split("@")[0]
    member = Member(email=email, display_name=name, stripe_customer_id=customer_id)
    session.add(member)
    session.flush()
    return Owner(member, created=True)


# --- subscriptions --------------------------------------------------------------------------------


def apply_subscription(
    session: Session, data: Json, *, reason: str, customer: Json | None = None
) -> Subscription | None:
    """Make our copy of a subscription match Stripe's ``data``. None if it is not ours."""
    stripe_id = data.get("id")
    if not isinstance(stripe_id, str):
        return None
    # Locked and re-read: two events about one subscription processed at once would otherwise
    # both see the old state and both record the same change (PostgreSQL; SQLite serialises).
    subscription = session.scalar(
        select(Subscription)
        .where(Subscription.stripe_subscription_id == stripe_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    plan = first_item(data).get("plan") or first_item(data).get("price") or data.get("plan") or {}
    price = price_for_plan(session, plan) if isinstance(plan, dict) else find_price(session, plan)
    try:
        status = SubscriptionStatus(data.get("status"))
    except ValueError:
        log.warning("subscription %s has an unknown status", stripe_id)
        return subscription
    invited = None
    if subscription is None:
        if price is None:
            return None  # not one of our plans: never link or create a member for it
        owner = find_owner(session, customer or data.get("customer"), data)
        if owner is None:
            return None
        if owner.created:
            invited = owner.member
        subscription = Subscription(
            member=owner.member,
            price=price,
            stripe_subscription_id=stripe_id,
            status=status,
            state=MembershipState.NONE,
            started_at=_ts(data.get("start_date")) or _ts(data.get("created")) or utcnow(),
        )
        session.add(subscription)
    old_price = subscription.price
    old_state = subscription.state
    if price is not None:
        subscription.price = price
    _copy_subscription_fields(subscription, data, status)
    expanded_customer = customer if isinstance(customer, dict) else data.get("customer")
    if isinstance(expanded_customer, dict):
        apply_customer_card(subscription.member, expanded_customer)
    session.flush()
    record_state_change(session, subscription, old_state, old_price, reason)
    if invited is not None:
        _invite(session, invited)
    return subscription


def _copy_subscription_fields(
    subscription: Subscription, data: Json, status: SubscriptionStatus
) -> None:
    now = utcnow()
    if status in (SubscriptionStatus.PAST_DUE, SubscriptionStatus.UNPAID):
        if subscription.past_due_since is None:
            subscription.past_due_since = now
    else:
        subscription.past_due_since = None
    subscription.status = status
    subscription.live = rules.is_live(status)
    subscription.current_period_end = subscription_period_end(data)
    subscription.cancel_at_period_end = bool(data.get("cancel_at_period_end"))
    pause = data.get("pause_collection")
    subscription.pause_requested = isinstance(pause, dict)
    subscription.paused_until = _ts(pause.get("resumes_at")) if isinstance(pause, dict) else None
    if not subscription.live:
        subscription.ended_at = (
            _ts(data.get("ended_at"))
            or _ts(data.get("canceled_at"))
            or subscription.ended_at
            or now
        )
    subscription.synced_at = now


def record_state_change(
    session: Session,
    subscription: Subscription,
    old_state: MembershipState,
    old_price: Price | None,
    reason: str,
) -> MembershipEvent | None:
    """Store the new state and, if it or the price changed, a membership event with MRR delta."""
    new_state = state_of(subscription)
    subscription.state = new_state
    new_price = subscription.price
    before = _mrr(old_state, old_price)
    after = _mrr(new_state, new_price)
    if new_state == old_state and (old_price is None or old_price.id == new_price.id):
        return None
    currency = new_price.currency
    delta = after - before if (old_price is None or old_price.currency == currency) else after
    event = MembershipEvent(
        member_id=subscription.member_id,
        subscription_id=subscription.id,
        from_state=old_state,
        to_state=new_state,
        reason=reason[:200],
        mrr_delta=delta,
        currency=currency,
    )
    session.add(event)
    return event


def _mrr(state: MembershipState, price: Price | None) -> int:
    if price is None or not rules.is_patron(state) or state is MembershipState.COMPED:
        return 0
    return rules.mrr_minor(price.amount, price.interval)


def _invite(session: Session, member: Member) -> None:
    """A member created for a subscription made outside the app: ask them to set a password."""
    from membership.accounts.service import password_setup_link

    queue_email(
        session,
        to=member.email,
        member_id=member.id,
        template="invitation",
        subject="Welcome: set a password for your membership",
        member=member,
        setup_url=password_setup_link(member),
    )


# --- invoices and payments ----------------------------------------------------------------------


def apply_invoice(session: Session, invoice: Json, *, reason: str) -> Payment | None:
    """Record a subscription invoice's payment or failure in the ledger (once per invoice)."""
    invoice_id = invoice.get("id")
    if not isinstance(invoice_id, str):
        return None
    status = invoice.get("status")
    amount = invoice.get("amount_paid") or invoice.get("amount_due") or invoice.get("total")
    currency = invoice.get("currency")
    if not isinstance(amount, int) or amount <= 0 or not isinstance(currency, str):
        return None  # nothing to pay (a trial's first invoice, say)
    subscription_id = invoice_subscription_id(invoice)
    subscription = (
        session.scalar(
            select(Subscription).where(Subscription.stripe_subscription_id == subscription_id)
        )
        if subscription_id
        else None
    )
    if subscription is None:
        expanded = invoice.get("subscription")
        if isinstance(expanded, dict):
            subscription = apply_subscription(
                session, expanded, reason=reason, customer=invoice.get("customer")
            )
    if subscription is None:
        return None
    if isinstance(invoice.get("customer"), dict):
        apply_customer_card(subscription.member, invoice["customer"])
    payment = session.scalar(select(Payment).where(Payment.stripe_invoice_id == invoice_id))
    created = payment is None
    if payment is None:
        payment = Payment(
            member_id=subscription.member_id,
            subscription_id=subscription.id,
            kind=PaymentKind.SUBSCRIPTION,
            status=PaymentStatus.PENDING,
            amount=amount,
            currency=currency.upper(),
            stripe_invoice_id=invoice_id,
        )
        session.add(payment)
    intent = invoice.get("payment_intent")
    payment.stripe_payment_intent_id = (
        invoice_payment_intent_id(invoice) or payment.stripe_payment_intent_id
    )
    if isinstance(intent, dict):
        payment.stripe_charge_id = _charge_id(intent) or payment.stripe_charge_id
    payment.stripe_charge_id = object_id(invoice.get("charge")) or payment.stripe_charge_id
    was = payment.status
    if status == "paid" or invoice.get("paid") is True:
        payment.status = PaymentStatus.SUCCEEDED
        payment.amount = invoice.get("amount_paid") or payment.amount
        transitions = invoice.get("status_transitions") or {}
        payment.paid_at = _ts(transitions.get("paid_at")) or payment.paid_at or utcnow()
        payment.failure_message = None
    elif payment.status is not PaymentStatus.SUCCEEDED and _has_failed(invoice):
        payment.status = PaymentStatus.FAILED
        payment.failure_message = _failure_message(invoice)
    session.flush()
    _dunning_emails(session, subscription, payment, was, created)
    return payment


def _has_failed(invoice: Json) -> bool:
    intent = invoice.get("payment_intent")
    if isinstance(intent, dict) and intent.get("status") in ("requires_payment_method", "canceled"):
        return bool(intent.get("last_payment_error")) or invoice.get("attempted") is True
    return invoice.get("attempted") is True and invoice.get("status") == "open"


def _failure_message(invoice: Json) -> str:
    intent = invoice.get("payment_intent")
    if isinstance(intent, dict):
        error = intent.get("last_payment_error") or {}
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])[:500]
    return "The payment was declined."


def _dunning_emails(
    session: Session,
    subscription: Subscription,
    payment: Payment,
    was: PaymentStatus,
    created: bool,
) -> None:
    """Tell the patron when a renewal fails, and thank them when it is paid after all."""
    member = subscription.member
    if member.deleted_at is not None:
        return
    base = current_app.config["BASE_URL"]
    is_renewal = session.scalar(
        select(Payment.id)
        .where(
            Payment.subscription_id == subscription.id,
            Payment.id != payment.id,
            Payment.status == PaymentStatus.SUCCEEDED,
        )
        .limit(1)
    )
    if payment.status is PaymentStatus.FAILED and was is not PaymentStatus.FAILED and is_renewal:
        queue_email(
            session,
            to=member.email,
            member_id=member.id,
            template="payment_failed",
            subject="Your membership payment did not go through",
            member=member,
            amount=rules.format_money(payment.amount, payment.currency),
            reason=payment.failure_message,
            fix_url=f"{base}/membership/card",
            grace_days=current_app.config["GRACE_PERIOD_DAYS"],
        )
    elif payment.status is PaymentStatus.SUCCEEDED and was is PaymentStatus.FAILED and is_renewal:
        # Only a renewal that failed is "back in order"; a first payment that needed a second
        # card is just a new membership.
        queue_email(
            session,
            to=member.email,
            member_id=member.id,
            template="payment_recovered",
            subject="Thank you: your membership is back in order",
            member=member,
            amount=rules.format_money(payment.amount, payment.currency),
        )


def apply_payment_intent(session: Session, intent: Json) -> Payment | None:
    """Update a one-off gift from its PaymentIntent. Subscription payments go by invoice."""
    intent_id = intent.get("id")
    if not isinstance(intent_id, str):
        return None
    payment = session.scalar(select(Payment).where(Payment.stripe_payment_intent_id == intent_id))
    if payment is None or payment.kind is not PaymentKind.DONATION:
        return None
    status = intent.get("status")
    if status == "succeeded":
        if payment.status is not PaymentStatus.SUCCEEDED:
            payment.status = PaymentStatus.SUCCEEDED
            payment.paid_at = utcnow()
            payment.failure_message = None
        payment.stripe_charge_id = _charge_id(intent) or payment.stripe_charge_id
        _charges = ((intent.get("charges") or {}).get("data")) or []
        if not payment.stripe_charge_id and _charges:
            payment.stripe_charge_id = object_id(_charges[0])
    elif (
        status in ("requires_payment_method", "canceled")
        and payment.status is PaymentStatus.PENDING
    ):
        error = intent.get("last_payment_error") or {}
        if error or status == "canceled":
            payment.status = PaymentStatus.FAILED
            payment.failure_message = str(
                error.get("message") or "The payment did not go through."
            )[:500]
    session.flush()
    send_receipt(session, payment)
    return payment


def send_receipt(session: Session, payment: Payment) -> None:
    """Email the receipt for a gift, once."""
    if payment.status is not PaymentStatus.SUCCEEDED or payment.receipt_sent:
        return
    member = session.get(Member, payment.member_id) if payment.member_id else None
    address = member.email if member is not None else payment.email
    if not address:
        return
    payment.receipt_sent = True
    queue_email(
        session,
        to=address,
        member_id=payment.member_id,
        template="gift_receipt",
        subject="Thank you for your gift: your receipt",
        name=member.display_name if member else None,
        amount=rules.format_money(payment.amount, payment.currency),
        paid_at=payment.paid_at,
        reference=payment.stripe_payment_intent_id,
    )


def apply_charge_refunds(session: Session, charge: Json) -> Payment | None:
    """Record the refunds on a charge (for ``charge.refunded``)."""
    charge_id = charge.get("id")
    intent_id = object_id(charge.get("payment_intent"))
    payment = None
    if isinstance(charge_id, str):
        payment = session.scalar(select(Payment).where(Payment.stripe_charge_id == charge_id))
    if payment is None and intent_id:
        payment = session.scalar(
            select(Payment).where(Payment.stripe_payment_intent_id == intent_id)
        )
    if payment is None:
        return None
    refunds = ((charge.get("refunds") or {}).get("data")) or []
    for data in refunds:
        record_refund(session, payment, data)
    total = charge.get("amount_refunded")
    if isinstance(total, int) and 0 <= total <= payment.amount:
        payment.amount_refunded = max(payment.amount_refunded, total)
    session.flush()
    return payment


def record_refund(session: Session, payment: Payment, data: Json) -> Refund | None:
    refund_id, amount = data.get("id"), data.get("amount")
    if not isinstance(refund_id, str) or not isinstance(amount, int) or amount <= 0:
        return None
    if data.get("status") not in (None, "succeeded", "pending"):
        return None
    existing = session.scalar(select(Refund).where(Refund.stripe_refund_id == refund_id))
    if existing is not None:
        return existing
    refund = Refund(
        payment_id=payment.id,
        amount=amount,
        currency=payment.currency,
        stripe_refund_id=refund_id,
        created_at=_ts(data.get("created")) or utcnow(),
    )
    session.add(refund)
    session.flush()
    refunded = session.scalar(
        select(func.coalesce(func.sum(Refund.amount), 0)).where(Refund.payment_id == payment.id)
    )
    payment.amount_refunded = min(payment.amount, int(refunded or 0))
    session.flush()
    return refund


# --- the customer's default card ----------------------------------------------------------------


def _int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def store_card(member: Member, method: Json | None) -> bool:
    """Store a PaymentMethod (None: the customer has no default one) as the member's card.

    True if what we hold changed. A payment method that is not a card is stored by its id only,
    and the pages then show no card. Nothing is kept for a deleted account (reconcile still
    walks its ended subscriptions).
    """
    if member.deleted_at is not None:
        return False
    card = method.get("card") if method else None
    card = card if isinstance(card, dict) else {}
    brand, last4 = card.get("brand"), card.get("last4")
    values = (
        object_id(method),
        str(brand)[:30] if brand else None,
        str(last4) if isinstance(last4, str) and len(last4) == 4 else None,
        _int_or_none(card.get("exp_month")),
        _int_or_none(card.get("exp_year")),
    )
    changed = member.card_synced_at is None or values != card_facts(member)
    (
        member.stripe_payment_method_id,
        member.card_brand,
        member.card_last4,
        member.card_exp_month,
        member.card_exp_year,
    ) = values
    member.card_synced_at = utcnow()
    return changed


def card_facts(member: Member) -> tuple[Any, ...]:
    """What we hold about the member's card (to tell whether something changed)."""
    return (
        member.stripe_payment_method_id,
        member.card_brand,
        member.card_last4,
        member.card_exp_month,
        member.card_exp_year,
    )


def _default_method(customer: Json) -> tuple[bool, Any]:
    """(whether the customer object says, the default payment method: id, object or None)."""
    settings = customer.get("invoice_settings")
    if not isinstance(settings, dict) or "default_payment_method" not in settings:
        return False, None
    return True, settings["default_payment_method"]


def apply_customer_card(member: Member, customer: Json) -> bool:
    """Bring the member's stored card in line with a customer object Stripe returned.

    A default payment method that is expanded (or none at all) says everything and is stored.
    Only its id: the stored card stands if it is the same one; if not, the stored card is
    forgotten rather than fetched here (callers make one Stripe call per event at most), so the
    next page view fetches it once and ``billing reconcile`` repairs it. True if anything changed.
    """
    if member.deleted_at is not None:
        return False
    if customer.get("deleted") or object_id(customer) != member.stripe_customer_id:
        return False
    says, method = _default_method(customer)
    if not says:
        return False
    if method is None or isinstance(method, dict):
        return store_card(member, method)
    if method == member.stripe_payment_method_id and member.card_synced_at is not None:
        return False
    known = member.card_synced_at is not None
    member.forget_card()
    return known


def card_may_have_changed(member: Member, customer: Json) -> bool:
    """Whether a customer object (an event's payload, as it was when sent) may name another
    default card than the one we hold: if it names ours, a later change comes with its own
    event, so there is nothing to fetch."""
    if member.deleted_at is not None:
        return False  # nothing is kept for a deleted account
    if member.card_synced_at is None:
        return True
    says, method = _default_method(customer)
    return not says or object_id(method) != member.stripe_payment_method_id


def forget_customer(session: Session, customer_id: str) -> Member | None:
    """``customer.deleted``: unlink the member; their subscriptions end with their own events."""
    member = session.scalar(select(Member).where(Member.stripe_customer_id == customer_id))
    if member is not None:
        member.stripe_customer_id = None
    return member
