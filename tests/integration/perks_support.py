"""Helpers for the perks, posts and wall tests: the demo tiers without Stripe, the demo perks,
and patrons made by inserting a subscription row (what the webhooks would have written)."""

from __future__ import annotations

import itertools
from datetime import timedelta
from typing import Any

from sqlalchemy import select

from membership.accounts.models import Member
from membership.billing import service as billing
from membership.billing.models import Subscription, Tier
from membership.billing.rules import Interval, SubscriptionStatus
from membership.cli import DEMO_TIERS
from membership.database import utcnow
from membership.perks import demo
from membership.perks.models import Post

_ids = itertools.count(1)


def add_demo_tiers(db_session: Any) -> dict[str, Tier]:
    """Reader, Insider, Co-creator with their prices (not sent to Stripe: no test here pays)."""
    tiers = {}
    for position, (slug, name, description, prices) in enumerate(DEMO_TIERS):
        tier = Tier(slug=slug, name=name, description=description, position=position)
        db_session.add(tier)
        db_session.flush()
        for currency, (monthly, yearly) in prices.items():
            billing.set_price(db_session, tier, Interval.MONTH, currency, monthly)
            billing.set_price(db_session, tier, Interval.YEAR, currency, yearly)
        tiers[slug] = tier
    db_session.commit()
    return tiers


def add_demo_perks(db_session: Any) -> None:
    demo.seed_demo(db_session)
    db_session.commit()


def make_patron(
    db_session: Any,
    member: Member,
    tier: Tier,
    *,
    status: SubscriptionStatus = SubscriptionStatus.ACTIVE,
    **facts: Any,
) -> Subscription:
    """Give ``member`` a live subscription to ``tier`` (monthly, EUR)."""
    price = tier.listed_price(Interval.MONTH, "EUR")
    assert price is not None
    subscription = Subscription(
        member=member,
        price=price,
        stripe_subscription_id=f"sub_perks_test_{next(_ids)}_{member.id}",
        status=status,
        live=True,
        current_period_end=utcnow() + timedelta(days=20),
        **facts,
    )
    db_session.add(subscription)
    db_session.commit()
    return subscription


def lapse(db_session: Any, subscription: Subscription) -> None:
    """The renewal failed more than the grace period ago: perks stop."""
    subscription.status = SubscriptionStatus.PAST_DUE
    subscription.past_due_since = utcnow() - timedelta(days=30)
    db_session.commit()


def end(db_session: Any, subscription: Subscription) -> None:
    subscription.status = SubscriptionStatus.CANCELED
    subscription.live = False
    subscription.ended_at = utcnow()
    db_session.commit()


def post_by_slug(db_session: Any, slug: str) -> Post | None:
    db_session.expire_all()
    return db_session.scalar(select(Post).where(Post.slug == slug))
