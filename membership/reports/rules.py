"""Report rules: date ranges, month arithmetic and rounding. Pure: no Flask, no database."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal

EARLIEST = date(2000, 1, 1)
MAX_YEARS = 20


class RangeError(ValueError):
    """A date range staff typed that we cannot report on; the message says why."""


@dataclass(frozen=True)
class DateRange:
    """Whole UTC days from ``start`` to ``end``, both included."""

    start: date
    end: date

    @property
    def first_month(self) -> date:
        return month_start(self.start)

    @property
    def last_month(self) -> date:
        return month_start(self.end)


def month_start(day: date) -> date:
    return day.replace(day=1)


def add_months(month: date, count: int) -> date:
    """The first day of the month ``count`` months after (or before) ``month``'s."""
    index = month.year * 12 + (month.month - 1) + count
    return date(index // 12, index % 12 + 1, 1)


def months_between(first: date, later: date) -> int:
    """How many calendar months ``later`` is after ``first`` (days ignored)."""
    return (later.year - first.year) * 12 + later.month - first.month


def month_range(first: date, last: date) -> list[date]:
    """First days of every month from ``first``'s to ``last``'s, both included."""
    return [add_months(month_start(first), k) for k in range(months_between(first, last) + 1)]


def days_in_month(month: date) -> int:
    return (add_months(month, 1) - month_start(month)).days


def midnight(day: date) -> datetime:
    """00:00 UTC at the start of ``day``."""
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def end_of_day(day: date) -> datetime:
    """The instant that ends ``day``: 00:00 UTC of the next day."""
    return midnight(day + timedelta(days=1))


def covers(start: datetime, end: datetime | None, instant: datetime) -> bool:
    """Whether a paid membership [start, end) is active at the instant that ends a day.

    Started before that instant, and not ended before it.
    """
    return start < instant and (end is None or end >= instant)


def monthly_recurring(monthly_sum: int, yearly_sum: int) -> int:
    """MRR in minor units: monthly amounts plus a twelfth of yearly ones, rounded half-up once."""
    total = Decimal(12 * monthly_sum + yearly_sum) / 12
    return int(total.quantize(Decimal(1), rounding=ROUND_HALF_UP))


def percent(part: int, whole: int) -> Decimal | None:
    """``part`` of ``whole`` in percent with one decimal, rounded half-up; None when whole is 0."""
    if whole == 0:
        return None
    return (Decimal(100 * part) / whole).quantize(Decimal("0.1"), rounding=ROUND_HALF_UP)


def percent_text(value: Decimal | None) -> str:
    return "—" if value is None else f"{value}%"


def parse_range(start_text: str | None, end_text: str | None, today: date) -> DateRange:
    """Read a from/to pair (YYYY-MM-DD); both empty means the last 12 months up to today."""
    start_text = (start_text or "").strip()
    end_text = (end_text or "").strip()
    end = _parse_day(end_text, "to") if end_text else today
    start = _parse_day(start_text, "from") if start_text else add_months(month_start(end), -11)
    if start < EARLIEST or end < EARLIEST:
        raise RangeError(f"Reports start on {EARLIEST.isoformat()}: choose a later date.")
    if end < start:
        raise RangeError("The end date is before the start date.")
    if end > today + timedelta(days=366):
        raise RangeError("The end date is more than a year in the future.")
    if add_months(month_start(start), MAX_YEARS * 12) <= month_start(end):
        raise RangeError(f"Choose a range of at most {MAX_YEARS} years.")
    return DateRange(start, end)


def _parse_day(text: str, name: str) -> date:
    try:
        if len(text) != 10:
            raise ValueError
        return date.fromisoformat(text)
    except ValueError:
        raise RangeError(f"Enter the “{name}” date as YYYY-MM-DD, like 2024-02-29.") from None
