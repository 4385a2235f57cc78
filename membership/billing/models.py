"""Tiers and prices, subscriptions, the payments ledger, and the Stripe events we received."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import (
    CheckConstraint,
    ForeignKey,
    Index,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from membership.accounts.models import Member, enum_column
from membership.billing.rules import Interval, MembershipState, SubscriptionStatus
from membership.database import utcnow
from membership.extensions import db

CURRENCY_CHECK = "length(currency) = 3 AND currency = upper(currency)"


class Tier(db.Model):
    """A level of support (Reader, Insider, Co-creator), defined by staff."""

    __tablename__ = "tiers"
    __table_args__ = (CheckConstraint("trial_days >= 0 AND trial_days <= 90", name="trial_days"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    slug: Mapped[str] = mapped_column(String(40), unique=True)
    name: Mapped[str] = mapped_column(String(80))
    description: Mapped[str] = mapped_column(Text, default="")
    position: Mapped[int] = mapped_column(default=0)
    active: Mapped[bool] = mapped_column(default=True)
    trial_days: Mapped[int] = mapped_column(default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    prices: Mapped[list[Price]] = relationship(back_populates="tier", order_by="Price.id")

    def listed_price(self, interval: Interval, currency: str) -> Price | None:
        for price in self.prices:
            if price.listed and price.interval is interval and price.currency == currency:
                return price
        return None

    def yearly_saving(self, currency: str) -> int | None:
        """How much less a year costs than twelve months, in minor units; None if nothing."""
        monthly = self.listed_price(Interval.MONTH, currency)
        yearly = self.listed_price(Interval.YEAR, currency)
        if monthly is None or yearly is None or monthly.amount * 12 <= yearly.amount:
            return None
        return monthly.amount * 12 - yearly.amount


class Price(db.Model):
    """An amount per interval in one currency, mirrored by a Stripe Plan with the same id.

    ``listed`` prices are the ones the support page offers (one per tier, interval and currency).
    Unlisted ones are old prices that existing patrons keep, and pay-what-you-want amounts.
    """

    __tablename__ = "prices"
    __table_args__ = (
        CheckConstraint("amount > 0", name="amount_positive"),
        CheckConstraint(CURRENCY_CHECK, name="currency_code"),
        Index(
            "uq_prices_listed",
            "tier_id",
            "interval",
            "currency",
            unique=True,
            sqlite_where=text("listed"),
            postgresql_where=text("listed"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    tier_id: Mapped[int] = mapped_column(ForeignKey("tiers.id", ondelete="RESTRICT"))
    interval: Mapped[Interval] = mapped_column(enum_column(Interval, "price_interval"))
    currency: Mapped[str] = mapped_column(String(3))
    amount: Mapped[int]
    stripe_plan_id: Mapped[str] = mapped_column(String(120), unique=True)
    listed: Mapped[bool] = mapped_column(default=True)
    synced_at: Mapped[datetime | None]
    # When staff stopped offering it (a new amount, or the combination removed). Pay-what-you-want
    # prices are never listed and never retired: readers may pick the same amount again.
    retired_at: Mapped[datetime | None]
    archived_at: Mapped[datetime | None]  # when sync-catalog archived a retired price in Stripe
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    tier: Mapped[Tier] = relationship(back_populates="prices")


class Subscription(db.Model):
    """Our copy of a Stripe subscription. Stripe is the truth; this row follows it."""

    __tablename__ = "subscriptions"
    __table_args__ = (
        # One live subscription per member, enforced by the database.
        Index(
            "uq_subscriptions_live_member",
            "member_id",
            unique=True,
            sqlite_where=text("live"),
            postgresql_where=text("live"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id", ondelete="RESTRICT"))
    price_id: Mapped[int] = mapped_column(ForeignKey("prices.id", ondelete="RESTRICT"))
    stripe_subscription_id: Mapped[str] = mapped_column(String(255), unique=True)
    status: Mapped[SubscriptionStatus] = mapped_column(
        enum_column(SubscriptionStatus, "subscription_status")
    )
    live: Mapped[bool] = mapped_column(default=True)
    state: Mapped[MembershipState] = mapped_column(
        enum_column(MembershipState, "membership_state"), default=MembershipState.NONE
    )
    current_period_end: Mapped[datetime | None]
    cancel_at_period_end: Mapped[bool] = mapped_column(default=False)
    cancel_reason: Mapped[str | None] = mapped_column(String(500))
    paused_until: Mapped[datetime | None]
    pause_requested: Mapped[bool] = mapped_column(default=False)
    past_due_since: Mapped[datetime | None]
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    ended_at: Mapped[datetime | None]
    # Stripe's own "updated" clock would be better, but it has none: we keep when we last synced.
    synced_at: Mapped[datetime] = mapped_column(default=utcnow)

    member: Mapped[Member] = relationship()
    price: Mapped[Price] = relationship()


class JoinStatus(enum.StrEnum):
    STARTED = "started"
    SUBSCRIBED = "subscribed"


class JoinAttempt(db.Model):
    """One press of "Join", keyed by a token in the form, so a double submit joins once."""

    __tablename__ = "join_attempts"

    id: Mapped[int] = mapped_column(primary_key=True)
    token: Mapped[str] = mapped_column(String(64), unique=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id", ondelete="CASCADE"))
    price_id: Mapped[int] = mapped_column(ForeignKey("prices.id", ondelete="RESTRICT"))
    status: Mapped[JoinStatus] = mapped_column(
        enum_column(JoinStatus, "join_status"), default=JoinStatus.STARTED
    )
    stripe_setup_intent_id: Mapped[str | None] = mapped_column(String(255))
    subscription_id: Mapped[int | None] = mapped_column(
        ForeignKey("subscriptions.id", ondelete="SET NULL")
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    price: Mapped[Price] = relationship()
    subscription: Mapped[Subscription | None] = relationship()


class PaymentKind(enum.StrEnum):
    SUBSCRIPTION = "subscription"
    DONATION = "donation"


class PaymentStatus(enum.StrEnum):
    PENDING = "pending"  # a one-off gift waiting for the card or the bank
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class Payment(db.Model):
    """The ledger: every payment, successful or failed, in integer minor units."""

    __tablename__ = "payments"
    __table_args__ = (
        CheckConstraint("amount > 0", name="amount_positive"),
        CheckConstraint("amount_refunded >= 0 AND amount_refunded <= amount", name="refunded"),
        CheckConstraint(CURRENCY_CHECK, name="currency_code"),
        Index("ix_payments_member_id", "member_id"),
        Index("ix_payments_paid_at", "paid_at"),
        # Reports ask, per subscription, whether any renewal was paid.
        Index("ix_payments_subscription_id", "subscription_id", "status"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    member_id: Mapped[int | None] = mapped_column(ForeignKey("members.id", ondelete="SET NULL"))
    subscription_id: Mapped[int | None] = mapped_column(
        ForeignKey("subscriptions.id", ondelete="SET NULL")
    )
    kind: Mapped[PaymentKind] = mapped_column(enum_column(PaymentKind, "payment_kind"))
    status: Mapped[PaymentStatus] = mapped_column(enum_column(PaymentStatus, "payment_status"))
    amount: Mapped[int]
    amount_refunded: Mapped[int] = mapped_column(default=0)
    currency: Mapped[str] = mapped_column(String(3))
    # For gifts without an account: where the receipt goes. Cleared when a member is deleted.
    email: Mapped[str | None] = mapped_column(String(254))
    stripe_payment_intent_id: Mapped[str | None] = mapped_column(String(255), unique=True)
    stripe_invoice_id: Mapped[str | None] = mapped_column(String(255), unique=True)
    stripe_charge_id: Mapped[str | None] = mapped_column(String(255), unique=True)
    idempotency_token: Mapped[str | None] = mapped_column(String(64), unique=True)
    failure_message: Mapped[str | None] = mapped_column(String(500))
    receipt_sent: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    paid_at: Mapped[datetime | None]


class Refund(db.Model):
    __tablename__ = "refunds"
    __table_args__ = (
        CheckConstraint("amount > 0", name="amount_positive"),
        CheckConstraint(CURRENCY_CHECK, name="currency_code"),
        Index("ix_refunds_payment_id", "payment_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    payment_id: Mapped[int] = mapped_column(ForeignKey("payments.id", ondelete="RESTRICT"))
    amount: Mapped[int]
    currency: Mapped[str] = mapped_column(String(3))
    stripe_refund_id: Mapped[str] = mapped_column(String(255), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class MembershipEvent(db.Model):
    """Every change of a member's state: the history the reports are computed from."""

    __tablename__ = "membership_events"
    __table_args__ = (
        CheckConstraint(CURRENCY_CHECK, name="currency_code"),
        Index("ix_membership_events_member_id", "member_id"),
        Index("ix_membership_events_created_at", "created_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id", ondelete="RESTRICT"))
    subscription_id: Mapped[int | None] = mapped_column(
        ForeignKey("subscriptions.id", ondelete="SET NULL")
    )
    from_state: Mapped[MembershipState] = mapped_column(
        enum_column(MembershipState, "membership_event_from")
    )
    to_state: Mapped[MembershipState] = mapped_column(
        enum_column(MembershipState, "membership_event_to")
    )
    reason: Mapped[str] = mapped_column(String(200))
    # Change in monthly recurring revenue, in minor units of ``currency`` (yearly counts /12).
    mrr_delta: Mapped[int] = mapped_column(default=0)
    currency: Mapped[str] = mapped_column(String(3))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class EventStatus(enum.StrEnum):
    RECEIVED = "received"
    PROCESSED = "processed"
    IGNORED = "ignored"  # not ours, or a type we do not act on
    FAILED = "failed"


class WebhookEvent(db.Model):
    """A Stripe event, stored once by its id before anything is done with it."""

    __tablename__ = "webhook_events"
    __table_args__ = (
        UniqueConstraint("stripe_event_id"),
        Index("ix_webhook_events_status", "status"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    stripe_event_id: Mapped[str] = mapped_column(String(255))
    type: Mapped[str] = mapped_column(String(100))
    payload: Mapped[str] = mapped_column(Text)
    status: Mapped[EventStatus] = mapped_column(
        enum_column(EventStatus, "webhook_event_status"), default=EventStatus.RECEIVED
    )
    error: Mapped[str | None] = mapped_column(String(1000))
    attempts: Mapped[int] = mapped_column(default=0)
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    processed_at: Mapped[datetime | None]
