"""Fixtures for the voting tests: a votes perk on the demo tiers, patrons, rounds and topics.

Patrons are made the way the billing sync would leave them: a live, active Subscription row on
a catalog price, so that ``perks_for`` (the one function deciding perks) says they may vote.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import pytest

from membership.billing.models import Subscription
from membership.billing.rules import Interval, MembershipState, SubscriptionStatus
from membership.database import utcnow
from membership.perks.models import Grant, Perk, PerkKind, TierPerk
from membership.voting.models import Round, Topic, TopicStatus

READER_VOTES = 3  # the Reader tier's votes per round
CO_CREATOR_VOTES = 5


def grant_votes(
    session: Any, reader: Any, co_creator: Any = None, *, votes: int = READER_VOTES
) -> Perk:
    """A votes perk: ``votes`` a round from the Reader tier up, 5 for Co-creators."""
    perk = Perk(key="votes", name="Votes on our coverage", kind=PerkKind.VOTES, votes=votes)
    session.add(perk)
    session.flush()
    session.add(TierPerk(tier_id=reader.id, perk_id=perk.id, grant=Grant.GRANT))
    if co_creator is not None:
        session.add(
            TierPerk(
                tier_id=co_creator.id, perk_id=perk.id, grant=Grant.GRANT, votes=CO_CREATOR_VOTES
            )
        )
    session.commit()
    return perk


def subscribe(session: Any, member: Any, tier: Any, *, commit: bool = True) -> Subscription:
    """A live, active monthly subscription in EUR, as the billing sync would store it."""
    price = tier.listed_price(Interval.MONTH, "EUR")
    subscription = Subscription(
        member_id=member.id,
        price_id=price.id,
        stripe_subscription_id=f"sub_voting_{uuid.uuid4().hex}",
        status=SubscriptionStatus.ACTIVE,
        live=True,
        state=MembershipState.ACTIVE,
        current_period_end=utcnow() + timedelta(days=30),
    )
    session.add(subscription)
    if commit:
        session.commit()
    return subscription


def lapse(session: Any, member: Any) -> None:
    """The member's subscription ends (canceled, no longer live)."""
    for subscription in session.query(Subscription).filter_by(member_id=member.id):
        subscription.status = SubscriptionStatus.CANCELED
        subscription.live = False
        subscription.state = MembershipState.ENDED
        subscription.ended_at = utcnow()
    session.commit()


def add_round(session: Any, *, title: str = "What should we cover next?", **values: Any) -> Round:
    now = utcnow()
    values.setdefault("opens_at", now - timedelta(days=1))
    values.setdefault("closes_at", now + timedelta(days=7))
    round_ = Round(title=title, description="", **values)
    session.add(round_)
    session.commit()
    return round_


def add_topic(
    session: Any, round_: Round, title: str, status: TopicStatus = TopicStatus.APPROVED, **kw: Any
) -> Topic:
    topic = Topic(round_id=round_.id, title=title, why="", status=status, **kw)
    session.add(topic)
    session.commit()
    return topic


@pytest.fixture
def votes_perk(db_session: Any, catalog: dict[str, Any]) -> Perk:
    return grant_votes(db_session, catalog["reader"], catalog["co-creator"])


@pytest.fixture
def make_patron(
    db_session: Any, make_member: Any, catalog: dict[str, Any], votes_perk: Perk
) -> Any:
    def make(email: str | None = None, *, tier: str = "reader", **kw: Any) -> Any:
        member = make_member(email, **kw)
        subscribe(db_session, member, catalog[tier])
        return member

    return make


@pytest.fixture
def open_round(db_session: Any) -> Round:
    """An open round with three topics on the ballot (results shown live)."""
    round_ = add_round(db_session, results_live=True)
    for title in ("Housing costs", "River pollution", "School meals"):
        add_topic(db_session, round_, title)
    return round_
