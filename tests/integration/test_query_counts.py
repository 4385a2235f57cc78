"""No wasted queries: each main page, and the member API, sends the same small number of SQL
statements whether there are 2 or 30 of the things it lists.

Every test builds real data at two sizes (SIZES), asks for the page once at each and compares
what the app sent to the database during that one request (tests/support/queries.py; savepoints
are left out). A count that grows with the data is an N+1: a query per row listed. The budget
below is what each page costs today; a change that makes a page dearer has to raise it here, in
the open. Counts are the same on SQLite and PostgreSQL.

Each page is asked for twice and the second request is counted: a first visit may write once
(the API key's ``last_used_at``, for example), which is not what every later visit costs.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from datetime import timedelta
from typing import Any
from urllib.parse import quote

import pytest
from flask import Flask
from sqlalchemy.engine import Engine

from membership.accounts.models import Member, Role
from membership.api import service as api
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
from membership.database import utcnow
from membership.emails import EmailStatus, OutboundEmail
from membership.extensions import db
from membership.perks.models import Grant, Perk, PerkKind, Post, TierPerk, WallEntry
from membership.staff.models import AuditEntry, Comp
from membership.voting.models import Ballot, Round, Topic, TopicStatus, TopicStatusChange, Vote
from tests.integration.perks_support import add_demo_perks, add_demo_tiers, make_patron
from tests.support.queries import Queries, count_queries

SIZES = (2, 30)

# Statements per request, the same at both sizes: the budget of each page. Logged-in pages
# start with the one that loads the member from their login session.
BUDGET = {
    "home": 1,  # the member
    "support": 1,  # tiers with their prices
    "vote": 13,  # rounds (every phase at once), perks, counts, my votes, ballot, topics
    "round": 12,  # the ballot of one round for a patron: as /vote without the lists
    "topic": 9,  # topic, round, counts (voters' perks: the round drops lapsed votes), history
    "covered": 4,  # closed rounds, all their topics, the one unfrozen round's counts
    "membership": 7,  # subscription (price, tier), payments, plans, comps, perks, wall and feed
    "updates": 6,  # perks of the reader, posts, their tiers
    "update": 6,
    "supporters": 5,  # wall entries, their members' perks, tier names
    "api": 5,  # key, member, subscription (price, tier), comps, the perks of every tier
    "staff_members": 6,  # tiers for the filter, count, page, comps and their tiers
    "staff_member": 14,  # one query per section of the member's history
    "staff_round": 7,  # counts, topics, proposals with their proposers, voters
    "staff_reports": 12,  # one query per table (and per chart series)
    "staff_audit": 4,  # actions for the filter, count, page with actors
}

_ids = itertools.count(1)


# --- measuring ---------------------------------------------------------------------------------


@pytest.fixture
def engine(app: Flask) -> Engine:
    with app.app_context():
        return db.engine


@pytest.fixture
def cost(engine: Engine, client: Any) -> Callable[..., Queries]:
    """The statements one GET of ``url`` sends (asked twice, the second one counted).

    ``shows=(text, n)``: the page shows ``text`` at least ``n`` times, so a cheap page is not
    cheap for leaving the rows out.
    """

    def measure(url: str, shows: tuple[str, int] | None = None, **kwargs: Any) -> Queries:
        assert client.get(url, **kwargs).status_code == 200
        with count_queries(engine) as queries:
            response = client.get(url, **kwargs)
        page = response.get_data(as_text=True)
        assert response.status_code == 200, page[:500]
        if shows is not None:
            text, times = shows
            assert page.count(text) >= times, f"{url} shows {text!r} {page.count(text)} times"
        return queries

    return measure


def within_budget(page: str, measured: list[Queries]) -> None:
    """The same count at every size, and no more than the page's budget."""
    small, large = measured
    assert len(small) == len(large), (
        f"{page}: {len(small)} statements with {SIZES[0]}, {len(large)} with {SIZES[1]} "
        f"(a query per row?)\n--- small\n{small.report()}\n--- large\n{large.report()}"
    )
    assert len(large) <= BUDGET[page], f"{page}: over budget\n{large.report()}"


# --- data --------------------------------------------------------------------------------------


@pytest.fixture
def tiers(db_session: Any) -> dict[str, Tier]:
    """Reader, Insider, Co-creator with prices, and the demo perks (votes, wall, posts...)."""
    made = add_demo_tiers(db_session)
    add_demo_perks(db_session)
    return made


@pytest.fixture
def patron(db_session: Any, make_member: Any, login: Any, tiers: dict[str, Tier]) -> Member:
    """A logged-in Co-creator: every demo perk, five votes a round."""
    member = make_member("viewer@example.org", display_name="Vera Viewer")
    make_patron(db_session, member, tiers["co-creator"])
    login(member)
    return member


@pytest.fixture
def staff(make_member: Any, login: Any) -> Member:
    member = make_member("staffer@example.org", role=Role.STAFF, display_name="Sam Staff")
    login(member)
    return member


def add_patrons(db_session: Any, make_member: Any, tier: Tier, n: int) -> list[Member]:
    members = []
    for _ in range(n):
        member = make_member(f"patron{next(_ids)}@example.org", display_name="A Patron")
        make_patron(db_session, member, tier)
        members.append(member)
    return members


def add_voters(
    db_session: Any, make_member: Any, tier: Tier, round_: Round, topics: list[Topic], n: int
) -> None:
    """``n`` patrons, each voting for two of the topics."""
    for i, voter in enumerate(add_patrons(db_session, make_member, tier, n)):
        ballot = Ballot(round_id=round_.id, member_id=voter.id, budget=5, used=2)
        db_session.add(ballot)
        db_session.flush()
        for topic in {topics[i % len(topics)], topics[(i + 1) % len(topics)]}:
            db_session.add(Vote(ballot_id=ballot.id, topic_id=topic.id, member_id=voter.id))
    db_session.commit()


def add_round(db_session: Any, **values: Any) -> Round:
    now = utcnow()
    values.setdefault("opens_at", now - timedelta(days=1))
    values.setdefault("closes_at", now + timedelta(days=7))
    round_ = Round(title=f"Round {next(_ids)}", description="What next?", **values)
    db_session.add(round_)
    db_session.commit()
    return round_


def add_topics(
    db_session: Any,
    round_: Round,
    n: int,
    status: TopicStatus = TopicStatus.APPROVED,
    **values: Any,
) -> list[Topic]:
    topics = [
        Topic(round_id=round_.id, title=f"Topic {next(_ids)}", why="Because.", status=status)
        for _ in range(n)
    ]
    for topic in topics:
        for name, value in values.items():
            setattr(topic, name, value)
    db_session.add_all(topics)
    db_session.commit()
    return topics


def add_payments(db_session: Any, member: Member, subscription: Subscription, n: int) -> None:
    for k in range(n):
        payment = Payment(
            member_id=member.id,
            subscription_id=subscription.id,
            kind=PaymentKind.SUBSCRIPTION if k % 3 else PaymentKind.DONATION,
            status=PaymentStatus.SUCCEEDED if k % 4 else PaymentStatus.FAILED,
            amount=1500,
            amount_refunded=500 if k % 5 == 1 else 0,
            currency="EUR",
            stripe_invoice_id=f"in_counts_{next(_ids)}",
            paid_at=utcnow() - timedelta(days=k),
        )
        db_session.add(payment)
        if payment.amount_refunded:
            db_session.flush()
            db_session.add(
                Refund(
                    payment_id=payment.id,
                    amount=500,
                    currency="EUR",
                    stripe_refund_id=f"re_counts_{next(_ids)}",
                )
            )
    db_session.commit()


def add_flag_perks(db_session: Any, tier: Tier, n: int) -> None:
    for _ in range(n):
        number = next(_ids)
        perk = Perk(key=f"extra_{number}", name=f"Extra {number}", kind=PerkKind.FLAG)
        db_session.add(perk)
        db_session.flush()
        db_session.add(TierPerk(tier_id=tier.id, perk_id=perk.id, grant=Grant.GRANT))
    db_session.commit()


# --- public pages ------------------------------------------------------------------------------


def test_the_home_page_costs_the_same_however_many_patrons(
    cost, patron, db_session, make_member, tiers
):
    measured = []
    for size in SIZES:
        add_patrons(db_session, make_member, tiers["reader"], size - len(measured) * SIZES[0])
        measured.append(cost("/"))
    within_budget("home", measured)


def test_the_support_page_costs_the_same_however_many_tiers_and_prices(cost, db_session, tiers):
    measured = []
    made = 0
    for size in SIZES:
        while made < size:
            number = next(_ids)
            tier = Tier(slug=f"tier-{number}", name=f"Tier {number}", position=10 + number)
            db_session.add(tier)
            db_session.flush()
            for interval in Interval:
                for currency in ("EUR", "USD", "GBP"):
                    db_session.add(
                        Price(
                            tier_id=tier.id,
                            interval=interval,
                            currency=currency,
                            amount=700 + number,
                            stripe_plan_id=f"plan-counts-{number}-{interval}-{currency}",
                        )
                    )
            made += 1
        db_session.commit()
        measured.append(cost("/support"))
    within_budget("support", measured)


@pytest.fixture
def ballot(db_session, make_member, tiers, patron) -> Callable[[int], tuple[Round, list[Topic]]]:
    """An open round (counts live; lapsed patrons' votes not counted) that grows: ``n`` topics
    on the ballot, ``n`` pending proposals by the viewer, ``n`` patrons voting twice each; the
    viewer votes for two topics."""
    round_ = add_round(db_session, results_live=True, drop_votes_of_lapsed=True)
    topics: list[Topic] = []

    def grow(n: int) -> tuple[Round, list[Topic]]:
        more = n - len(topics)
        new = add_topics(db_session, round_, more)
        topics.extend(new)
        add_topics(db_session, round_, more, TopicStatus.PENDING, proposer_id=patron.id)
        add_voters(db_session, make_member, tiers["insider"], round_, new, more)
        if len(topics) == more:  # the first time: the viewer's own ballot
            mine = Ballot(round_id=round_.id, member_id=patron.id, budget=5, used=2)
            db_session.add(mine)
            db_session.flush()
            for topic in topics[:2]:
                db_session.add(Vote(ballot_id=mine.id, topic_id=topic.id, member_id=patron.id))
            db_session.commit()
        return round_, topics

    return grow


def test_the_ballot_costs_the_same_however_many_topics_and_votes(cost, ballot, db_session):
    add_round(  # coming soon: listed, not counted
        db_session,
        opens_at=utcnow() + timedelta(days=1),
        closes_at=utcnow() + timedelta(days=8),
    )
    measured = []
    for size in SIZES:
        ballot(size)
        measured.append(cost("/vote", shows=("/vote/topics/", size)))
    within_budget("vote", measured)


def test_a_round_page_costs_the_same_however_many_topics_and_votes(cost, ballot):
    measured = []
    for size in SIZES:
        round_, _ = ballot(size)
        measured.append(cost(f"/vote/rounds/{round_.id}", shows=("/vote/topics/", size)))
    within_budget("round", measured)


def test_a_topic_page_costs_the_same_however_long_its_history_and_how_many_votes(
    cost, ballot, db_session, make_member
):
    editor = make_member("editor@example.org", role=Role.STAFF)
    measured = []
    for size in SIZES:
        _, topics = ballot(size)
        topic = topics[0]
        while len(topic.history) < size:
            db_session.add(
                TopicStatusChange(
                    topic_id=topic.id,
                    from_status=TopicStatus.PENDING,
                    to_status=TopicStatus.APPROVED,
                    note="Looked again",
                    actor_id=editor.id,
                )
            )
            db_session.commit()
            db_session.refresh(topic)
        measured.append(cost(f"/vote/topics/{topic.id}"))
    within_budget("topic", measured)


def test_you_asked_we_covered_costs_the_same_however_many_closed_rounds(cost, db_session, patron):
    now = utcnow()
    # One round whose closing time passed before ``voting close-due`` froze it (it runs every
    # few minutes, so there are hardly ever more): its counts are read live.
    unfrozen = add_round(db_session, opens_at=now - timedelta(days=9), closes_at=now)
    add_topics(db_session, unfrozen, 2)
    measured = []
    made = 0
    for size in SIZES:
        while made < size:
            closed = now - timedelta(days=made + 1)
            round_ = add_round(
                db_session,
                opens_at=closed - timedelta(days=7),
                closes_at=closed,
                closed_at=closed,
            )
            add_topics(
                db_session,
                round_,
                1,
                TopicStatus.PUBLISHED,
                final_votes=9,
                story_url="https://example.org/story",
            )
            add_topics(db_session, round_, 1, TopicStatus.PLANNED, final_votes=4)
            add_topics(db_session, round_, 1, TopicStatus.APPROVED, final_votes=1)
            made += 1
        measured.append(cost("/vote/covered", shows=("read the story", size)))
    within_budget("covered", measured)


def test_my_membership_costs_the_same_however_many_payments_and_perks(
    cost, db_session, patron, tiers
):
    subscription = db_session.query(Subscription).filter_by(member_id=patron.id).one()
    db_session.add(WallEntry(member_id=patron.id, display_name="Vera", show_tier=True))
    db_session.commit()
    measured = []
    for size in SIZES:
        add_payments(db_session, patron, subscription, size - len(measured) * SIZES[0])
        add_flag_perks(db_session, tiers["insider"], size - len(measured) * SIZES[0])
        measured.append(cost("/membership", shows=("Receipt</a>", size * 3 // 4)))
    within_budget("membership", measured)


def add_posts(db_session: Any, tiers: dict[str, Tier], n: int) -> list[Post]:
    posts = []
    for k in range(n):
        number = next(_ids)
        post = Post(
            slug=f"update-{number}",
            title=f"Update {number}",
            teaser="News from the newsroom.",
            body_markdown="Hello",
            body_html="<p>Hello</p>",
            all_patrons=k % 2 == 0,
            published_at=utcnow() - timedelta(hours=number),
        )
        if not post.all_patrons:
            post.tiers = [tiers["insider"], tiers["co-creator"]]
        posts.append(post)
    db_session.add_all(posts)
    db_session.commit()
    return posts


def test_the_updates_page_costs_the_same_however_many_posts(cost, db_session, patron, tiers):
    measured = []
    for size in SIZES:
        add_posts(db_session, tiers, size - len(measured) * SIZES[0])
        measured.append(cost("/updates", shows=("/updates/update-", size)))
    within_budget("updates", measured)


def test_an_update_costs_the_same_however_many_posts_and_perks(cost, db_session, patron, tiers):
    measured = []
    for size in SIZES:
        posts = add_posts(db_session, tiers, size - len(measured) * SIZES[0])
        add_flag_perks(db_session, tiers["reader"], size - len(measured) * SIZES[0])
        measured.append(cost(f"/updates/{posts[-1].slug}"))
    within_budget("update", measured)


def test_the_supporters_wall_costs_the_same_however_many_supporters(
    cost, db_session, make_member, tiers
):
    tier_cycle = itertools.cycle(tiers.values())
    measured = []
    for size in SIZES:
        for _ in range(size - len(measured) * SIZES[0]):
            (member,) = add_patrons(db_session, make_member, next(tier_cycle), 1)
            db_session.add(
                WallEntry(
                    member_id=member.id,
                    display_name=f"Supporter {member.id}",
                    show_tier=member.id % 2 == 0,
                )
            )
        db_session.commit()
        measured.append(cost("/supporters", shows=("Supporter ", size)))
    within_budget("supporters", measured)


# --- the member API ----------------------------------------------------------------------------


def test_the_member_api_costs_the_same_however_much_a_member_has(
    cost, app, db_session, make_member, tiers
):
    with app.app_context():
        secret = api.create_key(db.session, "main site").secret
        db.session.commit()
    headers = {"Authorization": f"Bearer {secret}"}
    measured = []
    for size in SIZES:
        member = make_member()
        old = make_patron(db_session, member, tiers["reader"])
        old.status, old.live, old.ended_at = SubscriptionStatus.CANCELED, False, utcnow()
        db_session.commit()
        current = make_patron(db_session, member, tiers["co-creator"])
        add_payments(db_session, member, current, size)
        add_flag_perks(db_session, tiers["co-creator"], size - len(measured) * SIZES[0])
        url = f"/api/v1/members/{quote(member.email, safe='@')}"
        measured.append(cost(url, headers=headers))
    within_budget("api", measured)


# --- staff pages -------------------------------------------------------------------------------


def test_the_member_list_costs_the_same_however_many_members(
    cost, db_session, make_member, tiers, staff
):
    """Members with and without memberships, in each tier and currency, some comped."""
    tier_list = list(tiers.values())
    measured = []
    made = 0
    for size in SIZES:
        while made < size:
            tier = tier_list[made % 3]
            member = make_member(f"listed{next(_ids)}@example.org", display_name="Listed")
            if made % 3 != 1:
                price = tier.listed_price(Interval.MONTH, ("EUR", "USD", "GBP")[made % 3])
                db_session.add(
                    Subscription(
                        member_id=member.id,
                        price_id=price.id,
                        stripe_subscription_id=f"sub_counts_{next(_ids)}",
                        status=SubscriptionStatus.ACTIVE,
                        state=MembershipState.ACTIVE,
                        current_period_end=utcnow() + timedelta(days=20),
                    )
                )
            else:  # comped, each on another tier
                db_session.add(
                    Comp(
                        member_id=member.id,
                        tier_id=tier_list[(made // 3) % 3].id,
                        ends_at=utcnow() + timedelta(days=30),
                        reason="Press",
                    )
                )
            db_session.commit()
            made += 1
        measured.append(cost("/staff/members", shows=("listed", size)))
    within_budget("staff_members", measured)


def test_a_member_page_for_staff_costs_the_same_however_long_the_history(
    cost, db_session, make_member, tiers, staff
):
    """Payments and refunds, membership events, votes, emails, comps and past subscriptions."""
    tier_list = list(tiers.values())
    round_ = add_round(db_session)
    measured = []
    for size in SIZES:
        member = make_member(f"history{next(_ids)}@example.org")
        for _ in range(size):  # all Reader: the comps below name tiers not loaded otherwise
            old = make_patron(db_session, member, tiers["reader"])
            old.status, old.live, old.ended_at = SubscriptionStatus.CANCELED, False, utcnow()
        current = make_patron(db_session, member, tiers["insider"])
        add_payments(db_session, member, current, size)
        ballot = Ballot(round_id=round_.id, member_id=member.id, budget=size, used=size)
        db_session.add(ballot)
        db_session.flush()
        for topic in add_topics(db_session, round_, size):
            db_session.add(Vote(ballot_id=ballot.id, topic_id=topic.id, member_id=member.id))
        for k in range(size):
            db_session.add(
                MembershipEvent(
                    member_id=member.id,
                    subscription_id=current.id,
                    from_state=MembershipState.NONE,
                    to_state=MembershipState.ACTIVE,
                    reason="joined",
                    mrr_delta=1000,
                    currency="EUR",
                )
            )
            db_session.add(
                OutboundEmail(
                    member_id=member.id,
                    to_address=member.email,
                    template="receipt",
                    subject=f"Receipt {k}",
                    body_text="Thanks",
                    body_html="<p>Thanks</p>",
                    status=EmailStatus.SENT,
                )
            )
            db_session.add(
                Comp(
                    member_id=member.id,
                    tier_id=tier_list[k % 3].id,
                    starts_at=utcnow() - timedelta(days=40 + k),
                    ends_at=utcnow() + timedelta(days=k + 1),
                    reason="Thanks for the tip",
                    granted_by_id=staff.id,
                )
            )
        db_session.commit()
        measured.append(cost(f"/staff/members/{member.id}", shows=("Thanks for the tip", size)))
    within_budget("staff_member", measured)


def test_a_round_page_for_staff_costs_the_same_however_many_proposals_and_voters(
    cost, db_session, make_member, tiers, staff
):
    round_ = add_round(db_session, staff_see_voters=True)
    topics: list[Topic] = []
    measured = []
    for size in SIZES:
        more = size - len(topics)
        new = add_topics(db_session, round_, more)
        topics.extend(new)
        for proposer in add_patrons(db_session, make_member, tiers["insider"], more):
            add_topics(db_session, round_, 1, TopicStatus.PENDING, proposer_id=proposer.id)
        add_voters(db_session, make_member, tiers["insider"], round_, new, more)
        measured.append(
            cost(f"/staff/voting/rounds/{round_.id}", shows=("Proposed by A Patron", size))
        )
    within_budget("staff_round", measured)


def test_the_reports_cost_the_same_however_many_members_and_payments(
    cost, db_session, make_member, tiers, staff
):
    tier_list = list(tiers.values())
    round_ = add_round(db_session, opens_at=utcnow() - timedelta(days=20))
    topics = add_topics(db_session, round_, 3)
    measured = []
    for size in SIZES:
        for k, member in enumerate(
            add_patrons(db_session, make_member, tier_list[len(measured)], size)
        ):
            subscription = db_session.query(Subscription).filter_by(member_id=member.id).one()
            add_payments(db_session, member, subscription, 2)
            db_session.add(
                MembershipEvent(
                    member_id=member.id,
                    subscription_id=subscription.id,
                    from_state=MembershipState.NONE,
                    to_state=MembershipState.ACTIVE,
                    reason="joined",
                    mrr_delta=1000,
                    currency="EUR",
                    created_at=utcnow() - timedelta(days=k),
                )
            )
            ballot = Ballot(round_id=round_.id, member_id=member.id, budget=1, used=1)
            db_session.add(ballot)
            db_session.flush()
            db_session.add(
                Vote(ballot_id=ballot.id, topic_id=topics[k % 3].id, member_id=member.id)
            )
        db_session.commit()
        measured.append(cost("/staff/reports"))
    within_budget("staff_reports", measured)


def test_the_audit_log_costs_the_same_however_many_entries_and_actors(
    cost, db_session, make_member, staff
):
    measured = []
    for size in SIZES:
        for k in range(size - len(measured) * SIZES[0]):
            actor = make_member(f"actor{next(_ids)}@example.org", role=Role.STAFF)
            db_session.add(
                AuditEntry(
                    actor_id=actor.id,
                    action=f"thing.{k % 4}",
                    target_type="member",
                    target_id=str(actor.id),
                    before='{"a": 1}',
                    after='{"a": 2}',
                    ip_address="127.0.0.1",
                )
            )
        db_session.commit()
        measured.append(cost("/staff/audit", shows=("@example.org", size)))
    within_budget("staff_audit", measured)
