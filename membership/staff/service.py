"""Staff use cases: finding members, acting on them, and the audit log every staff write leaves.

Every function that changes something takes the acting staff member and their IP address and
writes an :class:`AuditEntry` in the same transaction (it flushes; the request commits).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any

from sqlalchemy import Select, and_, exists, func, or_, select
from sqlalchemy.orm import Session, aliased, joinedload

from membership.accounts import service as accounts
from membership.accounts.models import Member, Role
from membership.billing import rules as billing_rules
from membership.billing import service as billing
from membership.billing import sync
from membership.billing.gateway import StripeGateway
from membership.billing.models import (
    MembershipEvent,
    Payment,
    PaymentStatus,
    Price,
    Refund,
    Subscription,
    Tier,
)
from membership.billing.rules import AmountError, MembershipState, format_money, parse_amount
from membership.database import utcnow
from membership.emails import OutboundEmail
from membership.perks import rules as perk_rules
from membership.perks import service as perks
from membership.staff import rules
from membership.staff.models import AuditEntry, Comp
from membership.voting.models import Topic, Vote

PER_PAGE = 50


class StaffError(Exception):
    """A request the rules refuse; ``message`` is for the person, ``field`` for the form."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


# --- the audit log -----------------------------------------------------------------------------


def _json(value: dict[str, Any] | None) -> str | None:
    return None if value is None else json.dumps(value, sort_keys=True, default=str)


def record(
    session: Session,
    actor: Member | None,
    action: str,
    target_type: str,
    target_id: Any,
    before: dict[str, Any] | None,
    after: dict[str, Any] | None,
    ip: str | None,
) -> AuditEntry:
    """Write one audit entry (who did what to which record, before and after, from where)."""
    entry = AuditEntry(
        actor_id=actor.id if actor is not None else None,
        action=action,
        target_type=target_type,
        target_id=None if target_id is None else str(target_id),
        before=_json(before),
        after=_json(after),
        ip_address=(ip or None) and ip[:45],
    )
    session.add(entry)
    session.flush()
    return entry


@dataclass(frozen=True)
class AuditFilters:
    actor: str = ""  # part of the actor's email or name
    action: str = ""
    target_type: str = ""
    target_id: str = ""
    since: date | None = None
    until: date | None = None


def _audit_query(filters: AuditFilters) -> Select[Any]:
    actor = aliased(Member)
    query = select(AuditEntry, actor).outerjoin(actor, actor.id == AuditEntry.actor_id)
    if filters.actor:
        pattern = f"%{_escape_like(filters.actor.lower())}%"
        query = query.where(
            or_(
                func.lower(actor.email).like(pattern, escape="\\"),
                func.lower(actor.display_name).like(pattern, escape="\\"),
            )
        )
    if filters.action:
        query = query.where(AuditEntry.action == filters.action)
    if filters.target_type:
        query = query.where(AuditEntry.target_type == filters.target_type)
    if filters.target_id:
        query = query.where(AuditEntry.target_id == filters.target_id)
    if filters.since:
        query = query.where(AuditEntry.created_at >= _start_of(filters.since))
    if filters.until:
        query = query.where(AuditEntry.created_at < _start_of(filters.until + timedelta(days=1)))
    return query


@dataclass
class AuditPage:
    rows: list[tuple[AuditEntry, Member | None]]
    page: int
    pages: int
    total: int


def audit_page(session: Session, filters: AuditFilters, page: int) -> AuditPage:
    """One page of the audit log, newest first (raises StaffError for a page that is not there)."""
    query = _audit_query(filters)
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    pages = max(1, -(-total // PER_PAGE))
    if page < 1 or page > pages:
        raise StaffError("There is no such page.", "page")
    rows = session.execute(
        query.order_by(AuditEntry.created_at.desc(), AuditEntry.id.desc())
        .limit(PER_PAGE)
        .offset((page - 1) * PER_PAGE)
    ).all()
    return AuditPage(rows=[(e, a) for e, a in rows], page=page, pages=pages, total=total)


def audit_actions(session: Session) -> list[str]:
    return list(session.scalars(select(AuditEntry.action).distinct().order_by(AuditEntry.action)))


AUDIT_CSV_HEADER = [
    "id",
    "created_at",
    "actor_id",
    "actor_email",
    "action",
    "target_type",
    "target_id",
    "before",
    "after",
    "ip_address",
]


def audit_rows(session: Session, filters: AuditFilters) -> Iterator[list[Any]]:
    """Every matching entry, oldest first, as CSV rows (read in batches, not all at once)."""
    query = _audit_query(filters).order_by(AuditEntry.created_at, AuditEntry.id)
    for entry, actor in session.execute(query.execution_options(yield_per=500)):
        yield [
            entry.id,
            entry.created_at.isoformat(),
            entry.actor_id or "",
            actor.email if actor is not None else "",
            entry.action,
            entry.target_type,
            entry.target_id or "",
            entry.before or "",
            entry.after or "",
            entry.ip_address or "",
        ]


# --- finding members ---------------------------------------------------------------------------


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _start_of(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=utcnow().tzinfo)


@dataclass(frozen=True)
class MemberFilters:
    query: str = ""
    state: MembershipState | None = None
    tier_id: int | None = None
    currency: str = ""
    joined_from: date | None = None
    joined_to: date | None = None


@dataclass
class MemberRow:
    member: Member
    state: MembershipState
    tier: Tier | None
    currency: str | None


@dataclass
class MemberPage:
    rows: list[MemberRow]
    page: int
    pages: int
    total: int


# States whose stored value a current comp replaces (see billing.rules.membership_state).
COMP_BEATS = (MembershipState.NONE, MembershipState.ENDED, MembershipState.LAPSED)


def _member_query(filters: MemberFilters, now: datetime) -> Select[Any]:
    """Members with their current subscription (the live one, else the latest) and price.

    The state filter uses the state stored at the subscription's last sync (what the reports
    use too); the list shows the state computed now.
    """
    current_id = (
        select(Subscription.id)
        .where(Subscription.member_id == Member.id)
        .order_by(Subscription.live.desc(), Subscription.id.desc())
        .limit(1)
        .correlate(Member)
        .scalar_subquery()
    )
    comp_now = and_(
        Comp.member_id == Member.id,
        Comp.starts_at <= now,
        Comp.ends_at > now,
        Comp.ended_early_at.is_(None),
    )
    has_comp = exists().where(comp_now)
    query = (
        select(Member, Subscription)
        .outerjoin(Subscription, Subscription.id == current_id)
        .outerjoin(Price, Price.id == Subscription.price_id)
        .where(Member.deleted_at.is_(None))
    )
    if filters.query:
        pattern = f"%{_escape_like(filters.query.strip().lower())}%"
        query = query.where(
            or_(
                func.lower(Member.email).like(pattern, escape="\\"),
                func.lower(Member.display_name).like(pattern, escape="\\"),
            )
        )
    stored = func.coalesce(Subscription.state, MembershipState.NONE.value)
    if filters.state is MembershipState.COMPED:
        query = query.where(has_comp, stored.in_([s.value for s in COMP_BEATS]))
    elif filters.state in COMP_BEATS:
        query = query.where(stored == filters.state.value, ~has_comp)  # type: ignore[union-attr]
    elif filters.state is not None:
        query = query.where(Subscription.state == filters.state)
    if filters.tier_id is not None:
        comp_tier = exists().where(comp_now, Comp.tier_id == filters.tier_id)
        query = query.where(or_(Price.tier_id == filters.tier_id, comp_tier))
    if filters.currency:
        query = query.where(Price.currency == filters.currency.upper())
    if filters.joined_from:
        query = query.where(Member.created_at >= _start_of(filters.joined_from))
    if filters.joined_to:
        query = query.where(Member.created_at < _start_of(filters.joined_to + timedelta(days=1)))
    return query


def search_members(
    session: Session, filters: MemberFilters, page: int, now: datetime | None = None
) -> MemberPage:
    """One page (50) of the members matching ``filters``, newest first.

    Two queries (a count, then the page) and one for the comps of that page: never all members.
    """
    if filters.joined_from and filters.joined_to and filters.joined_to < filters.joined_from:
        raise StaffError("The end date is before the start date.", "joined_to")
    now = now or utcnow()
    query = _member_query(filters, now)
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    pages = max(1, -(-total // PER_PAGE))
    if page < 1 or page > pages:
        raise StaffError("There is no such page.", "page")
    found = session.execute(
        query.options(joinedload(Subscription.price).joinedload(Price.tier))
        .order_by(Member.created_at.desc(), Member.id.desc())
        .limit(PER_PAGE)
        .offset((page - 1) * PER_PAGE)
    ).all()
    comps = sync.current_comps(session, [m.id for m, _ in found], now)
    # The tiers of the comps on this page in one query (``comp.tier`` would ask once per tier).
    comp_tier_ids = {comp.tier_id for comp in comps.values()}
    comp_tiers = (
        {t.id: t for t in session.scalars(select(Tier).where(Tier.id.in_(comp_tier_ids)))}
        if comp_tier_ids
        else {}
    )
    rows = []
    for member, subscription in found:
        comp = comps.get(member.id)
        state = sync.state_of(subscription, now, comp.ends_at if comp else None)
        tier = subscription.price.tier if subscription is not None else None
        if state is MembershipState.COMPED and comp is not None:
            tier = comp_tiers[comp.tier_id]
        currency = subscription.price.currency if subscription is not None else None
        rows.append(MemberRow(member=member, state=state, tier=tier, currency=currency))
    return MemberPage(rows=rows, page=page, pages=pages, total=total)


@dataclass
class VoteLine:
    topic_title: str
    created_at: datetime


@dataclass
class MemberDetail:
    member: Member
    state: MembershipState
    perks: perk_rules.MemberPerks
    comps: list[Comp]
    current_comp: Comp | None
    events: list[MembershipEvent]
    subscriptions: list[Subscription]
    payments: list[Payment]
    refunds: dict[int, list[Refund]] = field(default_factory=dict)
    votes: list[VoteLine] = field(default_factory=list)
    emails: list[OutboundEmail] = field(default_factory=list)


def member_detail(session: Session, member: Member, now: datetime | None = None) -> MemberDetail:
    """Everything staff need to see about one member."""
    now = now or utcnow()
    comp = sync.current_comps(session, [member.id], now).get(member.id)
    subscription = billing.current_subscription(session, member)
    payments = list(
        session.scalars(
            select(Payment).where(Payment.member_id == member.id).order_by(Payment.id.desc())
        )
    )
    refunds: dict[int, list[Refund]] = {}
    if payments:
        for refund in session.scalars(
            select(Refund)
            .where(Refund.payment_id.in_([p.id for p in payments]))
            .order_by(Refund.id)
        ):
            refunds.setdefault(refund.payment_id, []).append(refund)
    votes = [
        VoteLine(topic_title=title, created_at=created)
        for title, created in session.execute(
            select(Topic.title, Vote.created_at)
            .join(Topic, Topic.id == Vote.topic_id)
            .where(Vote.member_id == member.id)
            .order_by(Vote.created_at.desc())
        )
    ]
    return MemberDetail(
        member=member,
        state=sync.state_of(subscription, now, comp.ends_at if comp else None),
        perks=perks.perks_for(session, member, now=now),
        comps=list(
            session.scalars(
                select(Comp)
                .where(Comp.member_id == member.id)
                .options(joinedload(Comp.tier))  # each row names its tier
                .order_by(Comp.id.desc())
            )
        ),
        current_comp=comp,
        events=list(
            session.scalars(
                select(MembershipEvent)
                .where(MembershipEvent.member_id == member.id)
                .order_by(MembershipEvent.created_at.desc(), MembershipEvent.id.desc())
            )
        ),
        subscriptions=list(
            session.scalars(
                select(Subscription)
                .where(Subscription.member_id == member.id)
                .options(joinedload(Subscription.price).joinedload(Price.tier))
                .order_by(Subscription.id.desc())
            )
        ),
        payments=payments,
        refunds=refunds,
        votes=votes,
        emails=list(
            session.scalars(
                select(OutboundEmail)
                .where(OutboundEmail.member_id == member.id)
                .order_by(OutboundEmail.created_at.desc(), OutboundEmail.id.desc())
            )
        ),
    )


def live_member(session: Session, member_id: int) -> Member | None:
    """A member staff may act on: not deleted."""
    member = session.get(Member, member_id)
    return member if member is not None and member.deleted_at is None else None


# --- comps -------------------------------------------------------------------------------------


def _comp_json(comp: Comp) -> dict[str, Any]:
    return {
        "tier_id": comp.tier_id,
        "starts_at": comp.starts_at,
        "ends_at": comp.ends_at,
        "reason": comp.reason,
        "ended_early_at": comp.ended_early_at,
    }


def _comp_event(
    session: Session,
    member: Member,
    from_state: MembershipState,
    to_state: MembershipState,
    reason: str,
    currency: str,
) -> None:
    if from_state == to_state:
        return
    session.add(
        MembershipEvent(
            member_id=member.id,
            from_state=from_state,
            to_state=to_state,
            reason=reason[:200],
            mrr_delta=0,  # a comp brings no money in, and takes none away
            currency=currency,
        )
    )


def grant_comp(
    session: Session,
    actor: Member,
    member: Member,
    *,
    tier_id: int,
    ends_on: date,
    reason: str,
    currency: str,
    ip: str | None,
    now: datetime | None = None,
) -> Comp:
    """Give a member a tier's perks without payment until ``ends_on`` (end of that day, UTC)."""
    now = now or utcnow()
    problem = rules.comp_end_problem(now.date(), ends_on)
    if problem:
        raise StaffError(problem, "ends_on")
    reason = reason.strip()
    if not reason:
        raise StaffError("Say why this member gets a comp.", "reason")
    tier = session.get(Tier, tier_id)
    if tier is None:
        raise StaffError("Choose a tier.", "tier")
    before = billing.membership_state(session, member)
    comp = Comp(
        member_id=member.id,
        tier_id=tier.id,
        starts_at=now,
        ends_at=_start_of(ends_on + timedelta(days=1)),
        reason=reason[:500],
        granted_by_id=actor.id,
    )
    session.add(comp)
    session.flush()
    after = billing.membership_state(session, member)
    _comp_event(session, member, before, after, f"comp granted: {reason}", currency)
    record(
        session,
        actor,
        "comp.grant",
        "member",
        member.id,
        {"state": before.value},
        {"state": after.value, "comp_id": comp.id, **_comp_json(comp)},
        ip,
    )
    return comp


def end_comp(
    session: Session,
    actor: Member,
    comp: Comp,
    *,
    currency: str,
    ip: str | None,
    now: datetime | None = None,
) -> Comp:
    """End a comp now, before its date."""
    now = now or utcnow()
    if comp.ended_early_at is not None or comp.ends_at <= now:
        raise StaffError("This comp has already ended.")
    member = comp.member
    before_state = billing.membership_state(session, member)
    before = _comp_json(comp)
    comp.ended_early_at = now
    session.flush()
    after_state = billing.membership_state(session, member)
    if before_state is MembershipState.COMPED:
        _comp_event(session, member, before_state, after_state, "comp ended early", currency)
    record(
        session,
        actor,
        "comp.end",
        "comp",
        comp.id,
        {**before, "state": before_state.value},
        {**_comp_json(comp), "state": after_state.value},
        ip,
    )
    return comp


# --- refunds -----------------------------------------------------------------------------------


def refundable(payment: Payment) -> int:
    """What is left to refund of a payment, in minor units."""
    if payment.status is not PaymentStatus.SUCCEEDED or not payment.stripe_payment_intent_id:
        return 0
    return payment.amount - payment.amount_refunded


def refund_payment(
    session: Session,
    gateway: StripeGateway,
    actor: Member,
    payment: Payment,
    amount_text: str,
    *,
    ip: str | None,
) -> Refund:
    """Refund all or part of a payment through Stripe, and record the refund.

    Refused before any call to Stripe if the amount is not a number, not above zero, or more
    than what is left to refund. Gateway errors propagate: the caller rolls back.
    """
    left = refundable(payment)
    if left <= 0:
        raise StaffError("Nothing is left to refund on this payment.", "amount")
    try:
        amount = parse_amount(amount_text, payment.currency)
    except AmountError as error:
        raise StaffError(str(error), "amount") from error
    if amount > left:
        raise StaffError(
            f"At most {format_money(left, payment.currency)} is left to refund.", "amount"
        )
    before = {"amount_refunded": payment.amount_refunded}
    data = gateway.refund(
        payment.stripe_payment_intent_id or "",
        amount,
        # The same refund submitted twice (a double click) is made once by Stripe.
        idempotency_key=f"staff-refund-{payment.id}-{payment.amount_refunded}-{amount}",
    )
    refund = sync.record_refund(session, payment, data)
    if refund is None:
        raise StaffError("Stripe did not make the refund.", "amount")
    record(
        session,
        actor,
        "payment.refund",
        "payment",
        payment.id,
        before,
        {
            "amount_refunded": payment.amount_refunded,
            "refund": amount,
            "currency": payment.currency,
            "stripe_refund_id": refund.stripe_refund_id,
        },
        ip,
    )
    return refund


# --- account actions ---------------------------------------------------------------------------


def resend_confirmation(session: Session, actor: Member, member: Member, *, ip: str | None) -> None:
    """Email the member a new confirmation link."""
    if member.email_confirmed:
        raise StaffError("This member has already confirmed their email address.")
    accounts.send_confirmation(session, member)
    record(session, actor, "member.resend_confirmation", "member", member.id, None, None, ip)


def delete_member(
    session: Session, gateway: StripeGateway, actor: Member, member: Member, *, ip: str | None
) -> None:
    """GDPR erasure on the member's request: stop billing, then remove their personal data."""
    if member.id == actor.id:
        raise StaffError("Delete your own account from your account page.")
    if member.role is Role.ADMIN:
        raise StaffError("Remove the admin role before deleting this account.")
    before = {"role": member.role.value, "deleted_at": None}
    billing.stop_billing(session, gateway, member)
    accounts.anonymise(session, member)
    session.flush()
    after = {"role": member.role.value, "deleted_at": member.deleted_at}
    record(session, actor, "member.delete", "member", member.id, before, after, ip)


# --- the team (admins) -------------------------------------------------------------------------


def team(session: Session) -> list[Member]:
    return list(
        session.scalars(
            select(Member)
            .where(Member.role.in_([Role.STAFF, Role.ADMIN]), Member.deleted_at.is_(None))
            .order_by(Member.role, Member.email)
        )
    )


def set_role(
    session: Session, actor: Member, member: Member, role: Role, *, ip: str | None
) -> Member:
    """Give a member a role (reader, staff, admin), within the team rules."""
    admins = session.scalar(
        select(func.count())
        .select_from(Member)
        .where(Member.role == Role.ADMIN, Member.deleted_at.is_(None))
    )
    problem = rules.role_change_problem(
        actor_id=actor.id,
        member_id=member.id,
        current=member.role,
        new=role,
        admins=admins or 0,
    )
    if problem:
        raise StaffError(problem)
    before = {"role": member.role.value}
    member.role = role
    session.flush()
    record(session, actor, "member.role", "member", member.id, before, {"role": role.value}, ip)
    return member


def grant_role_by_email(
    session: Session, actor: Member, email: str, role: Role, *, ip: str | None
) -> Member:
    member = accounts.find_by_email(session, email.strip().lower())
    if member is None or member.deleted_at is not None:
        raise StaffError("No account has this email address: ask them to sign up first.", "email")
    return set_role(session, actor, member, role, ip=ip)


# --- tiers (audited wrapper around billing) ----------------------------------------------------


def _tier_json(tier: Tier | None) -> dict[str, Any] | None:
    if tier is None:
        return None
    return {
        "slug": tier.slug,
        "name": tier.name,
        "description": tier.description,
        "position": tier.position,
        "trial_days": tier.trial_days,
        "active": tier.active,
        "prices": sorted(
            f"{p.interval.value} {p.currency} {p.amount}" for p in tier.prices if p.listed
        ),
    }


def save_tier(
    session: Session,
    actor: Member,
    existing: Tier | None,
    fields: billing.TierFields,
    prices: dict[tuple[billing_rules.Interval, str], int],
    *,
    slug: str,
    ip: str | None,
) -> Tier:
    """billing.save_tier, with its audit entry."""
    before = _tier_json(existing)
    tier = billing.save_tier(session, existing, fields, prices, slug=slug)
    session.flush()
    session.refresh(tier, ["prices"])
    action = "tier.create" if existing is None else "tier.update"
    record(session, actor, action, "tier", tier.id, before, _tier_json(tier), ip)
    return tier
