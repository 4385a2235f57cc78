"""Report rules: month arithmetic, leap years, half-up rounding and the date range staff type."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from membership.reports.rules import (
    RangeError,
    add_months,
    covers,
    days_in_month,
    end_of_day,
    month_range,
    monthly_recurring,
    months_between,
    parse_range,
    percent,
    percent_text,
)

TODAY = date(2025, 6, 15)


@pytest.mark.parametrize(
    ("month", "count", "expected"),
    [
        (date(2024, 1, 31), 1, date(2024, 2, 1)),
        (date(2024, 12, 1), 1, date(2025, 1, 1)),
        (date(2024, 1, 1), -1, date(2023, 12, 1)),
        (date(2024, 2, 29), 12, date(2025, 2, 1)),
        (date(2000, 1, 1), 240, date(2020, 1, 1)),
    ],
)
def test_months_are_counted_on_the_calendar(month: date, count: int, expected: date) -> None:
    assert add_months(month, count) == expected
    assert months_between(month, expected) == count


def test_february_has_29_days_in_a_leap_year_only() -> None:
    assert days_in_month(date(2024, 2, 10)) == 29
    assert days_in_month(date(2023, 2, 1)) == 28
    assert days_in_month(date(2000, 2, 1)) == 29
    assert days_in_month(date(1900, 2, 1)) == 28
    assert days_in_month(date(2024, 12, 1)) == 31


def test_a_month_range_lists_each_first_day() -> None:
    assert month_range(date(2023, 11, 20), date(2024, 2, 29)) == [
        date(2023, 11, 1),
        date(2023, 12, 1),
        date(2024, 1, 1),
        date(2024, 2, 1),
    ]


def test_the_end_of_the_leap_day_is_midnight_on_the_first_of_march() -> None:
    end = end_of_day(date(2024, 2, 29))
    assert end == datetime(2024, 3, 1, tzinfo=UTC)
    assert covers(datetime(2024, 2, 1, tzinfo=UTC), end, end)  # ends exactly then: still counted
    assert not covers(end, None, end)  # starts exactly then: counted from the next day


@pytest.mark.parametrize(
    ("monthly", "yearly", "expected"),
    [
        (500, 0, 500),
        (0, 1000, 83),  # 83.33
        (0, 1002, 84),  # 83.5 rounds half up
        (0, 1001, 83),  # 83.42
        (1, 6, 2),  # 1.5 rounds half up, once, on the sum
        (0, 0, 0),
    ],
)
def test_mrr_adds_a_twelfth_of_yearly_amounts_rounded_half_up_once(
    monthly: int, yearly: int, expected: int
) -> None:
    assert monthly_recurring(monthly, yearly) == expected


def test_percentages_have_one_decimal_and_a_dash_when_nothing_to_divide() -> None:
    assert percent(1, 3) == Decimal("33.3")
    assert percent(1, 8) == Decimal("12.5")
    assert percent(1, 16) == Decimal("6.3")  # 6.25 rounds half up
    assert percent(0, 0) is None
    assert percent_text(None) == "—"
    assert percent_text(Decimal("12.5")) == "12.5%"


def test_the_default_range_is_the_last_twelve_months() -> None:
    period = parse_range(None, "", TODAY)
    assert (period.start, period.end) == (date(2024, 7, 1), TODAY)


def test_a_range_on_the_leap_day_is_accepted() -> None:
    period = parse_range("2024-02-29", "2024-03-01", TODAY)
    assert (period.first_month, period.last_month) == (date(2024, 2, 1), date(2024, 3, 1))


@pytest.mark.parametrize(
    ("start", "end", "message"),
    [
        ("2024-05-01", "2024-01-01", "The end date is before the start date."),
        ("1999-12-31", "2024-01-01", "Reports start on 2000-01-01"),
        ("2001-01-01", "2024-01-01", "at most 20 years"),
        ("2024-01-01", "2099-01-01", "more than a year in the future"),
        ("2023-02-29", "2024-01-01", "YYYY-MM-DD"),
        ("2024-1-1", "2024-02-01", "YYYY-MM-DD"),
        ("last week", "", "YYYY-MM-DD"),
    ],
)
def test_a_bad_range_is_refused_with_a_reason(start: str, end: str, message: str) -> None:
    with pytest.raises(RangeError, match=message):
        parse_range(start, end, TODAY)


def test_twenty_years_exactly_is_allowed() -> None:
    assert parse_range("2005-01-01", "2024-12-31", TODAY).start == date(2005, 1, 1)
