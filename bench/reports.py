"""Benchmark: the staff reports on a newsroom with many members, against the same SQL run raw.

    .venv/bin/python bench/reports.py --database postgresql://postgres@127.0.0.1/membership_bench
    .venv/bin/python bench/reports.py --database sqlite:///instance/bench.sqlite3

It creates the schema with the migrations in a database you name (emptied first), fills it with
``--members`` members (default 100,000), one subscription each for most of them, and
``--payments`` payments (default 2,000,000) spread over three years, failed renewals (most
recovered), comps and a voting round a month in which a fifth of the patrons vote, then times
each report and the whole dashboard
for a 12-month range: the app's service function (SQL + Python shaping) against the very SQL
statements it sends, executed raw on the driver in the same run. Medians of ``--runs`` runs.
Results go to stdout as a Markdown table (copy them to docs/performance.md).
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any

import flask_migrate
import sqlalchemy as sa
from sqlalchemy import event

from membership import create_app
from membership.config import normalise_database_url
from membership.extensions import db
from membership.reports import service as reports
from membership.reports.rules import DateRange
from membership.reports.tables import REPORTS

START = datetime(2024, 1, 1, tzinfo=UTC)
DAYS = 3 * 365
CURRENCIES = ("EUR", "USD", "GBP")
BATCH = 50_000


def reset(url: str) -> None:
    if url.startswith("sqlite"):
        path = sa.make_url(url).database
        if path:
            import os

            if os.path.exists(path):
                os.remove(path)
        return
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("DROP SCHEMA public CASCADE"))
        conn.execute(sa.text("CREATE SCHEMA public"))
    engine.dispose()


def timestamps(conn: sa.Connection) -> Callable[[datetime], datetime]:
    """How a UTC instant is written raw: naive on SQLite, like the app's column type there."""
    if conn.dialect.name == "sqlite":
        return lambda value: value.replace(tzinfo=None)
    return lambda value: value


def fill(conn: sa.Connection, members: int, payments: int, rng: random.Random) -> None:
    """Tiers and prices, members, subscriptions, payments and refunds, then ``fill_history``."""
    ts = timestamps(conn)
    now = ts(datetime.now(UTC))
    conn.execute(
        sa.text(
            "INSERT INTO tiers (id, slug, name, description, position, active, trial_days, "
            "created_at) VALUES (1, 'reader', 'Reader', '', 0, true, 0, :now), "
            "(2, 'insider', 'Insider', '', 1, true, 0, :now)"
        ),
        {"now": now},
    )
    prices = []
    for tier in (1, 2):
        for interval, amount in (("month", 500 * tier), ("year", 5000 * tier)):
            for currency in CURRENCIES:
                prices.append(
                    {
                        "id": len(prices) + 1,
                        "tier_id": tier,
                        "interval": interval,
                        "currency": currency,
                        "amount": amount,
                        "plan": f"bench-{tier}-{interval}-{currency}",
                        "now": now,
                    }
                )
    conn.execute(
        sa.text(
            "INSERT INTO prices (id, tier_id, interval, currency, amount, stripe_plan_id, listed,"
            " created_at) VALUES (:id, :tier_id, :interval, :currency, :amount, :plan, true, :now)"
        ),
        prices,
    )
    member_rows, sub_rows = [], []
    statuses = ["active"] * 6 + ["past_due", "canceled", "canceled", "incomplete"]
    for i in range(1, members + 1):
        member_rows.append(
            {
                "id": i,
                "email": f"member{i}@example.org",
                "name": f"Member {i}",
                "now": now,
            }
        )
        if rng.random() < 0.8:
            started = START + timedelta(days=rng.randrange(DAYS), seconds=rng.randrange(86400))
            status = rng.choice(statuses)
            ended = None
            if status == "canceled":
                ended = started + timedelta(days=rng.randrange(30, 600))
            sub_rows.append(
                {
                    "id": len(sub_rows) + 1,
                    "member_id": i,
                    "price_id": rng.randrange(1, len(prices) + 1),
                    "sid": f"sub_bench_{i}",
                    "status": status,
                    "live": status != "canceled",
                    "started": ts(started),
                    "ended": ts(ended) if ended else None,
                    "now": now,
                }
            )
    for start in range(0, len(member_rows), BATCH):
        conn.execute(
            sa.text(
                "INSERT INTO members (id, email, display_name, role, password_changed_at, "
                "created_at, updated_at) VALUES (:id, :email, :name, 'reader', :now, :now, :now)"
            ),
            member_rows[start : start + BATCH],
        )
    for start in range(0, len(sub_rows), BATCH):
        conn.execute(
            sa.text(
                "INSERT INTO subscriptions (id, member_id, price_id, stripe_subscription_id, "
                "status, live, state, cancel_at_period_end, pause_requested, started_at, "
                "ended_at, synced_at) VALUES (:id, :member_id, :price_id, :sid, :status, :live, "
                "'active', false, false, :started, :ended, :now)"
            ),
            sub_rows[start : start + BATCH],
        )
    done = 0
    while done < payments:
        rows = []
        for _ in range(min(BATCH, payments - done)):
            done += 1
            sub = sub_rows[rng.randrange(len(sub_rows))]
            paid = START + timedelta(days=rng.randrange(DAYS), seconds=rng.randrange(86400))
            failed = rng.random() < 0.03
            rows.append(
                {
                    "id": done,
                    "member_id": sub["member_id"],
                    "sub": sub["id"] if rng.random() < 0.9 else None,
                    "kind": "subscription" if rng.random() < 0.9 else "donation",
                    "status": "failed" if failed else "succeeded",
                    "amount": rng.choice((500, 1000, 2500, 5000)),
                    "refunded": 0,
                    "currency": rng.choice(CURRENCIES),
                    "paid": None if failed else ts(paid),
                    "created": ts(paid),
                }
            )
        conn.execute(
            sa.text(
                "INSERT INTO payments (id, member_id, subscription_id, kind, status, amount, "
                "amount_refunded, currency, receipt_sent, created_at, paid_at) VALUES (:id, "
                ":member_id, :sub, :kind, :status, :amount, :refunded, :currency, true, :created,"
                " :paid)"
            ),
            rows,
        )
    refunds = [
        {
            "id": n + 1,
            "payment": rng.randrange(1, payments + 1),
            "amount": 100,
            "currency": "EUR",
            "rid": f"re_bench_{n}",
            "at": ts(START + timedelta(days=rng.randrange(DAYS))),
        }
        for n in range(payments // 100)
    ]
    for start in range(0, len(refunds), BATCH):
        conn.execute(
            sa.text(
                "INSERT INTO refunds (id, payment_id, amount, currency, stripe_refund_id, "
                "created_at) VALUES (:id, :payment, :amount, :currency, :rid, :at)"
            ),
            refunds[start : start + BATCH],
        )
    fill_history(conn, sub_rows, rng)


def fill_history(conn: sa.Connection, sub_rows: list[dict[str, Any]], rng: random.Random) -> None:
    """Failed renewals (most recovered within days, some never), comps, and a year of monthly
    voting rounds in which a fifth of the patrons vote; only the Insider tier (2) gives votes."""
    ts = timestamps(conn)
    events = []
    for sub in sub_rows:
        if sub["status"] == "incomplete" or rng.random() > 0.15:
            continue
        failed = START + timedelta(days=rng.randrange(DAYS), seconds=rng.randrange(86400))
        base = {"member_id": sub["member_id"], "sub": sub["id"], "delta": 0, "currency": "EUR"}
        events.append(base | {"from": "active", "to": "past_due", "at": ts(failed)})
        if rng.random() < 0.7:
            back = failed + timedelta(hours=rng.randrange(1, 24 * 12))
            events.append(base | {"from": "past_due", "to": "active", "at": ts(back)})
    for start in range(0, len(events), BATCH):
        conn.execute(
            sa.text(
                "INSERT INTO membership_events (member_id, subscription_id, from_state, to_state,"
                " reason, mrr_delta, currency, created_at) VALUES (:member_id, :sub, :from, :to,"
                " 'bench', :delta, :currency, :at)"
            ),
            events[start : start + BATCH],
        )
    now = ts(datetime.now(UTC))
    comps = [
        {
            "member_id": sub["member_id"],
            "tier": rng.choice((1, 2)),
            "starts": ts(started),
            "ends": ts(started + timedelta(days=rng.randrange(30, 400))),
            "now": now,
        }
        for sub in rng.sample(sub_rows, min(2_000, len(sub_rows)))
        for started in [START + timedelta(days=rng.randrange(DAYS))]
    ]
    conn.execute(
        sa.text(
            "INSERT INTO comps (member_id, tier_id, starts_at, ends_at, reason, created_at) "
            "VALUES (:member_id, :tier, :starts, :ends, 'bench', :now)"
        ),
        comps,
    )
    conn.execute(
        sa.text(
            "INSERT INTO perks (id, key, name, description, kind, votes, active, created_at) "
            "VALUES (1, 'votes', 'Votes', '', 'votes', 3, true, :now)"
        ),
        {"now": now},
    )
    conn.execute(
        sa.text("INSERT INTO tier_perks (tier_id, perk_id, \"grant\") VALUES (2, 1, 'grant')")
    )
    ballot_id = vote_id = topic_id = 0
    for month in range(DAYS // 30):
        opens = START + timedelta(days=30 * month)
        closes = opens + timedelta(days=21)
        conn.execute(
            sa.text(
                "INSERT INTO voting_rounds (id, title, description, opens_at, closes_at, "
                "results_live, staff_see_voters, drop_votes_of_lapsed, created_at) VALUES "
                "(:id, :title, '', :opens, :closes, true, false, false, :now)"
            ),
            {
                "id": month + 1,
                "title": f"Round {month + 1}",
                "opens": ts(opens),
                "closes": ts(closes),
                "now": now,
            },
        )
        topics = []
        for _ in range(10):
            topic_id += 1
            topics.append(topic_id)
        conn.execute(
            sa.text(
                "INSERT INTO topics (id, round_id, title, why, status, created_at) VALUES "
                "(:id, :round, :title, '', 'approved', :now)"
            ),
            [{"id": t, "round": month + 1, "title": f"Topic {t}", "now": now} for t in topics],
        )
        ballots, votes = [], []
        for sub in rng.sample(sub_rows, len(sub_rows) // 5):
            ballot_id += 1
            chosen = rng.sample(topics, rng.randint(1, 3))
            ballots.append(
                {
                    "id": ballot_id,
                    "round": month + 1,
                    "member_id": sub["member_id"],
                    "used": len(chosen),
                }
            )
            for topic in chosen:
                vote_id += 1
                votes.append(
                    {
                        "id": vote_id,
                        "ballot": ballot_id,
                        "topic": topic,
                        "member_id": sub["member_id"],
                        "at": ts(opens),
                    }
                )
        for start in range(0, len(ballots), BATCH):
            conn.execute(
                sa.text(
                    "INSERT INTO ballots (id, round_id, member_id, budget, used) VALUES "
                    "(:id, :round, :member_id, 3, :used)"
                ),
                ballots[start : start + BATCH],
            )
        for start in range(0, len(votes), BATCH):
            conn.execute(
                sa.text(
                    "INSERT INTO votes (id, ballot_id, topic_id, member_id, created_at) VALUES "
                    "(:id, :ballot, :topic, :member_id, :at)"
                ),
                votes[start : start + BATCH],
            )


class Recorder:
    """Keeps the SQL statements (and parameters) a report sends, to replay them raw."""

    def __init__(self) -> None:
        self.statements: list[tuple[str, Any]] = []

    def __call__(self, conn: Any, cursor: Any, statement: str, parameters: Any, *a: Any) -> None:
        self.statements.append((statement, parameters))


def median_time(func: Callable[[], Any], runs: int) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        func()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--database", required=True)
    parser.add_argument("--members", type=int, default=100_000)
    parser.add_argument("--payments", type=int, default=2_000_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--reuse", action="store_true", help="keep the data of a previous run")
    args = parser.parse_args()

    url = normalise_database_url(args.database)
    if not args.reuse:
        reset(url)
    app = create_app({"SQLALCHEMY_DATABASE_URI": url, "TESTING": True})
    with app.app_context():
        flask_migrate.upgrade()
        started = time.perf_counter()
        if not args.reuse:
            with db.engine.begin() as conn:
                fill(conn, args.members, args.payments, random.Random(args.seed))
        if db.engine.dialect.name == "postgresql":
            with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.execute(sa.text("ANALYZE"))
        print(f"filled in {time.perf_counter() - started:.1f} s")

        period = DateRange(date(2025, 1, 1), date(2025, 12, 31))
        grace = app.config["GRACE_PERIOD_DAYS"]
        cases: dict[str, Callable[[], Any]] = {
            "patrons and comps per day": lambda: reports.patrons_by_day(db.session, period),
            "MRR per day": lambda: reports.mrr_by_day(db.session, period),
            "new and churned patrons, churn": lambda: reports.monthly(db.session, period),
            "net revenue per month": lambda: reports.revenue(db.session, period),
            "cohort retention": lambda: reports.cohorts(db.session, period),
            "failed-payment recovery": lambda: reports.recovery(db.session, period, grace),
            "voting participation": lambda: reports.voting(db.session, period),
            "the whole dashboard (every table and chart)": lambda: [
                build(db.session, period, grace) for build in REPORTS.values()
            ],
        }
        print(f"\n{db.engine.dialect.name}: {args.members:,} members, {args.payments:,} payments")
        print("| report | app (s) | same SQL raw (s) | ratio |")
        print("|---|---:|---:|---:|")
        for name, run in cases.items():
            recorder = Recorder()
            event.listen(db.engine, "before_cursor_execute", recorder)
            run()
            event.remove(db.engine, "before_cursor_execute", recorder)
            app_time = median_time(run, args.runs)
            db.session.rollback()  # SQLite: the session's write lock would block the raw run

            def raw(statements: list[tuple[str, Any]] = recorder.statements) -> None:
                connection = db.engine.raw_connection()
                try:
                    cursor = connection.cursor()
                    for statement, parameters in statements:
                        cursor.execute(statement, parameters)
                        cursor.fetchall()
                    cursor.close()
                finally:
                    connection.close()

            raw_time = median_time(raw, args.runs)
            print(f"| {name} | {app_time:.3f} | {raw_time:.3f} | {app_time / raw_time:.2f} |")
            db.session.rollback()


if __name__ == "__main__":
    main()
