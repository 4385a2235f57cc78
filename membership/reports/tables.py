"""Each report as a table (for the page and its CSV) and a chart, from the service's data."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal

from markupsafe import Markup
from sqlalchemy.orm import Session

from membership.billing.rules import amount_text, minor_units
from membership.reports import service
from membership.reports.charts import Line, line_chart
from membership.reports.rules import DateRange, add_months, percent_text


@dataclass
class Table:
    name: str  # also the CSV's file name
    title: str
    headers: list[str]
    rows: list[list[str]] = field(default_factory=list)
    chart: Markup | None = None
    note: str = ""


def _month(value: object) -> str:
    return f"{value:%Y-%m}"


def _major(amount: int, currency: str) -> float:
    return amount / minor_units(currency)


def patrons(session: Session, period: DateRange, grace_days: int) -> Table:
    days = service.patrons_by_day(session, period)
    table = Table("patrons", "Active patrons", ["Day", "Active patrons", "On a comp"])
    table.rows = [[d.day.isoformat(), str(d.patrons), str(d.comps)] for d in days]
    table.chart = line_chart(
        "chart-patrons",
        "Active patrons per day",
        f"Paid patrons at the end of each day from {period.start} to {period.end}: "
        f"{days[0].patrons} on the first day, {days[-1].patrons} on the last, "
        f"at most {max(d.patrons for d in days)}. Comps are counted separately.",
        [d.day.isoformat() for d in days],
        [Line("Active patrons", [d.patrons for d in days]), Line("Comps", [d.comps for d in days])],
    )
    return table


def mrr(session: Session, period: DateRange, grace_days: int) -> Table:
    by_day = service.mrr_by_day(session, period)
    days = [period.start + timedelta(days=n) for n in range((period.end - period.start).days + 1)]
    values = [by_day.get(day, {}) for day in days]
    currencies = sorted({c for v in values for c in v})
    table = Table("mrr", "Monthly recurring revenue", ["Day", *currencies])
    table.rows = [
        [day.isoformat(), *(amount_text(v.get(c, 0), c) for c in currencies)]
        for day, v in zip(days, values, strict=True)
    ]
    summary = ", ".join(f"{amount_text(values[-1].get(c, 0), c)} {c}" for c in currencies)
    table.chart = line_chart(
        "chart-mrr",
        "Monthly recurring revenue per day, by currency",
        f"MRR at the end of each day from {period.start} to {period.end}; "
        f"on the last day: {summary or 'none'}.",
        [day.isoformat() for day in days],
        [Line(c, [_major(v.get(c, 0), c) for v in values]) for c in currencies],
    )
    return table


def churn(session: Session, period: DateRange, grace_days: int) -> Table:
    months = service.monthly(session, period)
    table = Table(
        "churn",
        "New and churned patrons",
        ["Month", "Patrons at start", "New", "Churned", "Churn rate", "Patrons at end"],
    )
    table.rows = [
        [
            _month(m.month),
            str(m.patrons_at_start),
            str(m.new),
            str(m.churned),
            percent_text(m.churn_rate),
            str(m.patrons_at_end),
        ]
        for m in months
    ]
    table.chart = line_chart(
        "chart-churn",
        "New and churned patrons per month",
        "New patrons: "
        + ", ".join(f"{_month(m.month)} {m.new}" for m in months)
        + ". Churned: "
        + ", ".join(f"{_month(m.month)} {m.churned}" for m in months)
        + ".",
        [_month(m.month) for m in months],
        [Line("New", [m.new for m in months]), Line("Churned", [m.churned for m in months])],
    )
    return table


def revenue(session: Session, period: DateRange, grace_days: int) -> Table:
    rows = service.revenue(session, period)
    table = Table("revenue", "Net revenue", ["Month", "Currency", "Received", "Refunded", "Net"])
    table.rows = [
        [
            _month(r.month),
            r.currency,
            amount_text(r.received, r.currency),
            amount_text(r.refunded, r.currency),
            amount_text(r.net, r.currency) if r.net >= 0 else "-" + amount_text(-r.net, r.currency),
        ]
        for r in rows
    ]
    months = [add_months(period.first_month, k) for k in range(_span(period))]
    currencies = sorted({r.currency for r in rows})
    net = {(r.month, r.currency): r.net for r in rows}
    table.chart = line_chart(
        "chart-revenue",
        "Net revenue per month, by currency",
        "Succeeded payments minus refunds per month: "
        + (
            "; ".join(
                f"{_month(r.month)} {amount_text(abs(r.net), r.currency)} {r.currency}"
                f"{' (negative)' if r.net < 0 else ''}"
                for r in rows
            )
            or "none"
        )
        + ".",
        [_month(m) for m in months],
        [Line(c, [max(0.0, _major(net.get((m, c), 0), c)) for m in months]) for c in currencies],
    )
    return table


def cohorts(session: Session, period: DateRange, grace_days: int) -> Table:
    rows = service.cohorts(session, period)
    span = _span(period)
    table = Table(
        "cohorts",
        "Cohort retention",
        ["Cohort", "Members", *(f"Month {k}" for k in range(span))],
        note="Share of each cohort who are paid patrons at the end of the month k months later.",
    )
    table.rows = [
        [
            _month(r.cohort),
            str(r.size),
            *(percent_text(s) for s in r.shares),
            *([""] * (span - len(r.shares))),
        ]
        for r in rows
    ]
    longest = max((len(r.shares) for r in rows), default=0)
    average = [
        float(sum((r.shares[k] or Decimal(0)) for r in rows if len(r.shares) > k))
        / max(1, sum(1 for r in rows if len(r.shares) > k))
        for k in range(longest)
    ]
    table.chart = line_chart(
        "chart-cohorts",
        "Average cohort retention by month since joining",
        "Average share of a cohort still paying k months after its first month: "
        + (", ".join(f"month {k} {v:.1f}%" for k, v in enumerate(average)) or "no cohorts")
        + ".",
        [f"Month {k}" for k in range(longest)],
        [Line("Retention %", average)],
    )
    return table


def recovery(session: Session, period: DateRange, grace_days: int) -> Table:
    rows = service.recovery(session, period, grace_days)
    table = Table(
        "recovery",
        "Failed-payment recovery",
        ["Month", "Failed renewals", f"Paid within {grace_days} days", "Recovery rate"],
    )
    table.rows = [
        [_month(r.month), str(r.failed), str(r.recovered), percent_text(r.rate)] for r in rows
    ]
    table.chart = line_chart(
        "chart-recovery",
        "Failed and recovered renewals per month",
        "Failed renewals and those paid within the grace period: "
        + ", ".join(f"{_month(r.month)} {r.recovered} of {r.failed}" for r in rows)
        + ".",
        [_month(r.month) for r in rows],
        [Line("Failed", [r.failed for r in rows]), Line("Recovered", [r.recovered for r in rows])],
    )
    return table


def voting(session: Session, period: DateRange, grace_days: int) -> Table:
    rows = service.voting(session, period)
    table = Table(
        "voting",
        "Voting participation",
        ["Round", "Closed", "Eligible patrons", "Voted", "Participation"],
    )
    table.rows = [
        [r.title, f"{r.closes_at:%Y-%m-%d}", str(r.eligible), str(r.voters), percent_text(r.rate)]
        for r in rows
    ]
    table.chart = line_chart(
        "chart-voting",
        "Voting participation per round",
        "Share of eligible patrons who voted: "
        + ("; ".join(f"{r.title}: {percent_text(r.rate)}" for r in rows) or "no rounds closed")
        + ".",
        [f"{r.closes_at:%Y-%m-%d}" for r in rows],
        [Line("Participation %", [float(r.rate or 0) for r in rows])],
    )
    return table


def _span(period: DateRange) -> int:
    return (
        (period.last_month.year - period.first_month.year) * 12
        + (period.last_month.month - period.first_month.month)
        + 1
    )


REPORTS: dict[str, Callable[[Session, DateRange, int], Table]] = {
    "patrons": patrons,
    "mrr": mrr,
    "churn": churn,
    "revenue": revenue,
    "cohorts": cohorts,
    "recovery": recovery,
    "voting": voting,
}
