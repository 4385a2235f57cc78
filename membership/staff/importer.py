"""Import and export members from another platform as CSV (``members.csv`` and ``payments.csv``).

The parsing and validation functions at the top are pure (bytes in, rows and problems out); the
functions that take a session below them find or create members, subscriptions, comps, payments and
refunds. An import is all-or-nothing: every line is checked first, and if any is wrong nothing is
written and every problem is listed with its line number. Running the same import twice changes
nothing: members are matched by normalised email, subscriptions by ``stripe_subscription_id`` (or a
synthetic ``imported:<email>:<started_at>`` id), payments by their Stripe id (or a synthetic key).

Statuses in members.csv and what they become:

- ``active``: an active Stripe-status subscription, a patron until ``current_period_end``;
- ``past_due``: a past-due subscription, its renewal having failed at ``current_period_end``;
- ``canceled``: canceled by the patron: still a patron (canceling) until ``current_period_end``
  when that is in the future, ended otherwise;
- ``ended``: a canceled, finished subscription (``ended_at`` required);
- ``comped``: a complimentary membership (a Comp row) from ``started_at`` until ``ended_at`` (or
  ``current_period_end``); interval, currency and amount may be left empty.

Members are created without a password (they use "forgot password"); no email is sent.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
import json
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

from sqlalchemy import select
from sqlalchemy.orm import Session

from membership.accounts import rules as account_rules
from membership.accounts.models import Member
from membership.billing import rules as billing_rules
from membership.billing import service as billing_service
from membership.billing import sync
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
from membership.staff.models import AuditEntry, Comp

MEMBER_HEADERS = (
    "email",
    "name",
    "tier",
    "interval",
    "currency",
    "amount",
    "status",
    "started_at",
    "ended_at",
    "current_period_end",
    "stripe_customer_id",
    "stripe_subscription_id",
)
PAYMENT_HEADERS = ("email", "paid_at", "amount", "currency", "kind", "stripe_id")
STATUSES = ("active", "past_due", "canceled", "ended", "comped")
PAYMENT_KINDS = ("subscription", "donation", "refund")
CURRENCY_PATTERN = re.compile(r"^[A-Za-z]{3}$")
AMOUNT_PATTERN = re.compile(r"^[0-9]+$")
SYNTHETIC_PREFIX = "imported:"
REASON = "imported"

RowT = TypeVar("RowT")

Progress = Callable[[str, Iterable[Any]], Iterator[Any]]


@dataclass(frozen=True)
class Problem:
    """One thing wrong with an input file; ``line`` is 1-based (the header is line 1)."""

    file: str
    line: int
    message: str

    def __str__(self) -> str:
        where = f"{self.file} line {self.line}" if self.line else self.file
        return f"{where}: {self.message}"


@dataclass(frozen=True)
class MemberRow:
    line: int
    email: str
    name: str
    tier: str
    interval: Interval | None
    currency: str | None
    amount: int | None
    status: str
    started_at: datetime
    ended_at: datetime | None
    current_period_end: datetime | None
    stripe_customer_id: str | None
    stripe_subscription_id: str | None

    @property
    def subscription_key(self) -> str:
        """The subscription's id: Stripe's, or a synthetic one stable across runs."""
        return self.stripe_subscription_id or (
            f"{SYNTHETIC_PREFIX}{self.email}:{iso(self.started_at)}"
        )


@dataclass(frozen=True)
class PaymentRow:
    line: int
    email: str
    paid_at: datetime
    amount: int
    currency: str
    kind: str
    stripe_id: str | None
    key: str  # the Stripe id, or a synthetic key
    refund_of: str | None = None  # for refunds: the key of the payment refunded


@dataclass
class Parsed(Generic[RowT]):
    rows: list[RowT] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    emails: set[str] = field(default_factory=set)  # every valid address, bad lines included


# --- pure parsing and validation --------------------------------------------------------------


def iso(moment: datetime) -> str:
    """How dates are written in the files: ISO 8601 in UTC, to the second."""
    return moment.astimezone(UTC).replace(microsecond=0).isoformat()


def parse_datetime(text: str) -> datetime:
    """An ISO 8601 date or date and time; without a time zone, UTC is assumed."""
    value = datetime.fromisoformat(text.strip())
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def decode(data: bytes) -> str:
    """UTF-8, with or without a byte-order mark; anything else raises UnicodeDecodeError."""
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8) :]
    return data.decode("utf-8")


def _read_table(
    data: bytes, file: str, headers: tuple[str, ...], problems: list[Problem]
) -> list[tuple[int, dict[str, str]]]:
    """The data lines of a CSV file as (line number, {header: value}), checking the shape."""
    try:
        text = decode(data)
    except UnicodeDecodeError as exc:
        problems.append(
            Problem(file, 0, f"is not UTF-8 text (byte {exc.start + 1}); save it as UTF-8 CSV.")
        )
        return []
    if not text.strip():
        problems.append(Problem(file, 0, "is empty; it needs a header line and data lines."))
        return []
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    rows: list[tuple[int, dict[str, str]]] = []
    try:
        header = next(reader)
        found = tuple(h.strip().lower() for h in header)
        if found != headers:
            missing = [h for h in headers if h not in found]
            unknown = [h for h in found if h not in headers]
            detail = []
            if missing:
                detail.append(f"missing {', '.join(missing)}")
            if unknown:
                detail.append(f"unknown {', '.join(unknown)}")
            if not detail:
                detail.append("columns in the wrong order")
            problems.append(
                Problem(
                    file, 1, f"wrong headers ({'; '.join(detail)}); expected: {','.join(headers)}."
                )
            )
            return []
        for values in reader:
            line = reader.line_num
            if not values or all(not v.strip() for v in values):
                continue
            if len(values) != len(headers):
                problems.append(
                    Problem(
                        file,
                        line,
                        f"has {len(values)} values instead of {len(headers)} "
                        '(put values that contain commas in double quotes: "Doe, Jane").',
                    )
                )
                continue
            rows.append((line, {h: v.strip() for h, v in zip(headers, values, strict=True)}))
    except csv.Error as exc:
        problems.append(Problem(file, reader.line_num, f"cannot be read as CSV: {exc}."))
    if not rows and not problems:
        problems.append(Problem(file, 0, "has a header line but no data lines."))
    return rows


def _date(values: dict[str, str], name: str, required: bool, errors: list[str]) -> datetime | None:
    text = values[name]
    if not text:
        if required:
            errors.append(f"{name} is missing")
        return None
    try:
        return parse_datetime(text)
    except ValueError:
        errors.append(f"{name} {text!r} is not an ISO 8601 date (like 2026-01-31T12:00:00Z)")
        return None


def _amount(text: str, errors: list[str]) -> int | None:
    if not text:
        errors.append("amount is missing")
        return None
    if not AMOUNT_PATTERN.match(text):
        errors.append(
            f"amount {text!r} must be a whole number of minor units above zero (750 for 7.50)"
        )
        return None
    amount = int(text)
    if amount <= 0:
        errors.append("amount must be above zero")
        return None
    return amount


def _currency(text: str, errors: list[str]) -> str | None:
    if not CURRENCY_PATTERN.match(text):
        errors.append(f"currency {text!r} is not a three-letter ISO code (like EUR)")
        return None
    return text.upper()


def parse_members(data: bytes, known_tiers: Iterable[str]) -> Parsed[MemberRow]:
    """Read and check members.csv. ``known_tiers`` are the tier slugs that exist."""
    file = "members.csv"
    result: Parsed[MemberRow] = Parsed()
    tiers = set(known_tiers)
    seen: dict[str, int] = {}
    seen_customers: dict[str, int] = {}
    seen_subscriptions: dict[str, int] = {}
    for line, values in _read_table(data, file, MEMBER_HEADERS, result.problems):
        errors: list[str] = []
        email = ""
        try:
            email = account_rules.normalise_email(values["email"])
        except account_rules.InvalidEmail:
            errors.append(f"email {values['email']!r} is not a valid address")
        if email and email in seen:
            errors.append(f"email {email} is also on line {seen[email]}")
        elif email:
            seen[email] = line
            result.emails.add(email)
        name = ""
        try:
            name = account_rules.clean_display_name(values["name"] or email.split("@")[0])
        except ValueError as exc:
            errors.append(f"name: {exc}")
        if values["tier"] not in tiers:
            errors.append(f"unknown tier {values['tier']!r} (known: {', '.join(sorted(tiers))})")
        status = values["status"].lower()
        if status not in STATUSES:
            errors.append(f"status {values['status']!r} is not one of {', '.join(STATUSES)}")
        comped = status == "comped"
        interval: Interval | None = None
        currency: str | None = None
        amount: int | None = None
        if not (comped and not values["interval"]):
            try:
                interval = Interval(values["interval"].lower())
            except ValueError:
                errors.append(f"interval {values['interval']!r} must be month or year")
        if not (comped and not values["currency"]):
            currency = _currency(values["currency"], errors)
        if not (comped and not values["amount"]):
            amount = _amount(values["amount"], errors)
        started_at = _date(values, "started_at", True, errors)
        ended_at = _date(values, "ended_at", status == "ended", errors)
        period_end = _date(
            values, "current_period_end", status in ("active", "past_due", "canceled"), errors
        )
        if started_at and ended_at and ended_at < started_at:
            errors.append("ended_at is before started_at")
        if comped and started_at and (ended_at or period_end or started_at) <= started_at:
            errors.append("a comped membership needs ended_at (or current_period_end) after start")
        for column, registry in (
            ("stripe_customer_id", seen_customers),
            ("stripe_subscription_id", seen_subscriptions),
        ):
            value = values[column]
            if value and value in registry:
                errors.append(f"{column} {value} is also on line {registry[value]}")
            elif value:
                registry[value] = line
        if values["stripe_subscription_id"].startswith(SYNTHETIC_PREFIX):
            errors.append(f"stripe_subscription_id must not start with {SYNTHETIC_PREFIX!r}")
        if errors:
            result.problems.extend(Problem(file, line, e + ".") for e in errors)
            continue
        assert started_at is not None
        result.rows.append(
            MemberRow(
                line=line,
                email=email,
                name=name,
                tier=values["tier"],
                interval=interval,
                currency=currency,
                amount=amount,
                status=status,
                started_at=started_at,
                ended_at=ended_at,
                current_period_end=period_end,
                stripe_customer_id=values["stripe_customer_id"] or None,
                stripe_subscription_id=values["stripe_subscription_id"] or None,
            )
        )
    return result


def synthetic_payment_key(
    email: str, paid_at: datetime, amount: int, currency: str, kind: str, occurrence: int
) -> str:
    """A stable key for a payment without a Stripe id (the n-th identical line counts apart)."""
    raw = f"{email}|{iso(paid_at)}|{amount}|{currency}|{kind}|{occurrence}"
    return f"{SYNTHETIC_PREFIX}{hashlib.sha256(raw.encode()).hexdigest()[:40]}"


def parse_payments(data: bytes, known_emails: Iterable[str]) -> Parsed[PaymentRow]:
    """Read and check payments.csv. ``known_emails``: members in members.csv or the database.

    A refund line refunds the latest earlier payment of the same member and currency (on an
    earlier line) that still has enough left to refund.
    """
    file = "payments.csv"
    result: Parsed[PaymentRow] = Parsed()
    emails = set(known_emails)
    occurrences: dict[tuple[Any, ...], int] = {}
    seen_ids: dict[str, int] = {}
    refundable: dict[str, int] = {}  # payment key -> amount left
    for line, values in _read_table(data, file, PAYMENT_HEADERS, result.problems):
        errors: list[str] = []
        email = ""
        try:
            email = account_rules.normalise_email(values["email"])
        except account_rules.InvalidEmail:
            errors.append(f"email {values['email']!r} is not a valid address")
        if email and email not in emails:
            errors.append(f"no member with email {email} in members.csv or in the database")
        paid_at = _date(values, "paid_at", True, errors)
        amount = _amount(values["amount"], errors)
        currency = _currency(values["currency"], errors)
        kind = values["kind"].lower()
        if kind not in PAYMENT_KINDS:
            errors.append(f"kind {values['kind']!r} is not one of {', '.join(PAYMENT_KINDS)}")
        stripe_id = values["stripe_id"] or None
        if stripe_id and stripe_id in seen_ids:
            errors.append(f"stripe_id {stripe_id} is also on line {seen_ids[stripe_id]}")
        elif stripe_id:
            seen_ids[stripe_id] = line
        if stripe_id and stripe_id.startswith(SYNTHETIC_PREFIX):
            errors.append(f"stripe_id must not start with {SYNTHETIC_PREFIX!r}")
        refund_of = None
        if not errors and kind == "refund":
            assert paid_at is not None and amount is not None
            candidates = [
                row
                for row in result.rows
                if row.kind != "refund"
                and row.email == email
                and row.currency == currency
                and row.paid_at <= paid_at
                and refundable.get(row.key, 0) >= amount
            ]
            if not candidates:
                errors.append(
                    "this refund matches no earlier payment of this member in this currency "
                    "with that much left to refund"
                )
            else:
                target = max(candidates, key=lambda row: (row.paid_at, row.line))
                refund_of = target.key
                refundable[target.key] -= amount
        if errors:
            result.problems.extend(Problem(file, line, e + ".") for e in errors)
            continue
        assert paid_at is not None and amount is not None and currency is not None
        identity = (email, iso(paid_at), amount, currency, kind)
        occurrence = occurrences.get(identity, 0)
        occurrences[identity] = occurrence + 1
        key = stripe_id or synthetic_payment_key(email, paid_at, amount, currency, kind, occurrence)
        row = PaymentRow(line, email, paid_at, amount, currency, kind, stripe_id, key, refund_of)
        if kind != "refund":
            refundable[key] = amount
        result.rows.append(row)
    return result


# --- the import ---------------------------------------------------------------------------------


@dataclass
class ImportResult:
    problems: list[Problem] = field(default_factory=list)
    # kind ("members", "subscriptions", ...) -> {"created": n, "updated": n, "unchanged": n}
    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    dry_run: bool = False

    @property
    def ok(self) -> bool:
        return not self.problems

    def count(self, kind: str, outcome: str) -> None:
        bucket = self.counts.setdefault(kind, {"created": 0, "updated": 0, "unchanged": 0})
        bucket[outcome] += 1

    def summary_lines(self) -> list[str]:
        return [
            f"{kind}: {c['created']} created, {c['updated']} updated, {c['unchanged']} unchanged"
            for kind, c in self.counts.items()
        ]

    @property
    def changed(self) -> bool:
        return any(c["created"] or c["updated"] for c in self.counts.values())


def _no_progress(label: str, items: Iterable[Any]) -> Iterator[Any]:
    yield from items


def validate(
    session: Session, members_data: bytes, payments_data: bytes | None
) -> tuple[Parsed[MemberRow], Parsed[PaymentRow], list[Problem]]:
    """Check both files and their fit with the database; nothing is written."""
    tiers = {t.slug for t in session.scalars(select(Tier))}
    members = parse_members(members_data, tiers)
    payments: Parsed[PaymentRow] = Parsed()
    if payments_data is not None:
        # Lines already refused in members.csv count as known, so one mistake is listed once.
        emails = set(members.emails)
        emails.update(session.scalars(select(Member.email).where(Member.deleted_at.is_(None))))
        payments = parse_payments(payments_data, emails)
    problems = members.problems + payments.problems
    problems.extend(_database_conflicts(session, members.rows))
    return members, payments, problems


def _database_conflicts(session: Session, rows: list[MemberRow]) -> list[Problem]:
    """Lines that would clash with what the database already holds."""
    problems: list[Problem] = []
    for row in rows:
        if row.stripe_customer_id:
            owner = session.scalar(
                select(Member).where(Member.stripe_customer_id == row.stripe_customer_id)
            )
            if owner is not None and owner.email != row.email:
                problems.append(
                    Problem(
                        "members.csv", row.line, "stripe_customer_id belongs to another member."
                    )
                )
        if row.status == "comped":
            continue
        existing = session.scalar(
            select(Subscription).where(Subscription.stripe_subscription_id == row.subscription_key)
        )
        if existing is not None and existing.member.email != row.email:
            problems.append(
                Problem(
                    "members.csv", row.line, "stripe_subscription_id belongs to another member."
                )
            )
            continue
        member = session.scalar(select(Member).where(Member.email == row.email))
        if member is None:
            continue
        if member.deleted_at is not None:
            problems.append(Problem("members.csv", row.line, "this account was deleted."))
            continue
        live = session.scalar(
            select(Subscription).where(Subscription.member_id == member.id, Subscription.live)
        )
        if live is not None and live.stripe_subscription_id != row.subscription_key:
            problems.append(
                Problem("members.csv", row.line, "this member already has a live membership.")
            )
    return problems


def import_members(
    session: Session,
    members_data: bytes,
    payments_data: bytes | None = None,
    *,
    now: datetime,
    default_currency: str = "EUR",
    progress: Progress = _no_progress,
) -> ImportResult:
    """Validate both files, then (only if every line is right) create or update everything.

    Flushes, never commits: the caller commits, or rolls back for a dry run.
    """
    members, payments, problems = validate(session, members_data, payments_data)
    result = ImportResult(problems=problems)
    if problems:
        return result
    tiers = {t.slug: t for t in session.scalars(select(Tier))}
    subscriptions: dict[str, Subscription] = {}
    for row in progress("Members", members.rows):
        member = _member(session, row, result)
        if row.status == "comped":
            _comp(session, member, tiers[row.tier], row, default_currency, result)
        else:
            subscriptions[row.email] = _subscription(
                session, member, tiers[row.tier], row, now, result
            )
    payment_by_key: dict[str, Payment] = {}
    for prow in progress("Payments", payments.rows):
        if prow.kind == "refund":
            assert prow.refund_of is not None
            _refund(session, payment_by_key[prow.refund_of], prow, result)
        else:
            payment_by_key[prow.key] = _payment(session, prow, subscriptions, result)
    session.flush()
    return result


def _member(session: Session, row: MemberRow, result: ImportResult) -> Member:
    member = session.scalar(select(Member).where(Member.email == row.email))
    if member is None:
        member = Member(email=row.email, display_name=row.name, password_hash=None)
        member.stripe_customer_id = row.stripe_customer_id
        session.add(member)
        session.flush()
        result.count("members", "created")
        return member
    changed = False
    if member.display_name != row.name:
        member.display_name = row.name
        changed = True
    if row.stripe_customer_id and member.stripe_customer_id != row.stripe_customer_id:
        member.stripe_customer_id = row.stripe_customer_id
        changed = True
    result.count("members", "updated" if changed else "unchanged")
    return member


def _subscription_fields(row: MemberRow, now: datetime) -> dict[str, Any]:
    period_end = row.current_period_end
    fields: dict[str, Any] = {
        "started_at": row.started_at,
        "current_period_end": period_end,
        "cancel_at_period_end": False,
        "past_due_since": None,
        "ended_at": None,
        "live": True,
    }
    if row.status == "active":
        fields["status"] = SubscriptionStatus.ACTIVE
    elif row.status == "past_due":
        fields["status"] = SubscriptionStatus.PAST_DUE
        fields["past_due_since"] = period_end  # the renewal at the period's end failed
    elif row.status == "canceled" and period_end is not None and period_end > now:
        # Stripe's way of saying "canceling": active, ending at the period's end.
        fields["status"] = SubscriptionStatus.ACTIVE
        fields["cancel_at_period_end"] = True
    else:  # canceled in the past, or ended
        fields["status"] = SubscriptionStatus.CANCELED
        fields["cancel_at_period_end"] = row.status == "canceled"
        fields["ended_at"] = row.ended_at or period_end or row.started_at
        fields["live"] = False
    if row.status == "canceled" and row.ended_at is not None and fields["live"]:
        fields["ended_at"] = None
    return fields


def _event(
    session: Session,
    subscription: Subscription,
    old: MembershipState,
    new: MembershipState,
    old_price: Price | None,
    at: datetime,
) -> None:
    price = subscription.price
    before = sync._mrr(old, old_price)
    after = sync._mrr(new, price)
    session.add(
        MembershipEvent(
            member_id=subscription.member_id,
            subscription_id=subscription.id,
            from_state=old,
            to_state=new,
            reason=REASON,
            mrr_delta=after - before,
            currency=price.currency,
            created_at=at,
        )
    )


def _subscription(
    session: Session,
    member: Member,
    tier: Tier,
    row: MemberRow,
    now: datetime,
    result: ImportResult,
) -> Subscription:
    assert row.interval is not None and row.currency is not None and row.amount is not None
    price = billing_service.price_for(session, tier, row.interval, row.currency, row.amount)
    fields = _subscription_fields(row, now)
    key = row.subscription_key
    subscription = session.scalar(
        select(Subscription).where(Subscription.stripe_subscription_id == key)
    )
    if subscription is None:
        subscription = Subscription(
            member=member, price=price, stripe_subscription_id=key, synced_at=now, **fields
        )
        session.add(subscription)
        session.flush()
        state = sync.state_of(subscription, now)
        subscription.state = state
        # History for the reports: the start, then how it stands now.
        _event(
            session,
            subscription,
            MembershipState.NONE,
            MembershipState.ACTIVE,
            None,
            row.started_at,
        )
        if state is not MembershipState.ACTIVE:
            at = fields["ended_at"] or fields["past_due_since"] or now
            _event(session, subscription, MembershipState.ACTIVE, state, price, at)
        result.count("subscriptions", "created")
        return subscription
    old_state, old_price = subscription.state, subscription.price
    changed = subscription.price_id != price.id
    subscription.price = price
    for name, value in fields.items():
        if getattr(subscription, name) != value:
            setattr(subscription, name, value)
            changed = True
    if changed:
        subscription.synced_at = now
    state = sync.state_of(subscription, now)
    if state != old_state or old_price.id != price.id:
        subscription.state = state
        session.flush()
        _event(session, subscription, old_state, state, old_price, now)
        changed = True
    result.count("subscriptions", "updated" if changed else "unchanged")
    return subscription


def _comp(
    session: Session,
    member: Member,
    tier: Tier,
    row: MemberRow,
    default_currency: str,
    result: ImportResult,
) -> Comp:
    ends_at = row.ended_at or row.current_period_end
    assert ends_at is not None
    comp = session.scalar(
        select(Comp).where(
            Comp.member_id == member.id, Comp.starts_at == row.started_at, Comp.reason == REASON
        )
    )
    if comp is None:
        comp = Comp(
            member_id=member.id,
            tier_id=tier.id,
            starts_at=row.started_at,
            ends_at=ends_at,
            reason=REASON,
        )
        session.add(comp)
        session.add(
            MembershipEvent(
                member_id=member.id,
                from_state=MembershipState.NONE,
                to_state=MembershipState.COMPED,
                reason=REASON,
                mrr_delta=0,
                currency=row.currency or default_currency,
                created_at=row.started_at,
            )
        )
        result.count("comps", "created")
        return comp
    if comp.tier_id != tier.id or comp.ends_at != ends_at:
        comp.tier_id, comp.ends_at = tier.id, ends_at
        result.count("comps", "updated")
    else:
        result.count("comps", "unchanged")
    return comp


def _stripe_column(stripe_id: str) -> str:
    if stripe_id.startswith("in_"):
        return "stripe_invoice_id"
    if stripe_id.startswith("pi_"):
        return "stripe_payment_intent_id"
    return "stripe_charge_id"


def _payment(
    session: Session,
    row: PaymentRow,
    subscriptions: dict[str, Subscription],
    result: ImportResult,
) -> Payment:
    if row.stripe_id:
        column = getattr(Payment, _stripe_column(row.stripe_id))
        payment = session.scalar(select(Payment).where(column == row.stripe_id))
    else:
        payment = session.scalar(select(Payment).where(Payment.idempotency_token == row.key))
    member = session.scalar(select(Member).where(Member.email == row.email))
    assert member is not None
    kind = PaymentKind(row.kind)
    subscription = subscriptions.get(row.email) if kind is PaymentKind.SUBSCRIPTION else None
    wanted = {
        "member_id": member.id,
        "kind": kind,
        "amount": row.amount,
        "currency": row.currency,
        "paid_at": row.paid_at,
    }
    if payment is None:
        payment = Payment(
            status=PaymentStatus.SUCCEEDED,
            subscription_id=subscription.id if subscription else None,
            created_at=row.paid_at,
            receipt_sent=True,  # never email a receipt for an old payment
            **wanted,
        )
        if row.stripe_id:
            setattr(payment, _stripe_column(row.stripe_id), row.stripe_id)
        else:
            payment.idempotency_token = row.key
        session.add(payment)
        session.flush()
        result.count("payments", "created")
        return payment
    changed = False
    for name, value in wanted.items():
        if getattr(payment, name) != value:
            setattr(payment, name, value)
            changed = True
    result.count("payments", "updated" if changed else "unchanged")
    return payment


def _refund(session: Session, payment: Payment, row: PaymentRow, result: ImportResult) -> None:
    refund = session.scalar(select(Refund).where(Refund.stripe_refund_id == row.key))
    if refund is not None:
        result.count("refunds", "unchanged")
        return
    if payment.amount_refunded + row.amount > payment.amount:
        # Already counted by a refund recorded some other way (a webhook): leave it.
        result.count("refunds", "unchanged")
        return
    session.add(
        Refund(
            payment_id=payment.id,
            amount=row.amount,
            currency=row.currency,
            stripe_refund_id=row.key,
            created_at=row.paid_at,
        )
    )
    payment.amount_refunded += row.amount
    session.flush()
    result.count("refunds", "created")


def record_audit(
    session: Session, result: ImportResult, actor_id: int | None, ip_address: str | None
) -> AuditEntry:
    """The audit log line for an upload in the staff area (added to the same transaction)."""
    entry = AuditEntry(
        actor_id=actor_id,
        action="members.import",
        target_type="import",
        target_id=None,
        before=None,
        after=json.dumps(result.counts, sort_keys=True),
        ip_address=ip_address,
    )
    session.add(entry)
    session.flush()
    return entry


# --- export -----------------------------------------------------------------------------------


def _status_of(subscription: Subscription) -> str | None:
    status = subscription.status
    if status in billing_rules.FINAL_STATUSES:
        return "canceled" if subscription.cancel_at_period_end else "ended"
    if status is SubscriptionStatus.INCOMPLETE:
        return None  # never paid: nothing to move
    if subscription.cancel_at_period_end:
        return "canceled"
    if status in (SubscriptionStatus.PAST_DUE, SubscriptionStatus.UNPAID):
        return "past_due"
    return "active"


def _when(moment: datetime | None) -> str:
    return iso(moment) if moment is not None else ""


def _write(headers: tuple[str, ...], rows: Iterable[list[str]]) -> str:
    out = io.StringIO(newline="")
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(headers)
    writer.writerows(rows)
    return out.getvalue()


def export_members(session: Session) -> str:
    """members.csv for every member with a subscription or an imported-style comp."""
    rows: list[list[str]] = []
    members = session.scalars(select(Member).where(Member.deleted_at.is_(None)).order_by(Member.id))
    for member in members:
        subscription = session.scalar(
            select(Subscription)
            .where(Subscription.member_id == member.id)
            .order_by(Subscription.live.desc(), Subscription.id.desc())
            .limit(1)
        )
        status = _status_of(subscription) if subscription is not None else None
        if subscription is not None and status is not None:
            price = subscription.price
            sub_id = subscription.stripe_subscription_id
            rows.append(
                [
                    member.email,
                    member.display_name,
                    price.tier.slug,
                    price.interval.value,
                    price.currency,
                    str(price.amount),
                    status,
                    _when(subscription.started_at),
                    _when(subscription.ended_at),
                    _when(subscription.current_period_end),
                    member.stripe_customer_id or "",
                    "" if sub_id.startswith(SYNTHETIC_PREFIX) else sub_id,
                ]
            )
            continue
        comp = session.scalar(
            select(Comp)
            .where(Comp.member_id == member.id, Comp.ended_early_at.is_(None))
            .order_by(Comp.ends_at.desc())
            .limit(1)
        )
        if comp is not None:
            tier = session.get(Tier, comp.tier_id)
            assert tier is not None
            rows.append(
                [
                    member.email,
                    member.display_name,
                    tier.slug,
                    "",
                    "",
                    "",
                    "comped",
                    _when(comp.starts_at),
                    _when(comp.ends_at),
                    "",
                    member.stripe_customer_id or "",
                    "",
                ]
            )
    return _write(MEMBER_HEADERS, rows)


def export_payments(session: Session) -> str:
    """payments.csv: every successful payment of a member, each followed by its refunds."""
    rows: list[list[str]] = []
    payments = session.scalars(
        select(Payment)
        .where(Payment.status == PaymentStatus.SUCCEEDED, Payment.member_id.is_not(None))
        .order_by(Payment.paid_at, Payment.id)
    )
    for payment in payments:
        member = session.get(Member, payment.member_id)
        if member is None or member.deleted_at is not None or payment.paid_at is None:
            continue
        stripe_id = (
            payment.stripe_invoice_id
            or payment.stripe_payment_intent_id
            or payment.stripe_charge_id
            or ""
        )
        rows.append(
            [
                member.email,
                iso(payment.paid_at),
                str(payment.amount),
                payment.currency,
                payment.kind.value,
                stripe_id,
            ]
        )
        refunds = session.scalars(
            select(Refund).where(Refund.payment_id == payment.id).order_by(Refund.id)
        )
        for refund in refunds:
            refund_id = refund.stripe_refund_id
            rows.append(
                [
                    member.email,
                    iso(refund.created_at),
                    str(refund.amount),
                    refund.currency,
                    "refund",
                    "" if refund_id.startswith(SYNTHETIC_PREFIX) else refund_id,
                ]
            )
    return _write(PAYMENT_HEADERS, rows)
