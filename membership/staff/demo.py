"""A year and a half of made-up patrons for the demo, so the reports have something to show.

The history is written as the two CSV files of ``members import`` and goes through the importer,
so the demo exercises the same path a newsroom moving from another platform takes. It is the
same every time (a fixed seed, dates counted in whole months back from the current one), and it
is added once: a second run finds the first demo patron and does nothing.
"""

from __future__ import annotations

import csv
import io
import random
from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from membership.accounts.models import Member
from membership.billing.models import Tier
from membership.staff import importer
from membership.staff.importer import MEMBER_HEADERS, PAYMENT_HEADERS

PATRONS = 240
MONTHS_BACK = 18
DOMAIN = "readers.example.net"
FIRST_NAMES = [
    "Olha", "Taras", "Iryna", "Mykola", "Sofia", "Andrii", "Kateryna", "Dmytro", "Anna",
    "Jonas", "Marta", "Pierre", "Aisha", "Ravi", "Chen", "Lucía", "Emma", "Noah", "Hana", "Omar",
]  # fmt: skip
LAST_NAMES = [
    "Kovalenko", "Bondar", "Shevchuk", "Melnyk", "Tkachenko", "Schmidt", "Dubois", "Okafor",
    "Patel", "Li", "García", "Smith", "Novak", "Haddad", "Sato", "Johansson",
]  # fmt: skip
# tier slug -> weight, {currency: (monthly, yearly)} as seeded by ``seed-demo``
TIER_WEIGHTS = {"reader": 6, "insider": 3, "co-creator": 1}
CURRENCY_WEIGHTS = {"EUR": 5, "USD": 4, "GBP": 2}


def _add_months(moment: datetime, count: int) -> datetime:
    index = moment.year * 12 + moment.month - 1 + count
    day = min(moment.day, 28)  # renewals on the 29th-31st would drift; keep the demo simple
    return moment.replace(year=index // 12, month=index % 12 + 1, day=day)


def history(now: datetime, prices: dict[tuple[str, str, str], int]) -> tuple[bytes, bytes]:
    """members.csv and payments.csv for the demo patrons. ``prices``: (tier, interval, currency)
    -> amount in minor units."""
    rng = random.Random(2026)  # noqa: S311 - made-up demo data, the same every time
    start_of_month = now.replace(day=1, hour=9, minute=0, second=0, microsecond=0)
    first_day = _add_months(start_of_month, -MONTHS_BACK)
    members = io.StringIO()
    payments = io.StringIO()
    member_csv = csv.writer(members)
    payment_csv = csv.writer(payments)
    member_csv.writerow(MEMBER_HEADERS)
    payment_csv.writerow(PAYMENT_HEADERS)
    tiers = list(TIER_WEIGHTS)
    currencies = list(CURRENCY_WEIGHTS)
    for n in range(PATRONS):
        email = f"patron{n:03d}@{DOMAIN}"
        name = f"{rng.choice(FIRST_NAMES)} {rng.choice(LAST_NAMES)}"
        tier = rng.choices(tiers, weights=list(TIER_WEIGHTS.values()))[0]
        currency = rng.choices(currencies, weights=list(CURRENCY_WEIGHTS.values()))[0]
        interval = "year" if rng.random() < 0.2 else "month"
        amount = prices[(tier, interval, currency)]
        # More patrons joined recently (a fundraising drive three months ago).
        days_back = int(rng.triangular(0, (now - first_day).days, 90))
        started = now - timedelta(days=days_back, hours=rng.randrange(24))
        step = 12 if interval == "year" else 1
        renewals = [started]
        while _add_months(renewals[-1], step) <= now:
            renewals.append(_add_months(renewals[-1], step))
        period_end = _add_months(renewals[-1], step)
        fate = rng.random()
        ended_at = ""
        if fate < 0.22 and len(renewals) > 1:
            status = "ended"
            renewals = renewals[: rng.randrange(1, len(renewals))]
            ended = _add_months(renewals[-1], step)
            ended_at = importer.iso(ended)
            period_end = ended
        elif fate < 0.30:
            status = "canceled"  # canceling: paid until the end of the current period
        elif fate < 0.34 and len(renewals) > 1:
            status = "past_due"  # the latest renewal failed
            period_end = renewals.pop()
        else:
            status = "active"
        member_csv.writerow(
            [email, name, tier, interval, currency, amount, status, importer.iso(started),
             ended_at, "" if status == "ended" else importer.iso(period_end), "", ""]
        )  # fmt: skip
        for paid_at in renewals:
            payment_csv.writerow(
                [email, importer.iso(paid_at), amount, currency, "subscription", ""]
            )
        if rng.random() < 0.15:
            gift_at = started + timedelta(days=rng.randrange(max(1, days_back)))
            payment_csv.writerow(
                [email, importer.iso(gift_at), rng.choice((1000, 2000, 5000)), currency,
                 "donation", ""]
            )  # fmt: skip
        if n % 60 == 7:  # a few refunds of the first payment, a week later
            refund_at = renewals[0] + timedelta(days=7)
            if refund_at < now:
                payment_csv.writerow(
                    [email, importer.iso(refund_at), amount, currency, "refund", ""]
                )
    return members.getvalue().encode(), payments.getvalue().encode()


def seed_demo(session: Session, now: datetime | None = None) -> int:
    """Import the demo history unless it is there; returns how many patrons were added."""
    if session.scalar(select(Member.id).where(Member.email == f"patron000@{DOMAIN}")):
        return 0
    now = now or datetime.now(UTC)
    prices = {
        (tier.slug, price.interval.value, price.currency): price.amount
        for tier in session.scalars(select(Tier).where(Tier.slug.in_(TIER_WEIGHTS)))
        for price in tier.prices
        if price.listed
    }
    members_data, payments_data = history(now, prices)
    result = importer.import_members(session, members_data, payments_data, now=now)
    if result.problems:
        raise RuntimeError(f"demo history refused: {result.problems[0]}")
    return PATRONS
