"""Staff find members: search, filters, pages, and everything about one member."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from membership.accounts.models import Member, Role
from membership.billing.models import (
    MembershipEvent,
    Payment,
    PaymentKind,
    PaymentStatus,
    Price,
    Subscription,
    Tier,
)
from membership.billing.rules import Interval, MembershipState, SubscriptionStatus
from membership.database import utcnow
from membership.emails import OutboundEmail
from membership.staff.models import Comp
from membership.voting.models import Topic, Vote


@pytest.fixture
def staff(make_member: Any, login: Any) -> Member:
    member = make_member("staffer@example.org", role=Role.STAFF, display_name="Sam Staff")
    login(member)
    return member


@pytest.fixture
def tier(db_session: Any) -> Tier:
    tier = Tier(slug="insider", name="Insider", position=1)
    db_session.add(tier)
    db_session.flush()
    db_session.add(
        Price(
            tier=tier,
            interval=Interval.MONTH,
            currency="EUR",
            amount=1000,
            stripe_plan_id="plan-insider-eur",
        )
    )
    db_session.add(
        Price(
            tier=tier,
            interval=Interval.MONTH,
            currency="USD",
            amount=1000,
            stripe_plan_id="plan-insider-usd",
        )
    )
    db_session.commit()
    return tier


def subscribe(
    db_session: Any,
    member: Member,
    tier: Tier,
    *,
    currency: str = "EUR",
    status: SubscriptionStatus = SubscriptionStatus.ACTIVE,
    state: MembershipState = MembershipState.ACTIVE,
) -> Subscription:
    price = next(p for p in tier.prices if p.currency == currency)
    subscription = Subscription(
        member_id=member.id,
        price_id=price.id,
        stripe_subscription_id=f"sub_{member.id}",
        status=status,
        state=state,
        live=status is not SubscriptionStatus.CANCELED,
        current_period_end=utcnow() + timedelta(days=20),
    )
    db_session.add(subscription)
    db_session.commit()
    return subscription


def names(response: Any) -> str:
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_data(as_text=True)


def test_staff_find_a_member_by_part_of_their_email_or_name_whatever_the_case(
    client: Any, staff: Member, make_member: Any
) -> None:
    make_member("alice.wonder@example.org", display_name="Alice Wonder")
    make_member("bob@example.org", display_name="Bob Builder")

    by_email = names(client.get("/staff/members", query_string={"q": "ALICE.won"}))
    assert "Alice Wonder" in by_email and "Bob Builder" not in by_email
    by_name = names(client.get("/staff/members", query_string={"q": "builder"}))
    assert "Bob Builder" in by_name and "Alice Wonder" not in by_name
    nothing = names(client.get("/staff/members", query_string={"q": "%"}))
    assert "No member matches." in nothing


def test_staff_filter_members_by_state_tier_and_currency(
    client: Any, staff: Member, make_member: Any, tier: Tier, db_session: Any
) -> None:
    active = make_member("active@example.org", display_name="Active Patron")
    subscribe(db_session, active, tier, currency="EUR")
    dollars = make_member("pastdue@example.org", display_name="Late Payer")
    subscribe(
        db_session,
        dollars,
        tier,
        currency="USD",
        status=SubscriptionStatus.PAST_DUE,
        state=MembershipState.PAST_DUE,
    )
    make_member("never@example.org", display_name="Never Joined")
    comped = make_member("comped@example.org", display_name="Comped Friend")
    db_session.add(
        Comp(
            member_id=comped.id,
            tier_id=tier.id,
            ends_at=utcnow() + timedelta(days=30),
            reason="press partner",
        )
    )
    db_session.commit()

    def found(**args: str) -> str:
        return names(client.get("/staff/members", query_string=args))

    page = found(state="active")
    assert "Active Patron" in page and "Late Payer" not in page and "Comped Friend" not in page
    page = found(state="past_due")
    assert "Late Payer" in page and "Active Patron" not in page
    page = found(state="comped")
    assert "Comped Friend" in page and "Never Joined" not in page
    page = found(state="none")
    assert "Never Joined" in page and "Comped Friend" not in page and "Sam Staff" in page
    page = found(tier=str(tier.id))
    assert "Active Patron" in page and "Comped Friend" in page and "Never Joined" not in page
    page = found(currency="USD")
    assert "Late Payer" in page and "Active Patron" not in page


def test_staff_filter_members_by_the_day_they_joined(
    client: Any, staff: Member, make_member: Any, db_session: Any
) -> None:
    old = make_member("old@example.org", display_name="Old Timer")
    old.created_at = utcnow() - timedelta(days=400)
    db_session.commit()
    make_member("new@example.org", display_name="New Comer")
    today = utcnow().date()
    since = (today - timedelta(days=10)).isoformat()

    page = names(client.get("/staff/members", query_string={"joined_from": since}))
    assert "New Comer" in page and "Old Timer" not in page
    until = (today - timedelta(days=300)).isoformat()
    page = names(client.get("/staff/members", query_string={"joined_to": until}))
    assert "Old Timer" in page and "New Comer" not in page


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"joined_from": "31/01/2026"}, "Enter a date like 2026-01-31."),
        ({"joined_to": "2026-02-30"}, "Enter a date like 2026-01-31."),
        (
            {"joined_from": "2026-03-01", "joined_to": "2026-02-01"},
            "The end date is before the start date.",
        ),
        ({"state": "royalty"}, "Not a valid choice"),
        ({"tier": "abc"}, "Not a valid choice"),
    ],
)
def test_a_bad_filter_is_explained_next_to_its_field(
    client: Any, staff: Member, args: dict[str, str], message: str
) -> None:
    response = client.get("/staff/members", query_string=args)
    assert response.status_code == 400
    assert message in response.get_data(as_text=True)


def test_members_come_fifty_to_a_page_and_pages_outside_the_list_are_not_found(
    client: Any, staff: Member, db_session: Any
) -> None:
    for n in range(60):
        db_session.add(Member(email=f"many{n:02d}@example.org", display_name=f"Many {n:02d}"))
    db_session.commit()

    first = names(client.get("/staff/members", query_string={"q": "many"}))
    assert "60 members found; page 1 of 2." in first
    assert first.count("@example.org</td>") == 50
    assert 'rel="next"' in first
    second = names(client.get("/staff/members", query_string={"q": "many", "page": "2"}))
    assert second.count("@example.org</td>") == 10
    assert 'rel="prev"' in second and 'rel="next"' not in second

    assert client.get("/staff/members", query_string={"q": "many", "page": "3"}).status_code == 404
    assert client.get("/staff/members", query_string={"page": "0"}).status_code == 400
    assert client.get("/staff/members", query_string={"page": "two"}).status_code == 400


def test_the_member_page_shows_their_history_payments_votes_emails_and_perks(
    client: Any, staff: Member, make_member: Any, tier: Tier, db_session: Any
) -> None:
    from membership.perks.models import Grant, Perk, PerkKind, TierPerk
    from membership.voting.models import Round

    reader = make_member("patron@example.org", display_name="Pat Patron")
    subscription = subscribe(db_session, reader, tier)
    db_session.add(
        MembershipEvent(
            member_id=reader.id,
            subscription_id=subscription.id,
            from_state=MembershipState.NONE,
            to_state=MembershipState.ACTIVE,
            reason="joined online",
            currency="EUR",
        )
    )
    db_session.add(
        Payment(
            member_id=reader.id,
            subscription_id=subscription.id,
            kind=PaymentKind.SUBSCRIPTION,
            status=PaymentStatus.SUCCEEDED,
            amount=1000,
            currency="EUR",
            paid_at=utcnow(),
        )
    )
    db_session.add(
        OutboundEmail(
            member_id=reader.id,
            to_address=reader.email,
            template="receipt",
            subject="Your receipt from us",
            body_text="thanks",
            body_html="<p>thanks</p>",
        )
    )
    perk = Perk(key="ad_free", name="Ad-free reading", kind=PerkKind.FLAG)
    db_session.add(perk)
    db_session.flush()
    db_session.add(TierPerk(tier_id=tier.id, perk_id=perk.id, grant=Grant.GRANT))
    round_ = Round(
        title="Spring coverage",
        opens_at=utcnow() - timedelta(days=1),
        closes_at=utcnow() + timedelta(days=6),
    )
    db_session.add(round_)
    db_session.flush()
    topic = Topic(round_id=round_.id, title="Our river's pollution")
    db_session.add(topic)
    db_session.flush()
    db_session.commit()
    _vote(db_session, reader, topic)

    page = names(client.get(f"/staff/members/{reader.id}"))
    for expected in (
        "patron@example.org",
        "joined online",
        "Insider, €10 a month: active (current)",
        "€10",
        "Your receipt from us",
        "Our river&#39;s pollution",
        "ad_free",
        '<dd id="membership-state">active</dd>',
    ):
        assert expected in page, expected


def _vote(db_session: Any, member: Member, topic: Topic) -> None:
    from membership.voting.models import Ballot

    ballot = Ballot(member_id=member.id, round_id=topic.round_id, budget=1, used=1)
    db_session.add(ballot)
    db_session.flush()
    db_session.add(Vote(ballot_id=ballot.id, topic_id=topic.id, member_id=member.id))
    db_session.commit()


def test_a_member_who_does_not_exist_is_not_found(client: Any, staff: Member) -> None:
    assert client.get("/staff/members/999999").status_code == 404
