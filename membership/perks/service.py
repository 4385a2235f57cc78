"""Perk use cases. ``perks_for`` is what the dashboard, the content gate, voting and the API ask."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from membership.accounts.models import Member
from membership.billing import sync
from membership.billing.models import Subscription, Tier
from membership.perks import rules
from membership.perks.models import Grant, Perk, TierPerk


def perk_table(session: Session) -> dict[int, dict[str, rules.Unlocked]]:
    """Every tier's perks (two small queries, whatever the number of members)."""
    perks = {
        p.key: rules.PerkDef(
            key=p.key,
            name=p.name,
            kind=p.kind.value,
            description=p.description,
            votes=p.votes,
            reveal=p.reveal,
        )
        for p in session.scalars(select(Perk).where(Perk.active))
    }
    rows = session.execute(
        select(TierPerk.tier_id, Perk.key, TierPerk.grant, TierPerk.votes).join(
            Perk, Perk.id == TierPerk.perk_id
        )
    ).all()
    decisions = [
        rules.Decision(tier_id=t, perk_key=k, grant=g is Grant.GRANT, votes=v)
        for t, k, g, v in rows
    ]
    tier_ids = session.scalars(select(Tier.id).order_by(Tier.position, Tier.id)).all()
    return rules.perks_by_tier(tier_ids, perks, decisions)


def perks_for(
    session: Session,
    member: Member,
    *,
    now: datetime | None = None,
    table: dict[int, dict[str, rules.Unlocked]] | None = None,
) -> rules.MemberPerks:
    """The member's perks right now, from their membership state and tier."""
    subscription = session.scalar(
        select(Subscription)
        .where(Subscription.member_id == member.id)
        .order_by(Subscription.live.desc(), Subscription.id.desc())
        .limit(1)
    )
    state = sync.state_of(subscription, now)
    tier = subscription.price.tier if subscription is not None else None
    return rules.member_perks(
        state,
        tier.id if tier else None,
        tier.slug if tier else None,
        table if table is not None else perk_table(session),
    )
