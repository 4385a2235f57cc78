"""Answers kept for the rest of a transaction (membership.memo) are never out of date: a page
asks once for the perks of every tier and the member's subscription, and any write in between
makes the next question go to the database again."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import select

from membership.billing import service as billing
from membership.billing.models import Tier
from membership.perks import service as perks
from membership.perks.models import Grant, Perk, PerkKind
from tests.integration.perks_support import add_demo_perks, add_demo_tiers, end, make_patron
from tests.support.queries import count_queries


@pytest.fixture(autouse=True)
def _app_context(app: Flask) -> Iterator[None]:
    with app.app_context():
        yield


def _new_flag(db_session: Any, key: str) -> Perk:
    return perks.save_perk(
        db_session,
        None,
        perks.PerkFields(
            name="Early access",
            description="",
            kind=PerkKind.FLAG,
            votes=None,
            reveal=None,
            active=True,
        ),
        key=key,
    )


def test_a_perk_staff_grant_counts_at_once_in_the_same_transaction(
    db_session: Any, make_member: Any
) -> None:
    tiers = add_demo_tiers(db_session)
    add_demo_perks(db_session)
    member = make_member("reader@example.org")
    make_patron(db_session, member, tiers["insider"])
    assert "early_access" not in perks.perks_for(db_session, member).unlocked

    flag = _new_flag(db_session, "early_access")
    perks.set_tier_decisions(db_session, flag, {tiers["insider"].id: (Grant.GRANT, None)})

    assert "early_access" in perks.perks_for(db_session, member).unlocked
    perks.set_tier_decisions(db_session, flag, {tiers["insider"].id: (Grant.WITHHOLD, None)})
    assert "early_access" not in perks.perks_for(db_session, member).unlocked


def test_a_perk_turned_off_and_a_new_tier_count_at_once(db_session: Any, make_member: Any) -> None:
    tiers = add_demo_tiers(db_session)
    add_demo_perks(db_session)
    member = make_member("reader@example.org")
    make_patron(db_session, member, tiers["co-creator"])
    before = perks.perks_for(db_session, member).keys
    wall = db_session.scalar(select(Perk).where(Perk.kind == PerkKind.WALL))
    assert wall.key in before

    wall.active = False  # not flushed yet: the next question must still see it
    assert wall.key not in perks.perks_for(db_session, member).keys
    db_session.add(Tier(slug="patron-plus", name="Patron plus", position=9))
    db_session.flush()
    assert max(perks.perk_table(db_session)) == db_session.scalar(
        select(Tier.id).where(Tier.slug == "patron-plus")
    )


def test_the_table_of_perks_is_read_once_while_nothing_is_written(
    db_session: Any, make_member: Any
) -> None:
    tiers = add_demo_tiers(db_session)
    add_demo_perks(db_session)
    member = make_member("reader@example.org")
    make_patron(db_session, member, tiers["insider"])
    perks.perks_for(db_session, member)
    with count_queries(db_session.get_bind().engine) as queries:
        perks.perks_for(db_session, member)
    # Only the comps: the subscription and the table were asked a moment ago.
    assert len(queries) == 1, queries.report()
    db_session.commit()
    db_session.refresh(member)  # the commit expired it
    with count_queries(db_session.get_bind().engine) as queries:
        perks.perks_for(db_session, member)
    assert len(queries) == 3, queries.report()  # a new transaction asks again


def test_an_ended_subscription_is_seen_at_once(db_session: Any, make_member: Any) -> None:
    tiers = add_demo_tiers(db_session)
    add_demo_perks(db_session)
    member = make_member("reader@example.org")
    subscription = make_patron(db_session, member, tiers["insider"])
    assert perks.perks_for(db_session, member).patron
    assert billing.current_subscription(db_session, member) is subscription

    end(db_session, subscription)  # commits

    assert not perks.perks_for(db_session, member).patron
    replacement = make_patron(db_session, member, tiers["reader"])
    assert billing.current_subscription(db_session, member) is replacement
    assert perks.perks_for(db_session, member).tier_slug == "reader"
