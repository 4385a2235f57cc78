"""Billing rules: money, membership states and their transitions. Pure functions, no Flask."""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal

# Currencies whose smallest unit is the unit itself (Stripe's list of zero-decimal currencies).
ZERO_DECIMAL = frozenset(
    {"BIF", "CLP", "DJF", "GNF", "JPY", "KMF", "KRW", "MGA"}
    | {"PYG", "RWF", "UGX", "VND", "VUV", "XAF", "XOF", "XPF"}
)
CURRENCY_SYMBOLS = {"EUR": "€", "USD": "$", "GBP": "£", "JPY": "¥", "UAH": "₴", "PLN": "zł"}
# Anything above this is more likely a typo than a gift; Stripe's own ceiling is far higher.
MAX_AMOUNT_MAJOR = 100_000


class Interval(enum.StrEnum):
    MONTH = "month"
    YEAR = "year"


class SubscriptionStatus(enum.StrEnum):
    """Stripe's subscription statuses, spelled as Stripe spells them."""

    INCOMPLETE = "incomplete"
    INCOMPLETE_EXPIRED = "incomplete_expired"
    TRIALING = "trialing"
    ACTIVE = "active"
    PAST_DUE = "past_due"
    CANCELED = "canceled"
    UNPAID = "unpaid"
    PAUSED = "paused"


class MembershipState(enum.StrEnum):
    """What a member's support means for us, decided by :func:`membership_state`."""

    NONE = "none"  # never joined, or still entering a card
    ACTIVE = "active"
    TRIALING = "trialing"
    PAST_DUE = "past_due"  # a renewal failed; perks kept during the grace period
    LAPSED = "lapsed"  # past due beyond the grace period: perks stop until payment
    PAUSED = "paused"
    CANCELING = "canceling"  # active until the period ends, then ended
    ENDED = "ended"
    COMPED = "comped"  # granted by staff until a date


# States in which the member enjoys perks.
PATRON_STATES = frozenset(
    {
        MembershipState.ACTIVE,
        MembershipState.TRIALING,
        MembershipState.PAST_DUE,
        MembershipState.CANCELING,
        MembershipState.COMPED,
    }
)
# Stripe statuses after which a subscription can never come back.
FINAL_STATUSES = frozenset({SubscriptionStatus.CANCELED, SubscriptionStatus.INCOMPLETE_EXPIRED})


AMOUNT_PATTERN = re.compile(r"^-?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)$")


class AmountError(ValueError):
    """An amount a reader typed that we cannot take; the message says why."""


def minor_units(currency: str) -> int:
    """How many minor units make one major unit (100 for EUR, 1 for JPY)."""
    return 1 if currency.upper() in ZERO_DECIMAL else 100


def parse_amount(text: str, currency: str) -> int:
    """Turn what a reader typed ("5", "7.50", "1 000") into minor units of ``currency``."""
    cleaned = (text or "").strip().replace(" ", "").replace("\u00a0", "").replace(",", ".")
    if not cleaned or len(cleaned) > 20:
        raise AmountError("Enter an amount.")
    # Plain ASCII digits only: no exponents ("1e3"), no NaN or infinity, no other scripts' digits.
    if not AMOUNT_PATTERN.match(cleaned):
        raise AmountError("Enter the amount as a number, like 5 or 7.50.")
    value = Decimal(cleaned)
    if value <= 0:
        raise AmountError("Enter an amount above zero.")
    if value > MAX_AMOUNT_MAJOR:
        raise AmountError(f"That is more than we can take at once ({MAX_AMOUNT_MAJOR:,}).")
    factor = minor_units(currency)
    minor = value * factor
    if minor != minor.to_integral_value():
        places = "no decimals" if factor == 1 else "at most two decimals"
        raise AmountError(f"Use {places} for {currency.upper()}.")
    return int(minor)


def amount_text(amount: int, currency: str) -> str:
    """An amount as a reader would type it: ``amount_text(750, "EUR") == "7.50"``."""
    factor = minor_units(currency)
    if factor == 1 or amount % factor == 0:
        return str(amount // factor)
    return f"{Decimal(amount) / factor:.2f}"


def format_money(amount: int, currency: str) -> str:
    """``format_money(750, "EUR") == "€7.50"``; whole amounts drop the decimals."""
    currency = currency.upper()
    factor = minor_units(currency)
    major = Decimal(amount) / factor
    text = f"{major:,.0f}" if factor == 1 or amount % factor == 0 else f"{major:,.2f}"
    symbol = CURRENCY_SYMBOLS.get(currency)
    return f"{symbol}{text}" if symbol else f"{text} {currency}"


def monthly_value(amount: int, interval: Interval) -> Decimal:
    """What a price is worth per month, for MRR: a yearly amount counts as a twelfth."""
    return Decimal(amount) if interval is Interval.MONTH else Decimal(amount) / 12


def mrr_minor(amount: int, interval: Interval) -> int:
    return int(monthly_value(amount, interval).quantize(Decimal(1), rounding=ROUND_HALF_UP))


@dataclass(frozen=True)
class SubscriptionFacts:
    """What Stripe says about a subscription, in our words."""

    status: SubscriptionStatus
    cancel_at_period_end: bool = False
    current_period_end: datetime | None = None
    paused_until: datetime | None = None  # pause_collection.resumes_at
    pause_requested: bool = False  # pause_collection is set
    past_due_since: datetime | None = None


def membership_state(
    facts: SubscriptionFacts | None,
    now: datetime,
    grace: timedelta,
    comped_until: datetime | None = None,
) -> MembershipState:
    """The one place that decides a member's state from Stripe's facts and our policy."""
    paid = _paid_state(facts, now, grace)
    if paid in (MembershipState.NONE, MembershipState.ENDED, MembershipState.LAPSED) and (
        comped_until is not None and comped_until > now
    ):
        return MembershipState.COMPED
    return paid


def _paid_state(
    facts: SubscriptionFacts | None, now: datetime, grace: timedelta
) -> MembershipState:
    if facts is None:
        return MembershipState.NONE
    status = facts.status
    if status in FINAL_STATUSES:
        return MembershipState.ENDED
    if status is SubscriptionStatus.INCOMPLETE:
        return MembershipState.NONE
    if status is SubscriptionStatus.PAUSED or facts.pause_requested:
        return MembershipState.PAUSED
    if status in (SubscriptionStatus.PAST_DUE, SubscriptionStatus.UNPAID):
        since = facts.past_due_since or now
        if status is SubscriptionStatus.UNPAID or now - since > grace:
            return MembershipState.LAPSED
        return MembershipState.PAST_DUE
    if facts.cancel_at_period_end:
        if facts.current_period_end is not None and facts.current_period_end <= now:
            return MembershipState.ENDED
        return MembershipState.CANCELING
    if status is SubscriptionStatus.TRIALING:
        return MembershipState.TRIALING
    return MembershipState.ACTIVE


def is_patron(state: MembershipState) -> bool:
    return state in PATRON_STATES


def is_live(status: SubscriptionStatus) -> bool:
    """Whether a subscription still counts as the member's one subscription."""
    return status not in FINAL_STATUSES


def pause_resumes_at(now: datetime, months: int) -> datetime:
    """When a pause of ``months`` (1 to 3) ends: the same day that many months later."""
    if months not in (1, 2, 3):
        raise ValueError("A pause lasts one, two or three months.")
    month = now.month - 1 + months
    year = now.year + month // 12
    month = month % 12 + 1
    day = min(now.day, _days_in_month(year, month))
    return now.replace(year=year, month=month, day=day)


def _days_in_month(year: int, month: int) -> int:
    if month == 12:
        return 31
    return (datetime(year, month + 1, 1) - datetime(year, month, 1)).days


def plan_id(tier_slug: str, interval: Interval, currency: str, amount: int) -> str:
    """The Stripe Plan/Price id for a price. Same price, same id: creating it is idempotent.

    A price is never edited in place: a new amount is a new id, as Stripe requires.
    """
    return f"membership-{tier_slug}-{interval.value}-{currency.lower()}-{amount}"
