# ruff: noqa: S608 - the SQL is assembled only from constants in this module; values are bound
"""The staff reports, computed by the database: one grouped query per table, no loops over rows.

Definitions are in docs/metrics.md. Every query shares two building blocks: ``paid`` (the paid
memberships, one row per subscription that counts as paid) and ``series`` (one row per day or month
of the range, with the instant that starts it, ``t``, and the one that ends it, ``next_t``). The
series is ``generate_series`` on PostgreSQL and a recursive CTE on SQLite; the rest is the same SQL.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any, Literal

from sqlalchemy import bindparam, text
from sqlalchemy.orm import Session

from membership.billing.rules import MembershipState, SubscriptionStatus
from membership.database import UTCDateTime
from membership.perks.service import perk_table
from membership.reports.rules import (
    DateRange,
    add_months,
    end_of_day,
    midnight,
    monthly_recurring,
    months_between,
    percent,
)

Step = Literal["day", "month"]

# Statuses whose whole [started_at, ended_at) counts as paid. The app keeps no history of a
# subscription's statuses, so a canceled one counts only if at least one renewal was paid.
PAID_NOW = (SubscriptionStatus.ACTIVE.value, SubscriptionStatus.PAST_DUE.value)

PAID_CTE = f"""
paid AS (
    SELECT s.member_id AS member_id, s.started_at AS s_at, s.ended_at AS e_at,
           p.amount AS amount, p.interval AS price_interval, p.currency AS currency,
           p.tier_id AS tier_id
    FROM subscriptions s JOIN prices p ON p.id = s.price_id
    WHERE s.status IN ('{PAID_NOW[0]}', '{PAID_NOW[1]}')
       OR (s.status = '{SubscriptionStatus.CANCELED.value}' AND EXISTS (
            SELECT 1 FROM payments pay
            WHERE pay.subscription_id = s.id AND pay.kind = 'subscription'
              AND pay.status = 'succeeded'))
)"""


def _covers(alias: str, instant: str) -> str:
    """SQL for "paid membership ``alias`` is active at ``instant``" (see rules.covers)."""
    return f"({alias}.s_at < {instant} AND ({alias}.e_at IS NULL OR {alias}.e_at >= {instant}))"


def _series_cte(dialect: str, step: Step) -> str:
    if dialect == "postgresql":
        unit = "1 day" if step == "day" else "1 month"
        # Steps are taken on UTC wall-clock time, so a month is a calendar month whatever the
        # session's time zone.
        return f"""
series AS (
    SELECT g AT TIME ZONE 'UTC' AS t, (g + interval '{unit}') AT TIME ZONE 'UTC' AS next_t
    FROM generate_series(CAST(:first AS timestamptz) AT TIME ZONE 'UTC',
                         CAST(:last AS timestamptz) AT TIME ZONE 'UTC',
                         interval '{unit}') AS g
)"""
    modifier = "+1 day" if step == "day" else "+1 month"
    # Same text format as SQLAlchemy stores datetimes in SQLite, so comparisons stay exact.
    advance = "strftime('%Y-%m-%d %H:%M:%S', {0}, '" + modifier + "') || '.000000'"
    return f"""
series(t, next_t) AS (
    SELECT :first, {advance.format(":first")}
    UNION ALL
    SELECT next_t, {advance.format("next_t")} FROM series WHERE next_t <= :last
)"""


def _run(
    session: Session,
    step: Step,
    first: date,
    last: date,
    body: str,
    ctes: tuple[str, ...] = (PAID_CTE,),
    columns: dict[str, Any] | None = None,
    **params: Any,
) -> list[Any]:
    dialect = session.get_bind().dialect.name
    sql = "WITH RECURSIVE " + ",".join((_series_cte(dialect, step), *ctes)) + "\n" + body
    statement = text(sql).bindparams(
        bindparam("first", midnight(first), type_=UTCDateTime()),
        bindparam("last", midnight(last), type_=UTCDateTime()),
        *(
            bindparam(name, value, type_=UTCDateTime() if isinstance(value, datetime) else None)
            for name, value in params.items()
        ),
    )
    typed = statement.columns(t=UTCDateTime(), **(columns or {}))
    return list(session.execute(typed).all())


def _day(value: datetime) -> date:
    return value.date()


# --- daily: patrons, comps, MRR ----------------------------------------------------------------


@dataclass
class DayRow:
    day: date
    patrons: int
    comps: int
    mrr: dict[str, int] = field(default_factory=dict)  # currency -> minor units


# A member's overlapping or touching paid memberships, merged into islands (gaps and islands):
# then "members covering instant t" is (islands started before t) - (islands ended before t).
ISLANDS_OF = """
{name}_ordered AS (
    SELECT member_id, s_at, e_at,
           MAX(COALESCE(e_at, :far)) OVER (
               PARTITION BY member_id ORDER BY s_at, e_at
               ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS prev_end
    FROM {source}
),
{name}_numbered AS (
    SELECT member_id, s_at, e_at,
           SUM(CASE WHEN prev_end IS NULL OR s_at > prev_end THEN 1 ELSE 0 END) OVER (
               PARTITION BY member_id ORDER BY s_at, e_at ROWS UNBOUNDED PRECEDING) AS island
    FROM {name}_ordered
),
{name} AS (
    SELECT member_id, MIN(s_at) AS s_at,
           CASE WHEN COUNT(*) = COUNT(e_at) THEN MAX(e_at) END AS e_at
    FROM {name}_numbered GROUP BY member_id, island
)"""
ISLANDS_CTE = ISLANDS_OF.format(name="islands", source="paid")
COMP_ISLANDS_CTE = """
comp_spans AS (
    SELECT member_id, starts_at AS s_at, COALESCE(ended_early_at, ends_at) AS e_at FROM comps
),""" + ISLANDS_OF.format(name="comp_islands", source="comp_spans")

# Running sums over the start and end events, with each day's end instant slotted in before any
# event at the same instant (a membership counts at t if it started before t and did not end
# before t: see rules.covers). One pass over sorted events instead of a join per day.
COVERED_BY_DAY = """
SELECT day AS t, n FROM (
    SELECT day, k, SUM(d) OVER (ORDER BY at, k ROWS UNBOUNDED PRECEDING) AS n
    FROM (
        SELECT next_t AS at, 0 AS k, 0 AS d, t AS day FROM series
        UNION ALL SELECT s_at, 1, 1, NULL FROM {islands}
        UNION ALL SELECT e_at, 1, -1, NULL FROM {islands} WHERE e_at IS NOT NULL
    ) AS events
) AS running
WHERE k = 0 ORDER BY day"""
PATRONS_BY_DAY = COVERED_BY_DAY.format(islands="islands")

MRR_BY_DAY = """
SELECT day AS t, currency, monthly, yearly FROM (
    SELECT day, k, currency,
           SUM(dm) OVER (PARTITION BY currency ORDER BY at, k ROWS UNBOUNDED PRECEDING) AS monthly,
           SUM(dy) OVER (PARTITION BY currency ORDER BY at, k ROWS UNBOUNDED PRECEDING) AS yearly
    FROM (
        SELECT series.next_t AS at, 0 AS k, c.currency AS currency, 0 AS dm, 0 AS dy,
               series.t AS day
        FROM series CROSS JOIN (SELECT DISTINCT currency FROM paid) AS c
        UNION ALL
        SELECT s_at, 1, currency,
               CASE WHEN price_interval = 'month' THEN amount ELSE 0 END,
               CASE WHEN price_interval = 'year' THEN amount ELSE 0 END, NULL
        FROM paid
        UNION ALL
        SELECT e_at, 1, currency,
               CASE WHEN price_interval = 'month' THEN -amount ELSE 0 END,
               CASE WHEN price_interval = 'year' THEN -amount ELSE 0 END, NULL
        FROM paid WHERE e_at IS NOT NULL
    ) AS events
) AS running
WHERE k = 0 AND (monthly <> 0 OR yearly <> 0)"""

FAR_FUTURE = datetime(9999, 12, 31, tzinfo=UTC)


def patrons_by_day(session: Session, period: DateRange) -> list[DayRow]:
    """Active patrons and members on a comp at the end of each day (``mrr`` left empty)."""
    patrons = _run(
        session,
        "day",
        period.start,
        period.end,
        PATRONS_BY_DAY,
        ctes=(PAID_CTE, ISLANDS_CTE),
        far=FAR_FUTURE,
    )
    comps = _run(
        session,
        "day",
        period.start,
        period.end,
        COVERED_BY_DAY.format(islands="comp_islands"),
        ctes=(COMP_ISLANDS_CTE,),
        far=FAR_FUTURE,
    )
    rows = {_day(t): DayRow(_day(t), int(n), 0) for t, n in patrons}
    for t, n in comps:
        rows[_day(t)].comps = int(n)
    return list(rows.values())


def mrr_by_day(session: Session, period: DateRange) -> dict[date, dict[str, int]]:
    """MRR per currency at the end of each day (days without any are left out)."""
    found: dict[date, dict[str, int]] = {}
    for t, currency, monthly, yearly in _run(session, "day", period.start, period.end, MRR_BY_DAY):
        found.setdefault(_day(t), {})[currency] = monthly_recurring(int(monthly), int(yearly))
    return found


def daily(session: Session, period: DateRange) -> list[DayRow]:
    """Active patrons, members on a comp, and MRR per currency at the end of each day."""
    rows = patrons_by_day(session, period)
    mrr = mrr_by_day(session, period)
    for row in rows:
        row.mrr = mrr.get(row.day, {})
    return rows


# --- monthly: new, churned, churn rate ----------------------------------------------------------


@dataclass
class MonthRow:
    month: date
    new: int
    churned: int
    patrons_at_start: int
    patrons_at_end: int

    @property
    def churn_rate(self) -> Decimal | None:
        return percent(self.churned, self.patrons_at_start)


# Islands in start order, each with the start of the member's next island. An island that ends
# in month M is a churn in M unless the next one starts in M too (then the member is covered at
# the end of M); islands never touch, so "next starts in a later month" is the whole test.
NEW_AND_CHURNED = """
SELECT month AS t, SUM(new) AS new, SUM(churned) AS churned FROM (
    SELECT {month_of_s} AS month, 1 AS new, 0 AS churned FROM marked
    WHERE nth = 1 AND s_at >= :first AND s_at < :until
    UNION ALL
    SELECT {month_of_e}, 0, 1 FROM marked
    WHERE e_at >= :first AND e_at < :until
      AND (next_s IS NULL OR {month_of_next} > {month_of_e})
) AS changes
GROUP BY month"""

MARKED_CTE = """
marked AS (
    SELECT member_id, s_at, e_at,
           LEAD(s_at) OVER (PARTITION BY member_id ORDER BY s_at) AS next_s,
           ROW_NUMBER() OVER (PARTITION BY member_id ORDER BY s_at) AS nth
    FROM islands
)"""


def _month_of(dialect: str, column: str) -> str:
    """SQL for the instant that starts the UTC calendar month of ``column``."""
    if dialect == "postgresql":
        return f"(date_trunc('month', {column} AT TIME ZONE 'UTC') AT TIME ZONE 'UTC')"
    return f"(strftime('%Y-%m-01 00:00:00', {column}) || '.000000')"


def monthly(session: Session, period: DateRange) -> list[MonthRow]:
    """New and churned patrons per month, with the patron counts at its start and its end."""
    dialect = session.get_bind().dialect.name
    first, last = period.first_month, period.last_month
    # Patrons at the end of each month, from the month before the range: the count at the
    # start of a month is the count at the end of the one before it.
    ends = _run(
        session,
        "month",
        add_months(first, -1),
        last,
        PATRONS_BY_DAY,
        ctes=(PAID_CTE, ISLANDS_CTE),
        far=FAR_FUTURE,
    )
    at_end = {_day(t): int(n) for t, n in ends}
    changes = _run(
        session,
        "month",
        first,
        last,
        NEW_AND_CHURNED.format(
            month_of_s=_month_of(dialect, "s_at"),
            month_of_e=_month_of(dialect, "e_at"),
            month_of_next=_month_of(dialect, "next_s"),
        ),
        ctes=(PAID_CTE, ISLANDS_CTE, MARKED_CTE),
        far=FAR_FUTURE,
        until=midnight(add_months(last, 1)),
    )
    counted = {_day(t): (int(n), int(c)) for t, n, c in changes}
    rows = []
    month = first
    while month <= last:
        new, churned = counted.get(month, (0, 0))
        before = add_months(month, -1)
        rows.append(MonthRow(month, new, churned, at_end[before], at_end[month]))
        month = add_months(month, 1)
    return rows


# --- net revenue ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class RevenueRow:
    month: date
    currency: str
    received: int
    refunded: int

    @property
    def net(self) -> int:
        return self.received - self.refunded


def revenue(session: Session, period: DateRange) -> list[RevenueRow]:
    """Succeeded payments received in each month minus refunds made in it, per currency."""
    # Only the range is read (payments.paid_at is indexed), and each row is put in its month by
    # truncating its time, so the months are one GROUP BY rather than a join per month.
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        bucket = "date_trunc('month', {0} AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'"
    else:
        bucket = "strftime('%Y-%m-01 00:00:00', {0}) || '.000000'"
    money = f"""
money AS (
    SELECT {bucket.format("paid_at")} AS month, currency, amount AS received, 0 AS refunded
    FROM payments
    WHERE status = 'succeeded' AND kind IN ('subscription', 'donation')
      AND paid_at >= :first AND paid_at < :until
    UNION ALL
    SELECT {bucket.format("created_at")}, currency, 0, amount FROM refunds
    WHERE created_at >= :first AND created_at < :until
)"""
    rows = _run(
        session,
        "month",
        period.first_month,
        period.last_month,
        """SELECT money.month AS t, money.currency AS currency,
          SUM(money.received) AS received, SUM(money.refunded) AS refunded
        FROM money GROUP BY money.month, money.currency ORDER BY money.month, money.currency""",
        ctes=(money,),
        until=midnight(add_months(period.last_month, 1)),
    )
    return [RevenueRow(_day(t), c, int(r), int(f)) for t, c, r, f in rows]


# --- cohorts --------------------------------------------------------------------------------------


@dataclass
class CohortRow:
    cohort: date
    size: int
    retained: list[int]  # retained[k]: active at the end of month cohort + k

    @property
    def shares(self) -> list[Decimal | None]:
        return [percent(n, self.size) for n in self.retained]


def cohorts(session: Session, period: DateRange) -> list[CohortRow]:
    """Members by the month of their first paid start, and how many are patrons k months on."""
    dialect = session.get_bind().dialect.name
    # Each member's islands (see daily): at most one covers a given instant, so counting rows
    # counts members, with no DISTINCT over a join.
    cohort_cte = f"""
cohort AS (
    SELECT member_id, {_month_of(dialect, "s_at")} AS cohort_t FROM marked
    WHERE nth = 1 AND s_at >= :first AND s_at < :until
)"""
    ctes = (PAID_CTE, ISLANDS_CTE, MARKED_CTE, cohort_cte)
    until = midnight(add_months(period.last_month, 1))
    sizes = _run(
        session,
        "month",
        period.first_month,
        period.last_month,
        """SELECT cohort.cohort_t AS t, COUNT(*) AS n FROM cohort
        GROUP BY cohort.cohort_t ORDER BY cohort.cohort_t""",
        ctes=ctes,
        far=FAR_FUTURE,
        until=until,
    )
    kept = _run(
        session,
        "month",
        period.first_month,
        period.last_month,
        f"""SELECT cohort.cohort_t AS t, m.t AS m_t, COUNT(*) AS n
        FROM cohort JOIN islands i ON i.member_id = cohort.member_id
        JOIN series m ON m.t >= cohort.cohort_t AND {_covers("i", "m.next_t")}
        GROUP BY cohort.cohort_t, m.t""",
        ctes=ctes,
        columns={"m_t": UTCDateTime()},
        far=FAR_FUTURE,
        until=until,
    )
    last = period.last_month
    rows = {
        _day(t): CohortRow(_day(t), int(n), [0] * (months_between(_day(t), last) + 1))
        for t, n in sizes
    }
    for t, m_t, n in kept:
        row = rows[_day(t)]
        row.retained[months_between(row.cohort, _day(m_t))] = int(n)
    return list(rows.values())


# --- failed-payment recovery ------------------------------------------------------------------


@dataclass(frozen=True)
class RecoveryRow:
    month: date
    failed: int
    recovered: int

    @property
    def rate(self) -> Decimal | None:
        return percent(self.recovered, self.failed)


def recovery(session: Session, period: DateRange, grace_days: int) -> list[RecoveryRow]:
    """Renewals that failed in each month (a move into past due), and how many were paid
    (a move from past due or lapsed back to active or canceling) within the grace period."""
    past_due = MembershipState.PAST_DUE.value
    back = (MembershipState.ACTIVE.value, MembershipState.CANCELING.value)
    if session.get_bind().dialect.name == "postgresql":
        deadline = "f.created_at + make_interval(hours => 24 * :grace)"
    else:
        # Keep the stored fractional seconds so the comparison stays exact.
        deadline = (
            "(strftime('%Y-%m-%d %H:%M:%S', f.created_at, '+' || :grace || ' days')"
            " || substr(f.created_at, 20))"
        )
    rows = _run(
        session,
        "month",
        period.first_month,
        period.last_month,
        f"""SELECT series.t AS t, COUNT(f.id) AS failed,
          COALESCE(SUM(CASE WHEN EXISTS (
              SELECT 1 FROM membership_events r
              WHERE r.member_id = f.member_id AND r.id <> f.id
                AND r.from_state IN ('{past_due}', '{MembershipState.LAPSED.value}')
                AND r.to_state IN ('{back[0]}', '{back[1]}')
                AND r.created_at >= f.created_at AND r.created_at <= {deadline})
            THEN 1 ELSE 0 END), 0) AS recovered
        FROM series LEFT JOIN membership_events f
          ON f.to_state = '{past_due}' AND f.from_state <> '{past_due}'
         AND f.created_at >= series.t AND f.created_at < series.next_t
        GROUP BY series.t ORDER BY series.t""",
        ctes=(),
        grace=grace_days,
    )
    return [RecoveryRow(_day(t), int(a), int(b)) for t, a, b in rows]


# --- voting participation -----------------------------------------------------------------------


@dataclass(frozen=True)
class VotingRow:
    round_id: int
    title: str
    closes_at: datetime
    eligible: int
    voters: int

    @property
    def rate(self) -> Decimal | None:
        return percent(self.voters, self.eligible)


def voting_tiers(session: Session) -> set[int]:
    """The tiers whose perks include votes (a handful of rows: the rule is perks.rules')."""
    return {
        tier_id
        for tier_id, unlocked in perk_table(session).items()
        if any(u.perk.kind == "votes" and (u.votes or 0) > 0 for u in unlocked.values())
    }


def voting(session: Session, period: DateRange) -> list[VotingRow]:
    """Per round closing in the range: the members who could vote at its close (a paid
    membership or a comp, in a tier whose perks include votes), and how many of them voted.
    Perks are as staff set them now: the app keeps no history of perk settings."""
    statement = text(
        f"WITH {PAID_CTE},"
        f"""
rounds AS (
    SELECT id, title, closes_at FROM voting_rounds
    WHERE closes_at >= :first AND closes_at < :stop
),
eligible AS (
    SELECT r.id AS round_id, p.member_id AS member_id
    FROM rounds r JOIN paid p ON {_covers("p", "r.closes_at")}
    WHERE p.tier_id IN :tiers
    UNION
    SELECT r.id, c.member_id
    FROM rounds r JOIN comps c ON c.starts_at < r.closes_at
     AND COALESCE(c.ended_early_at, c.ends_at) >= r.closes_at
    WHERE c.tier_id IN :tiers
)
SELECT r.id, r.title, r.closes_at, COUNT(e.member_id) AS eligible,
       COUNT(CASE WHEN b.used > 0 THEN 1 END) AS voters
FROM rounds r LEFT JOIN eligible e ON e.round_id = r.id
LEFT JOIN ballots b ON b.round_id = e.round_id AND b.member_id = e.member_id
GROUP BY r.id, r.title, r.closes_at
ORDER BY r.closes_at, r.id"""
    ).bindparams(
        bindparam("first", midnight(period.start), type_=UTCDateTime()),
        bindparam("stop", end_of_day(period.end), type_=UTCDateTime()),
        bindparam("tiers", sorted(voting_tiers(session)), expanding=True),
    )
    typed = statement.columns(closes_at=UTCDateTime())
    return [VotingRow(int(i), t, c, int(e), int(v)) for i, t, c, e, v in session.execute(typed)]
