"""Billing use cases: joining, giving once, managing a membership, and the catalog.

Each function takes the database session, the acting member and the gateway; it flushes, and
the caller commits once. Stripe is called before our rows are changed where possible, and a
gateway failure raises before anything is flushed, so nothing half-made is ever committed.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, joinedload

from membership.accounts.models import Member
from membership.billing import rules, sync
from membership.billing.gateway import CardError, GatewayError, StripeGateway
from membership.billing.models import (
    JoinAttempt,
    JoinStatus,
    Payment,
    PaymentKind,
    PaymentStatus,
    Price,
    Subscription,
    Tier,
)
from membership.billing.rules import Interval, MembershipState, SubscriptionStatus
from membership.database import utcnow
from membership.memo import remembered

Json = dict[str, Any]


class BillingError(Exception):
    """A request the rules refuse; ``message`` is for the reader, ``field`` for the form."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


def new_token() -> str:
    return secrets.token_urlsafe(24)


# --- the catalog --------------------------------------------------------------------------------


def price_for(
    session: Session, tier: Tier, interval: Interval, currency: str, amount: int
) -> Price:
    """The price row for an amount (one per Stripe plan id), made unlisted if it is new."""
    plan = rules.plan_id(tier.slug, interval, currency, amount)
    price = session.scalar(select(Price).where(Price.stripe_plan_id == plan))
    if price is None:
        price = Price(
            tier=tier,
            interval=interval,
            currency=currency,
            amount=amount,
            stripe_plan_id=plan,
            listed=False,
        )
        session.add(price)
        session.flush()
    return price


def offered_tiers(session: Session) -> list[Tier]:
    """Active tiers with their prices, in one query (the support page, changing plans)."""
    query = (
        select(Tier)
        .where(Tier.active)
        .options(joinedload(Tier.prices))
        .order_by(Tier.position, Tier.id)
    )
    return list(session.scalars(query).unique())


def set_price(
    session: Session, tier: Tier, interval: Interval, currency: str, amount: int
) -> Price:
    """Offer ``amount`` for a tier, interval and currency from now on.

    A price is never edited: the old one is unlisted (existing patrons keep paying it) and a
    new one is listed. ``billing sync-catalog`` then creates it in Stripe and archives the old.
    """
    currency = currency.upper()
    current = tier.listed_price(interval, currency)
    if current is not None and current.amount == amount:
        return current
    if current is not None:
        current.listed = False
        current.retired_at = utcnow()
        session.flush()
    price = price_for(session, tier, interval, currency, amount)
    price.listed = True
    price.retired_at = None
    session.flush()
    return price


@dataclass
class TierFields:
    name: str
    description: str
    position: int
    trial_days: int
    active: bool


SLUG_PATTERN = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")


def save_tier(
    session: Session,
    tier: Tier | None,
    fields: TierFields,
    prices: dict[tuple[Interval, str], int],
    slug: str | None = None,
) -> Tier:
    """Create or update a tier and the prices it offers (staff).

    ``prices`` maps (interval, currency) to an amount in minor units; a combination left out
    stops being offered (patrons who pay it keep paying it).
    """
    if tier is None:
        if not slug or not SLUG_PATTERN.match(slug) or len(slug) > 40:
            raise BillingError(
                "Use lower-case letters, digits and dashes, like co-creator.", "slug"
            )
        if session.scalar(select(Tier.id).where(Tier.slug == slug)) is not None:
            raise BillingError("Another tier already uses that short name.", "slug")
        tier = Tier(slug=slug)
        session.add(tier)
    tier.name = fields.name
    tier.description = fields.description
    tier.position = fields.position
    tier.trial_days = fields.trial_days
    tier.active = fields.active
    session.flush()
    for (interval, currency), amount in prices.items():
        set_price(session, tier, interval, currency, amount)
    for price in list(tier.prices):
        if price.listed and (price.interval, price.currency) not in prices:
            price.listed = False
            price.retired_at = utcnow()
    session.flush()
    return tier


def sync_catalog(session: Session, gateway: StripeGateway) -> list[str]:
    """Create in Stripe every product and plan we have; archive replaced ones. Idempotent."""
    done: list[str] = []
    for tier in session.scalars(select(Tier).order_by(Tier.id)):
        product_id = sync.PRODUCT_PREFIX + tier.slug
        gateway.ensure_product(product_id, tier.name)
        for price in tier.prices:
            if price.synced_at is None:
                gateway.ensure_plan(
                    price.stripe_plan_id,
                    product_id=product_id,
                    amount=price.amount,
                    currency=price.currency,
                    interval=price.interval.value,
                )
                price.synced_at = utcnow()
                done.append(f"created {price.stripe_plan_id}")
            elif price.retired_at is None and price.archived_at is not None:
                gateway.set_plan_active(price.stripe_plan_id, True)  # offered again
                price.archived_at = None
                done.append(f"reactivated {price.stripe_plan_id}")
            elif price.retired_at is not None and price.archived_at is None:
                gateway.set_plan_active(price.stripe_plan_id, False)
                price.archived_at = utcnow()
                done.append(f"archived {price.stripe_plan_id}")
    session.flush()
    return done


# --- membership, as the member sees it -----------------------------------------------------------


def current_subscription(session: Session, member: Member) -> Subscription | None:
    """The member's live subscription, or else their most recent one.

    Asked once per transaction while nothing is written (membership.memo): a page and the
    member's perks (``perks.service.perks_for``) both need it.
    """
    return remembered(
        session,
        ("current_subscription", member.id),
        lambda: session.scalar(
            select(Subscription)
            .where(Subscription.member_id == member.id)
            .options(joinedload(Subscription.price).joinedload(Price.tier))  # pages name the tier
            .order_by(Subscription.live.desc(), Subscription.id.desc())
            .limit(1)
        ),
    )


def membership_state(session: Session, member: Member) -> MembershipState:
    comp = sync.current_comps(session, [member.id]).get(member.id)
    return sync.state_of(
        current_subscription(session, member), comped_until=comp.ends_at if comp else None
    )


def is_patron(session: Session, member: Member) -> bool:
    return rules.is_patron(membership_state(session, member))


def ensure_customer(session: Session, gateway: StripeGateway, member: Member) -> str:
    if member.stripe_customer_id:
        return member.stripe_customer_id
    customer = gateway.create_customer(
        email=member.email, name=member.display_name, member_id=member.id
    )
    member.stripe_customer_id = customer["id"]
    session.flush()
    return customer["id"]


# --- joining --------------------------------------------------------------------------------------


def choose_price(
    session: Session,
    *,
    tier_id: int,
    interval: str,
    currency: str,
    amount_text: str,
    currencies: list[str],
) -> Price:
    """The price a reader picked on the support page: listed, or pay-what-you-want above it."""
    tier = session.get(Tier, tier_id)
    if tier is None or not tier.active:
        raise BillingError("That tier is not offered any more. Please choose another.", "tier")
    try:
        chosen_interval = Interval(interval)
    except ValueError as exc:
        raise BillingError("Choose monthly or yearly.", "interval") from exc
    currency = (currency or "").upper()
    if currency not in currencies:
        raise BillingError("Choose one of the currencies we offer.", "currency")
    listed = tier.listed_price(chosen_interval, currency)
    if listed is None:
        raise BillingError(f"{tier.name} is not offered in {currency} yet.", "currency")
    if not (amount_text or "").strip():
        return listed
    try:
        amount = rules.parse_amount(amount_text, currency)
    except rules.AmountError as exc:
        raise BillingError(str(exc), "amount") from exc
    if amount < listed.amount:
        minimum = rules.format_money(listed.amount, currency)
        raise BillingError(f"The minimum for {tier.name} is {minimum}.", "amount")
    if amount == listed.amount:
        return listed
    return price_for(session, tier, chosen_interval, currency, amount)


def start_join(session: Session, member: Member, price: Price, token: str) -> JoinAttempt:
    """Record the reader's choice under the form's token. The same token gives the same attempt."""
    live = session.scalar(
        select(Subscription).where(Subscription.member_id == member.id, Subscription.live)
    )
    if live is not None and live.status is not SubscriptionStatus.INCOMPLETE:
        raise BillingError("You are already a patron: you can change your tier on My membership.")
    attempt = session.scalar(select(JoinAttempt).where(JoinAttempt.token == token))
    if attempt is not None:
        if attempt.member_id != member.id:
            raise BillingError("This form has expired. Please choose your tier again.")
        return attempt
    attempt = JoinAttempt(token=token, member_id=member.id, price=price)
    session.add(attempt)
    session.flush()
    return attempt


def find_attempt(session: Session, member: Member, token: str) -> JoinAttempt | None:
    attempt = session.scalar(select(JoinAttempt).where(JoinAttempt.token == token))
    return attempt if attempt is not None and attempt.member_id == member.id else None


def card_setup(session: Session, gateway: StripeGateway, member: Member) -> str:
    """A SetupIntent's client secret, for the card form."""
    customer = ensure_customer(session, gateway, member)
    return gateway.create_setup_intent(customer)["client_secret"]


@dataclass
class Outcome:
    """What the card page does next."""

    status: str  # "active", "requires_action", "declined", "pending"
    message: str = ""
    client_secret: str | None = None

    def as_json(self) -> Json:
        return {"status": self.status, "message": self.message, "client_secret": self.client_secret}


def _card_from_setup(
    session: Session, gateway: StripeGateway, member: Member, setup_intent_id: str
) -> str:
    """The payment method of a SetupIntent the member completed, made their default card."""
    customer = ensure_customer(session, gateway, member)
    setup = gateway.get_setup_intent(setup_intent_id)
    if sync.object_id(setup.get("customer")) != customer:
        raise BillingError("That card setup does not belong to you.")
    if setup.get("status") != "succeeded":
        raise BillingError("The card was not confirmed. Please enter it again.")
    method = sync.object_id(setup.get("payment_method"))
    if not method:
        raise BillingError("The card was not confirmed. Please enter it again.")
    # use_card answers with the payment method: the card is stored without another call.
    sync.store_card(member, gateway.use_card(customer, method))
    session.flush()
    return method


def subscribe(
    session: Session, gateway: StripeGateway, attempt: JoinAttempt, setup_intent_id: str
) -> Outcome:
    """Turn a join attempt and a confirmed card into a subscription, exactly once.

    The attempt's row is claimed with a conditional UPDATE: a second request for the same
    attempt (double click, two tabs) waits for the first one's transaction and then finds the
    subscription already there. A declined first payment leaves an incomplete subscription;
    calling again with another card pays its open invoice instead of creating a new one.
    """
    member = session.get(Member, attempt.member_id)
    assert member is not None
    existing = attempt.subscription
    if existing is not None and existing.live:
        if existing.status is SubscriptionStatus.INCOMPLETE:
            _card_from_setup(session, gateway, member, setup_intent_id)
            return _pay_open_invoice(session, gateway, existing)
        return outcome_of(session, gateway, existing)

    claimed = session.execute(
        update(JoinAttempt)
        .where(
            JoinAttempt.id == attempt.id,
            JoinAttempt.status == attempt.status,
            JoinAttempt.subscription_id.is_(None)
            if existing is None
            else JoinAttempt.subscription_id == existing.id,
        )
        .values(status=JoinStatus.SUBSCRIBED)
        .execution_options(synchronize_session=False)
    )
    if claimed.rowcount != 1:  # someone else subscribed this attempt meanwhile
        session.refresh(attempt)
        if attempt.subscription is not None:
            return outcome_of(session, gateway, attempt.subscription)
        return Outcome("pending", "Your payment is being processed.")

    customer = ensure_customer(session, gateway, member)
    _card_from_setup(session, gateway, member, setup_intent_id)
    _end_abandoned_joins(session, gateway, member)
    _ensure_plan(session, gateway, attempt.price)
    tries = session.scalar(
        select(func.count()).select_from(Subscription).where(Subscription.member_id == member.id)
    )
    data = gateway.create_subscription(
        customer_id=customer,
        plan_id=attempt.price.stripe_plan_id,
        member_id=member.id,
        trial_days=attempt.price.tier.trial_days,
        idempotency_key=f"join-{attempt.token}-{tries}",
    )
    subscription = sync.apply_subscription(session, data, reason="joined")
    if subscription is None:
        raise BillingError("We could not start your membership. You have not been charged.")
    attempt.subscription = subscription
    _record_first_invoice(session, data)
    session.flush()
    return _outcome_from(data)


def _end_abandoned_joins(session: Session, gateway: StripeGateway, member: Member) -> None:
    """End the incomplete subscription of an earlier join (first card declined, 3-D Secure
    never finished) before starting another: one live subscription per member, and nobody is
    charged later for a join they gave up."""
    abandoned = session.scalars(
        select(Subscription).where(
            Subscription.member_id == member.id,
            Subscription.live,
            Subscription.status == SubscriptionStatus.INCOMPLETE,
        )
    ).all()
    for subscription in abandoned:
        data = gateway.get_subscription(subscription.stripe_subscription_id)
        if data.get("status") == SubscriptionStatus.INCOMPLETE.value:
            data = gateway.cancel_now(subscription.stripe_subscription_id)
        sync.apply_subscription(session, data, reason="join abandoned for another")
        if subscription.live:  # it was paid after all, in another tab
            raise BillingError(
                "You are already a patron: you can change your tier on My membership."
            )


def _ensure_plan(session: Session, gateway: StripeGateway, price: Price) -> None:
    """A pay-what-you-want price is made when a reader picks it: create its Stripe plan first
    (listed prices are created by ``billing sync-catalog``)."""
    if price.synced_at is not None:
        return
    product_id = sync.PRODUCT_PREFIX + price.tier.slug
    gateway.ensure_product(product_id, price.tier.name)
    gateway.ensure_plan(
        price.stripe_plan_id,
        product_id=product_id,
        amount=price.amount,
        currency=price.currency,
        interval=price.interval.value,
    )
    price.synced_at = utcnow()


def _record_first_invoice(session: Session, data: Json) -> None:
    invoice = data.get("latest_invoice")
    if isinstance(invoice, dict):
        sync.apply_invoice(session, invoice, reason="first payment")


def _pay_open_invoice(
    session: Session, gateway: StripeGateway, subscription: Subscription
) -> Outcome:
    data = gateway.get_subscription(subscription.stripe_subscription_id)
    invoice_id = sync.object_id(data.get("latest_invoice"))
    if invoice_id:
        try:
            invoice = gateway.pay_invoice(invoice_id)
        except CardError as exc:
            return Outcome("declined", exc.message)
        except GatewayError:
            invoice = gateway.get_invoice(invoice_id)
        sync.apply_invoice(session, invoice, reason="paid with another card")
    return outcome_of(session, gateway, subscription)


def outcome_of(session: Session, gateway: StripeGateway, subscription: Subscription) -> Outcome:
    """Fetch the subscription from Stripe, save what it says, and say what the page does next."""
    data = gateway.get_subscription(subscription.stripe_subscription_id)
    sync.apply_subscription(session, data, reason="payment confirmed")
    _record_first_invoice(session, data)
    return _outcome_from(data)


def _outcome_from(data: Json) -> Outcome:
    status = data.get("status")
    if status in ("active", "trialing"):
        return Outcome("active")
    if status in ("canceled", "incomplete_expired"):
        return Outcome(
            "failed", "The payment was not authorised, so nothing was charged. Try again."
        )
    invoice = data.get("latest_invoice")
    intent = invoice.get("payment_intent") if isinstance(invoice, dict) else None
    if isinstance(intent, dict):
        if intent.get("status") == "requires_action":
            return Outcome("requires_action", client_secret=intent.get("client_secret"))
        error = intent.get("last_payment_error") or {}
        if intent.get("status") == "requires_payment_method":
            return Outcome("declined", str(error.get("message") or "Your card was declined."))
    return Outcome("pending", "Your payment is being processed.")


# --- giving once ----------------------------------------------------------------------------------


def start_gift(
    session: Session,
    *,
    member: Member | None,
    email: str | None,
    amount_text: str,
    currency: str,
    currencies: list[str],
    minimum_major: int,
    token: str,
) -> Payment:
    """Record a one-off gift waiting for its card, under the form's token (so it is made once)."""
    existing = session.scalar(select(Payment).where(Payment.idempotency_token == token))
    if existing is not None:
        return existing
    currency = (currency or "").upper()
    if currency not in currencies:
        raise BillingError("Choose one of the currencies we offer.", "currency")
    try:
        amount = rules.parse_amount(amount_text, currency)
    except rules.AmountError as exc:
        raise BillingError(str(exc), "amount") from exc
    minimum = minimum_major * rules.minor_units(currency)
    if amount < minimum:
        raise BillingError(
            f"The smallest gift is {rules.format_money(minimum, currency)}.", "amount"
        )
    if member is None and not email:
        raise BillingError("Enter your email address for the receipt.", "email")
    payment = Payment(
        member_id=member.id if member else None,
        kind=PaymentKind.DONATION,
        status=PaymentStatus.PENDING,
        amount=amount,
        currency=currency,
        email=None if member else email,
        idempotency_token=token,
    )
    session.add(payment)
    session.flush()
    return payment


def gift_card_setup(session: Session, gateway: StripeGateway, payment: Payment) -> str:
    member = session.get(Member, payment.member_id) if payment.member_id else None
    customer = ensure_customer(session, gateway, member) if member else None
    return gateway.create_setup_intent(customer)["client_secret"]


def pay_gift(
    session: Session, gateway: StripeGateway, payment: Payment, setup_intent_id: str
) -> Outcome:
    """Charge a gift once, with the card from a completed SetupIntent."""
    if payment.status is PaymentStatus.SUCCEEDED:
        return Outcome("active")
    if payment.stripe_payment_intent_id:
        intent = gateway.get_payment_intent(payment.stripe_payment_intent_id)
        if intent.get("status") not in ("requires_payment_method", "canceled"):
            sync.apply_payment_intent(session, intent)
            return _gift_outcome(intent)
    setup = gateway.get_setup_intent(setup_intent_id)
    method = sync.object_id(setup.get("payment_method"))
    member = session.get(Member, payment.member_id) if payment.member_id else None
    customer = member.stripe_customer_id if member else None
    if (
        setup.get("status") != "succeeded"
        or not method
        or sync.object_id(setup.get("customer")) != customer
    ):
        raise BillingError("The card was not confirmed. Please enter it again.")
    # Claim the gift: a concurrent request for it waits on this row, then finds it taken.
    claimed = session.execute(
        update(Payment)
        .where(
            Payment.id == payment.id,
            Payment.stripe_payment_intent_id.is_not_distinct_from(payment.stripe_payment_intent_id),
        )
        .values(failure_message=None)
        .execution_options(synchronize_session=False)
    )
    if claimed.rowcount != 1:
        session.refresh(payment)
        return Outcome("pending", "Your payment is being processed.")
    try:
        intent = gateway.create_payment(
            amount=payment.amount,
            currency=payment.currency,
            payment_method_id=method,
            customer_id=customer,
            metadata={"kind": "gift", "payment_id": str(payment.id)},
            idempotency_key=f"gift-{payment.idempotency_token}-{method}",
        )
    except CardError as exc:
        payment.failure_message = exc.message
        return Outcome("declined", exc.message)
    payment.stripe_payment_intent_id = intent["id"]
    session.flush()
    sync.apply_payment_intent(session, intent)
    return _gift_outcome(intent)


def confirm_gift(session: Session, gateway: StripeGateway, payment: Payment) -> Outcome:
    """After 3-D Secure in the browser: fetch the PaymentIntent and record what happened."""
    if not payment.stripe_payment_intent_id:
        return Outcome("declined", "Please enter your card.")
    intent = gateway.get_payment_intent(payment.stripe_payment_intent_id)
    sync.apply_payment_intent(session, intent)
    return _gift_outcome(intent)


def _gift_outcome(intent: Json) -> Outcome:
    status = intent.get("status")
    if status == "succeeded":
        return Outcome("active")
    if status == "requires_action":
        return Outcome("requires_action", client_secret=intent.get("client_secret"))
    if status in ("requires_payment_method", "canceled"):
        error = intent.get("last_payment_error") or {}
        return Outcome("declined", str(error.get("message") or "The payment was not authorised."))
    return Outcome("pending", "Your payment is being processed.")


# --- managing a membership ------------------------------------------------------------------------


def _live(session: Session, member: Member) -> Subscription:
    subscription = current_subscription(session, member)
    if subscription is None or not subscription.live:
        raise BillingError("You have no membership to change.")
    return subscription


def change_price(
    session: Session, gateway: StripeGateway, member: Member, price: Price
) -> Subscription:
    """Move to another tier or interval now, with Stripe's default proration."""
    subscription = _live(session, member)
    if subscription.price_id == price.id:
        raise BillingError("That is already your membership.")
    if price.currency != subscription.price.currency:
        raise BillingError("A membership keeps its currency. Cancel and join again to change it.")
    current = gateway.get_subscription(subscription.stripe_subscription_id)
    data = gateway.change_plan(current, price.stripe_plan_id)
    return _applied(session, data, f"changed to {price.tier.name} {price.interval.value}ly")


def cancel(session: Session, gateway: StripeGateway, member: Member, reason: str) -> Subscription:
    """Cancel at the end of the paid period (the patron keeps their perks until then)."""
    subscription = _live(session, member)
    subscription.cancel_reason = reason.strip()[:500] or None
    data = gateway.set_cancel_at_period_end(subscription.stripe_subscription_id, True)
    return _applied(session, data, "canceled by the member")


def undo_cancel(session: Session, gateway: StripeGateway, member: Member) -> Subscription:
    subscription = _live(session, member)
    data = gateway.set_cancel_at_period_end(subscription.stripe_subscription_id, False)
    subscription.cancel_reason = None
    return _applied(session, data, "cancellation undone")


def pause(session: Session, gateway: StripeGateway, member: Member, months: int) -> Subscription:
    """Stop payments for one to three months; the membership resumes by itself."""
    subscription = _live(session, member)
    resumes = rules.pause_resumes_at(utcnow(), months)
    data = gateway.pause(subscription.stripe_subscription_id, int(resumes.timestamp()))
    return _applied(session, data, f"paused for {months} month{'s' if months > 1 else ''}")


def resume(session: Session, gateway: StripeGateway, member: Member) -> Subscription:
    subscription = _live(session, member)
    data = gateway.resume(subscription.stripe_subscription_id)
    return _applied(session, data, "resumed by the member")


def update_card(
    session: Session, gateway: StripeGateway, member: Member, setup_intent_id: str
) -> Outcome:
    """Make a newly confirmed card the default, and pay an overdue invoice with it."""
    _card_from_setup(session, gateway, member, setup_intent_id)
    subscription = current_subscription(session, member)
    if subscription is not None and subscription.status in (
        SubscriptionStatus.PAST_DUE,
        SubscriptionStatus.UNPAID,
        SubscriptionStatus.INCOMPLETE,
    ):
        return _pay_open_invoice(session, gateway, subscription)
    return Outcome("active")


def _applied(session: Session, data: Json, reason: str) -> Subscription:
    subscription = sync.apply_subscription(session, data, reason=reason)
    if subscription is None:
        raise BillingError("Stripe did not recognise this membership.")
    return subscription


def payment_history(session: Session, member: Member) -> list[Payment]:
    return list(
        session.scalars(
            select(Payment)
            .where(Payment.member_id == member.id, Payment.status != PaymentStatus.PENDING)
            .order_by(Payment.created_at.desc(), Payment.id.desc())
            .limit(100)
        )
    )


CARD_BRANDS = {
    "amex": "American Express",
    "cartes_bancaires": "Cartes Bancaires",
    "diners": "Diners Club",
    "jcb": "JCB",
    "unionpay": "UnionPay",
    "unknown": "Card",
}


def describe_card(member: Member) -> str | None:
    """ "Visa ending 4242, expires 12/2030" from the stored card; None if there is none."""
    if not member.card_last4:
        return None
    brand = member.card_brand or "unknown"
    text = f"{CARD_BRANDS.get(brand, brand.replace('_', ' ').title())} ending {member.card_last4}"
    if member.card_exp_month and member.card_exp_year:
        text += f", expires {member.card_exp_month:02d}/{member.card_exp_year}"
    return text


def card_summary(session: Session, gateway: StripeGateway, member: Member) -> str | None:
    """The member's default card, as stored (see :func:`sync.store_card`); None if none.

    Stripe is asked (once, then it is stored) only when nothing was ever stored for a member
    who has a Stripe customer: accounts from before cards were kept, or a card that a webhook
    found changed without saying to what. Raises GatewayError if Stripe cannot be reached then.
    """
    if member.card_synced_at is None and member.stripe_customer_id:
        customer = gateway.get_customer_with_card(member.stripe_customer_id)
        sync.apply_customer_card(member, customer)
        if member.card_synced_at is None:  # a deleted customer: no card, and no asking again
            sync.store_card(member, None)
        session.flush()
    return describe_card(member)


# --- my data --------------------------------------------------------------------------------------


def stop_billing(session: Session, gateway: StripeGateway, member: Member) -> None:
    """Before an account is deleted: end any live subscription now, so no charge follows."""
    for subscription in session.scalars(
        select(Subscription).where(Subscription.member_id == member.id, Subscription.live)
    ):
        data = gateway.cancel_now(subscription.stripe_subscription_id)
        sync.apply_subscription(session, data, reason="account deleted")
    # Gifts made before the account existed carry the address for their receipts.
    for gift in session.scalars(select(Payment).where(Payment.email == member.email)):
        gift.email = None


def export_data(session: Session, member: Member) -> dict[str, Any]:
    """The member's subscriptions and payments, for "download my data"."""
    subscriptions = session.scalars(
        select(Subscription).where(Subscription.member_id == member.id).order_by(Subscription.id)
    ).all()
    payments = session.scalars(
        select(Payment).where(Payment.member_id == member.id).order_by(Payment.id)
    ).all()
    return {
        "stripe_customer_id": member.stripe_customer_id,
        "subscriptions": [
            {
                "tier": s.price.tier.name,
                "amount": s.price.amount,
                "currency": s.price.currency,
                "interval": s.price.interval.value,
                "status": s.status.value,
                "started_at": s.started_at.isoformat(),
                "ended_at": s.ended_at.isoformat() if s.ended_at else None,
                "cancel_reason": s.cancel_reason,
            }
            for s in subscriptions
        ],
        "payments": [
            {
                "kind": p.kind.value,
                "status": p.status.value,
                "amount": p.amount,
                "currency": p.currency,
                "amount_refunded": p.amount_refunded,
                "paid_at": p.paid_at.isoformat() if p.paid_at else None,
            }
            for p in payments
        ],
    }
