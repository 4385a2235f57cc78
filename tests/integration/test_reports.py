"""Staff reports: every metric agrees with a plain-Python computation over random rows, on
SQLite and PostgreSQL; the pages, CSV downloads and range messages work for staff."""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from membership.accounts.models import Member, Role
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
from membership.perks.models import Grant, Perk, PerkKind, TierPerk
from membership.reports import service
from membership.reports.rules import DateRange
from membership.staff.models import Comp
from membership.voting.models import Ballot, Round, Topic, Vote

BASE = datetime(2023, 12, 1, tzinfo=UTC)
PERIOD = DateRange(date(2024, 1, 1), date(2024, 4, 30))
MONTHS = [date(2024, m, 1) for m in range(1, 5)]
PRICES = [
    (Interval.MONTH, "EUR", 500),
    (Interval.YEAR, "EUR", 5_005),
    (Interval.MONTH, "USD", 333),
    (Interval.YEAR, "USD", 1_001),
    (Interval.MONTH, "JPY", 700),
    (Interval.YEAR, "JPY", 7_777),
]
MEMBERS = 5
GRACE = 7
HYPOTHESIS = settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

# Instants from Dec 2023 to May 2024, often exactly on a midnight, a month edge or 2024-02-29.
EDGES = [datetime(2024, m, 1, tzinfo=UTC) for m in range(1, 6)] + [
    datetime(2024, 2, 29, tzinfo=UTC),
    datetime(2024, 2, 29, 23, 59, 59, 999_999, tzinfo=UTC),
]
instants = st.one_of(
    st.sampled_from(EDGES),
    st.builds(
        lambda days, seconds: BASE + timedelta(days=days, seconds=seconds),
        st.integers(0, 180),
        st.sampled_from([0, 1, 43_200, 86_399]),
    ),
)


@dataclass
class Sub:
    member: int
    price: int
    start: datetime
    end: datetime | None
    status: SubscriptionStatus
    paid_once: bool


subs = st.builds(
    lambda member, price, start, length, status, paid: Sub(
        member,
        price,
        start,
        None if length is None else start + timedelta(hours=length),
        status,
        paid,
    ),
    st.integers(0, MEMBERS - 1),
    st.integers(0, len(PRICES) - 1),
    instants,
    st.one_of(st.none(), st.integers(1, 24 * 100), st.sampled_from([24 * 29, 24 * 31])),
    st.sampled_from(list(SubscriptionStatus)),
    st.booleans(),
)
payments = st.tuples(
    st.sampled_from(list(PaymentKind)),
    st.sampled_from(list(PaymentStatus)),
    st.integers(1, 10_000),
    st.sampled_from(["EUR", "USD", "JPY"]),
    instants,
    st.lists(st.tuples(st.integers(1, 10_000), instants), max_size=2),
)
# A failed renewal, then perhaps a move out of past due some hours later (on the grace edge too).
events = st.tuples(
    st.integers(0, MEMBERS - 1),
    instants,
    st.one_of(st.none(), st.sampled_from([0, 1, 24 * 6, 24 * GRACE, 24 * GRACE + 1, 24 * 20])),
    st.sampled_from(["recover", "lapse"]),
)


@pytest.fixture
def world(db_session: Any) -> dict[str, Any]:
    """Members, a tier with monthly and yearly prices in EUR, USD and JPY, and a voting round."""
    members = [
        Member(email=f"patron{i}@example.org", display_name=f"Patron {i}", role=Role.READER)
        for i in range(MEMBERS)
    ]
    tier = Tier(slug="reports", name="Reports")
    db_session.add_all([*members, tier])
    db_session.flush()
    prices = [
        Price(
            tier_id=tier.id,
            interval=interval,
            currency=currency,
            amount=amount,
            stripe_plan_id=f"reports-{interval}-{currency}",
            listed=False,
        )
        for interval, currency, amount in PRICES
    ]
    db_session.add_all(prices)
    db_session.flush()
    return {"members": [m.id for m in members], "prices": prices, "tier": tier.id}


def is_paid(sub: Sub) -> bool:
    if sub.status in (SubscriptionStatus.ACTIVE, SubscriptionStatus.PAST_DUE):
        return True
    return sub.status is SubscriptionStatus.CANCELED and sub.paid_once


def active(paid: list[Sub], member: int, instant: datetime) -> bool:
    return any(
        s.member == member and s.start < instant and (s.end is None or s.end >= instant)
        for s in paid
    )


def next_month(month: date) -> date:
    return date(month.year + month.month // 12, month.month % 12 + 1, 1)


def at(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def half_up_twelfth(value: int) -> int:
    return int((Decimal(value) / 12).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def insert_subscriptions(db_session: Any, world: dict[str, Any], rows: list[Sub]) -> None:
    for n, sub in enumerate(rows):
        subscription = Subscription(
            member_id=world["members"][sub.member],
            price_id=world["prices"][sub.price].id,
            stripe_subscription_id=f"sub_reports_{n}",
            status=sub.status,
            live=False,
            started_at=sub.start,
            ended_at=sub.end,
        )
        db_session.add(subscription)
        db_session.flush()
        if sub.paid_once:
            _, currency, amount = PRICES[sub.price]
            db_session.add(
                Payment(
                    member_id=subscription.member_id,
                    subscription_id=subscription.id,
                    kind=PaymentKind.SUBSCRIPTION,
                    status=PaymentStatus.SUCCEEDED,
                    amount=amount,
                    currency=currency,
                    paid_at=sub.start,
                )
            )
    db_session.flush()


def _sub(member: int, start: datetime, end: datetime | None, paid: bool = True) -> Sub:
    status = SubscriptionStatus.CANCELED if end is not None else SubscriptionStatus.ACTIVE
    return Sub(member, 0, start, end, status, paid)


JAN, FEB, MAR = (datetime(2024, m, 1, tzinfo=UTC) for m in (1, 2, 3))
# Members who leave and come back: in a later month (a churn, then a new start that is not
# "new"), in the same month (no churn), and exactly at the month edge (still a churn).
LEAVE_AND_RETURN = [
    _sub(0, JAN + timedelta(days=4), JAN + timedelta(days=19)),
    _sub(0, MAR + timedelta(days=2), None),
    _sub(1, JAN + timedelta(days=4), JAN + timedelta(days=9)),
    _sub(1, JAN + timedelta(days=14), FEB + timedelta(days=9)),
    _sub(2, JAN, FEB - timedelta(microseconds=1)),
    _sub(2, FEB, None),
]


@HYPOTHESIS
@given(rows=st.lists(subs, max_size=10))
@example(rows=LEAVE_AND_RETURN)
def test_patrons_mrr_new_churn_and_cohorts_match_a_plain_computation(
    db_session: Any, world: dict[str, Any], rows: list[Sub]
) -> None:
    nested = db_session.begin_nested()
    try:
        insert_subscriptions(db_session, world, rows)
        paid = [s for s in rows if is_paid(s)]
        members = {s.member for s in paid}

        days = service.daily(db_session, PERIOD)
        assert [d.day for d in days] == [
            PERIOD.start + timedelta(days=k) for k in range((PERIOD.end - PERIOD.start).days + 1)
        ]
        for row in days:
            end = at(row.day) + timedelta(days=1)
            assert row.patrons == sum(active(paid, m, end) for m in members), row
            sums: dict[str, list[int]] = defaultdict(lambda: [0, 0])
            for s in paid:
                if s.start < end and (s.end is None or s.end >= end):
                    interval, currency, amount = PRICES[s.price]
                    sums[currency][interval is Interval.YEAR] += amount
            expected = {c: half_up_twelfth(12 * m + y) for c, (m, y) in sums.items()}
            assert row.mrr == expected, row

        first = {m: min(s.start for s in paid if s.member == m) for m in members}
        for row in service.monthly(db_session, PERIOD):
            start, end = at(row.month), at(next_month(row.month))
            assert row.new == sum(start <= f < end for f in first.values())
            churned = {
                s.member
                for s in paid
                if s.end is not None and start <= s.end < end and not active(paid, s.member, end)
            }
            assert row.churned == len(churned)
            assert row.patrons_at_start == sum(active(paid, m, start) for m in members)
            assert row.patrons_at_end == sum(active(paid, m, end) for m in members)

        cohorts = {c.cohort: c for c in service.cohorts(db_session, PERIOD)}
        expected_cohorts: dict[date, list[int]] = defaultdict(list)
        for m, f in first.items():
            month = f.date().replace(day=1)
            if MONTHS[0] <= month <= MONTHS[-1]:
                expected_cohorts[month].append(m)
        assert set(cohorts) == set(expected_cohorts)
        for month, cohort_members in expected_cohorts.items():
            row = cohorts[month]
            assert row.size == len(cohort_members)
            later = [m for m in MONTHS if m >= month]
            assert row.retained == [
                sum(active(paid, m, at(next_month(k))) for m in cohort_members) for k in later
            ]
    finally:
        nested.rollback()


@HYPOTHESIS
@given(rows=st.lists(payments, max_size=8))
def test_net_revenue_matches_payments_minus_refunds(
    db_session: Any, world: dict[str, Any], rows: list[Any]
) -> None:
    nested = db_session.begin_nested()
    try:
        expected: dict[tuple[date, str], list[int]] = defaultdict(lambda: [0, 0])
        for n, (kind, status, amount, currency, paid_at, refunds) in enumerate(rows):
            payment = Payment(
                member_id=world["members"][n % MEMBERS],
                kind=kind,
                status=status,
                amount=amount,
                currency=currency,
                paid_at=paid_at if status is PaymentStatus.SUCCEEDED else None,
            )
            db_session.add(payment)
            db_session.flush()
            if status is PaymentStatus.SUCCEEDED:
                expected[(paid_at.date().replace(day=1), currency)][0] += amount
            for r, (refund, made_at) in enumerate(refunds):
                db_session.add(
                    Refund(
                        payment_id=payment.id,
                        amount=refund,
                        currency=currency,
                        stripe_refund_id=f"re_{n}_{r}",
                        created_at=made_at,
                    )
                )
                expected[(made_at.date().replace(day=1), currency)][1] += refund
        db_session.flush()
        got = {
            (r.month, r.currency): [r.received, r.refunded]
            for r in service.revenue(db_session, PERIOD)
        }
        assert got == {k: v for k, v in expected.items() if k[0] in MONTHS}
        for r in service.revenue(db_session, PERIOD):
            assert r.net == r.received - r.refunded
    finally:
        nested.rollback()


@HYPOTHESIS
@given(rows=st.lists(events, max_size=10))
def test_failed_payment_recovery_matches_the_event_history(
    db_session: Any, world: dict[str, Any], rows: list[Any]
) -> None:
    nested = db_session.begin_nested()
    try:
        moves = {
            "fail": (MembershipState.ACTIVE, MembershipState.PAST_DUE),
            "recover": (MembershipState.PAST_DUE, MembershipState.ACTIVE),
            "lapse": (MembershipState.PAST_DUE, MembershipState.LAPSED),
        }
        inserted = []
        plan = []
        for member, failed_at, delay, then in rows:
            plan.append((member, "fail", failed_at))
            if delay is not None:
                plan.append((member, then, failed_at + timedelta(hours=delay)))
        for member, kind, created in plan:
            event = MembershipEvent(
                member_id=world["members"][member],
                from_state=moves[kind][0],
                to_state=moves[kind][1],
                reason=kind,
                currency="EUR",
                created_at=created,
            )
            db_session.add(event)
            db_session.flush()
            inserted.append((event.id, member, kind, created))
        grace = timedelta(days=GRACE)
        for row in service.recovery(db_session, PERIOD, GRACE):
            start, end = at(row.month), at(next_month(row.month))
            failures = [e for e in inserted if e[2] == "fail" and start <= e[3] < end]
            recovered = [
                f
                for f in failures
                if any(
                    r[0] != f[0]
                    and r[1] == f[1]
                    and r[2] == "recover"
                    and f[3] <= r[3] <= f[3] + grace
                    for r in inserted
                )
            ]
            assert (row.failed, row.recovered) == (len(failures), len(recovered)), row
    finally:
        nested.rollback()


@HYPOTHESIS
@given(
    rows=st.lists(subs, max_size=8),
    closes=instants,
    voters=st.sets(st.integers(0, MEMBERS - 1)),
    comps=st.lists(
        st.tuples(st.integers(0, MEMBERS - 1), instants, st.integers(1, 2000), st.booleans()),
        max_size=3,
    ),
    tier_votes=st.booleans(),
)
@example(  # one comp in a tier with votes, one in a tier without, both voted
    rows=[_sub(2, JAN, None)],
    closes=FEB + timedelta(days=14),
    voters={0, 1, 2},
    comps=[(0, FEB, 24 * 20, True), (1, FEB, 24 * 20, False)],
    tier_votes=True,
)
@example(  # the subscriptions' tier gives no votes: nobody is eligible
    rows=[_sub(2, JAN, None)],
    closes=FEB + timedelta(days=14),
    voters={2},
    comps=[],
    tier_votes=False,
)
def test_voting_participation_and_comps_match_a_plain_computation(
    db_session: Any,
    world: dict[str, Any],
    rows: list[Sub],
    closes: datetime,
    voters: set[int],
    comps: list[tuple[int, datetime, int, bool]],
    tier_votes: bool,
) -> None:
    """Eligible: a paid membership or a comp at the close, in a tier whose perks give votes
    (the subscriptions' tier when ``tier_votes``, never the "basic" tier)."""
    nested = db_session.begin_nested()
    try:
        insert_subscriptions(db_session, world, rows)
        basic = Tier(slug="basic", name="Basic", position=-1)
        perk = Perk(key="votes", name="Votes", kind=PerkKind.VOTES, votes=3)
        db_session.add_all([basic, perk])
        db_session.flush()
        if tier_votes:
            db_session.add(TierPerk(tier_id=world["tier"], perk_id=perk.id, grant=Grant.GRANT))
        poll = Round(title="What next?", opens_at=closes - timedelta(days=3), closes_at=closes)
        db_session.add(poll)
        db_session.flush()
        topic = Topic(round_id=poll.id, title="Housing")
        db_session.add(topic)
        db_session.flush()
        for v in voters:
            ballot = Ballot(round_id=poll.id, member_id=world["members"][v], budget=1, used=1)
            db_session.add(ballot)
            db_session.flush()
            db_session.add(
                Vote(ballot_id=ballot.id, topic_id=topic.id, member_id=world["members"][v])
            )
        for member, starts, hours, in_basic in comps:
            db_session.add(
                Comp(
                    member_id=world["members"][member],
                    tier_id=basic.id if in_basic else world["tier"],
                    starts_at=starts,
                    ends_at=starts + timedelta(hours=hours),
                    reason="press",
                )
            )
        db_session.flush()

        paid = [s for s in rows if is_paid(s)]
        comped = {
            m
            for m, s, h, in_basic in comps
            if not in_basic and s < closes and s + timedelta(hours=h) >= closes
        }
        paying = {m for m in range(MEMBERS) if active(paid, m, closes)}
        eligible = (paying | comped) if tier_votes else set()
        found = service.voting(db_session, PERIOD)
        if at(PERIOD.start) <= closes < at(PERIOD.end) + timedelta(days=1):
            assert [(r.eligible, r.voters) for r in found] == [
                (len(eligible), len(eligible & voters))
            ]
        else:
            assert found == []

        for row in service.daily(db_session, PERIOD):
            end = at(row.day) + timedelta(days=1)
            on_comp = {m for m, s, h, _ in comps if s < end and s + timedelta(hours=h) >= end}
            assert row.comps == len(on_comp)
    finally:
        nested.rollback()


# --- pages ---------------------------------------------------------------------------------------


@pytest.fixture
def staff_client(client: Any, make_member: Any, login: Any) -> Any:
    login(make_member(role=Role.STAFF))
    return client


REPORTS = ["patrons", "mrr", "churn", "revenue", "cohorts", "recovery", "voting"]


def test_staff_see_every_report_with_a_chart_and_its_text_alternative(staff_client: Any) -> None:
    response = staff_client.get("/staff/reports?from=2024-01-01&to=2024-04-30")
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert "<svg" in page and "<title" in page and "<desc" in page
    assert "Active patrons" in page and "2024-01" in page
    assert "style=" not in page.split("<svg", 1)[1]
    for report in REPORTS:
        assert f"/staff/reports/{report}.csv?from=2024-01-01&amp;to=2024-04-30" in page


@pytest.mark.parametrize("report", REPORTS)
def test_every_table_downloads_as_csv(staff_client: Any, report: str) -> None:
    response = staff_client.get(f"/staff/reports/{report}.csv?from=2024-01-01&to=2024-03-31")
    assert response.status_code == 200
    assert response.mimetype == "text/csv"
    assert "attachment" in response.headers["Content-Disposition"]
    rows = list(csv.reader(io.StringIO(response.get_data(as_text=True))))
    assert rows and rows[0]


def test_the_patrons_csv_has_one_line_per_day(staff_client: Any) -> None:
    response = staff_client.get("/staff/reports/patrons.csv?from=2024-02-27&to=2024-03-01")
    rows = list(csv.reader(io.StringIO(response.get_data(as_text=True))))
    assert [r[0] for r in rows[1:]] == ["2024-02-27", "2024-02-28", "2024-02-29", "2024-03-01"]


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("from=2024-05-01&to=2024-01-01", "The end date is before the start date."),
        ("from=1999-12-31&to=2024-01-01", "Reports start on 2000-01-01"),
        ("from=2001-01-01&to=2024-01-01", "at most 20 years"),
        ("from=2024-13-01&to=2024-12-01", "as YYYY-MM-DD"),
        ("from=yesterday", "as YYYY-MM-DD"),
    ],
)
def test_a_bad_range_gets_a_clear_message(staff_client: Any, query: str, message: str) -> None:
    for url in (f"/staff/reports?{query}", f"/staff/reports/mrr.csv?{query}"):
        response = staff_client.get(url)
        assert response.status_code == 400
        assert message in response.get_data(as_text=True)
