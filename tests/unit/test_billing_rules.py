"""Billing rules without the app or a database: money, membership states, pauses, plan ids."""

from __future__ import annotations

import calendar
import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from membership.billing import rules
from membership.billing.rules import (
    AmountError,
    Interval,
    MembershipState,
    SubscriptionFacts,
    SubscriptionStatus,
    format_money,
    membership_state,
    mrr_minor,
    parse_amount,
    pause_resumes_at,
    plan_id,
)

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
GRACE = timedelta(days=7)
MAX_MINOR_EUR = rules.MAX_AMOUNT_MAJOR * 100

# What a reader may be told about an amount; nothing else (no Python or Decimal internals).
READABLE = re.compile(
    r"Enter an amount\.|Enter the amount as a number, like 5 or 7\.50\.|"
    r"Enter an amount above zero\.|That is more than we can take at once \(100,000\)\.|"
    r"Use at most two decimals for (EUR|USD|GBP)\.|Use no decimals for JPY\."
)


# --- parse_amount ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "currency", "expected"),
    [
        ("7.50", "EUR", 750),
        ("7,5", "EUR", 750),
        ("7,50", "EUR", 750),
        ("7", "EUR", 700),
        (" 7.50 ", "EUR", 750),
        ("1 000", "EUR", 100_000),
        ("1\u00a0000", "EUR", 100_000),  # a no-break space, as some keyboards type it
        (".5", "EUR", 50),
        ("0.01", "EUR", 1),
        ("100000", "EUR", MAX_MINOR_EUR),  # the ceiling itself is allowed
        ("7.50", "eur", 750),
        ("12.34", "USD", 1234),
        ("500", "JPY", 500),  # zero-decimal: not multiplied by 100
        ("1 000", "JPY", 1000),
        ("5.0", "JPY", 5),
        ("5000", "KRW", 5000),
    ],
)
def test_amounts_a_reader_types_become_minor_units(text, currency, expected):
    amount = parse_amount(text, currency)
    assert amount == expected
    assert type(amount) is int


@pytest.mark.parametrize(
    ("text", "currency", "message"),
    [
        ("5.5", "JPY", "Use no decimals for JPY."),
        ("0.5", "JPY", "Use no decimals for JPY."),
        ("7.505", "EUR", "Use at most two decimals for EUR."),
        ("0.001", "EUR", "Use at most two decimals for EUR."),
        ("-5", "EUR", "Enter an amount above zero."),
        ("-0.01", "EUR", "Enter an amount above zero."),
        ("0", "EUR", "Enter an amount above zero."),
        ("0.00", "EUR", "Enter an amount above zero."),
        ("-0", "EUR", "Enter an amount above zero."),
        ("NaN", "EUR", "Enter the amount as a number, like 5 or 7.50."),
        ("sNaN", "EUR", "Enter the amount as a number, like 5 or 7.50."),
        ("inf", "EUR", "Enter the amount as a number, like 5 or 7.50."),
        ("1e3", "EUR", "Enter the amount as a number, like 5 or 7.50."),
        ("١٢", "EUR", "Enter the amount as a number, like 5 or 7.50."),
        ("-Infinity", "EUR", "Enter the amount as a number, like 5 or 7.50."),
        ("100000.01", "EUR", "That is more than we can take at once (100,000)."),
        ("100001", "EUR", "That is more than we can take at once (100,000)."),
        ("1e99", "EUR", "Enter the amount as a number, like 5 or 7.50."),
        ("", "EUR", "Enter an amount."),
        ("   ", "EUR", "Enter an amount."),
        ("9" * 21, "EUR", "Enter an amount."),  # longer than any form lets through
        ("abc", "EUR", "Enter the amount as a number, like 5 or 7.50."),
        ("five", "EUR", "Enter the amount as a number, like 5 or 7.50."),
        ("€5", "EUR", "Enter the amount as a number, like 5 or 7.50."),
        ("5 EUR", "EUR", "Enter the amount as a number, like 5 or 7.50."),
        ("1,000.50", "EUR", "Enter the amount as a number, like 5 or 7.50."),
        ("5..0", "EUR", "Enter the amount as a number, like 5 or 7.50."),
        ("0x10", "EUR", "Enter the amount as a number, like 5 or 7.50."),
    ],
)
def test_amounts_we_cannot_take_are_refused_with_a_readable_message(text, currency, message):
    with pytest.raises(AmountError) as refused:
        parse_amount(text, currency)
    assert str(refused.value) == message
    assert READABLE.fullmatch(message)


def test_none_is_refused_like_an_empty_field():
    with pytest.raises(AmountError, match="Enter an amount"):
        parse_amount(None, "EUR")  # type: ignore[arg-type]


@given(st.text(max_size=30), st.sampled_from(["EUR", "USD", "GBP", "JPY"]))
def test_any_text_is_either_a_positive_amount_within_the_ceiling_or_a_readable_refusal(
    text, currency
):
    try:
        amount = parse_amount(text, currency)
    except AmountError as exc:
        assert READABLE.fullmatch(str(exc)), str(exc)
    else:
        assert type(amount) is int
        assert 0 < amount <= rules.MAX_AMOUNT_MAJOR * rules.minor_units(currency)


@given(st.integers(min_value=1, max_value=MAX_MINOR_EUR))
def test_parsing_the_decimal_text_of_a_cent_amount_gives_it_back(amount):
    text = f"{amount // 100}.{amount % 100:02d}"
    assert parse_amount(text, "EUR") == amount
    assert parse_amount(text.replace(".", ","), "EUR") == amount


@given(
    st.sampled_from(["EUR", "USD", "GBP", "JPY", "KRW", "CHF"]),
    st.integers(min_value=1, max_value=rules.MAX_AMOUNT_MAJOR),
    st.integers(min_value=0, max_value=99),
)
def test_what_format_money_shows_parses_back_to_the_same_amount(currency, major, cents):
    factor = rules.minor_units(currency)
    amount = major * factor + (cents if factor == 100 and major < rules.MAX_AMOUNT_MAJOR else 0)
    shown = format_money(amount, currency)
    # What a reader would copy: without the symbol or code, and without thousands separators.
    typed = shown.replace(rules.CURRENCY_SYMBOLS.get(currency, "@"), "")
    typed = typed.replace(currency, "").replace(",", "").strip()
    assert parse_amount(typed, currency) == amount


def test_no_float_is_ever_involved():
    # 0.1 + 0.2 != 0.3 in binary floating point; in minor units it is exact.
    assert parse_amount("0.10", "EUR") + parse_amount("0.20", "EUR") == parse_amount("0.30", "EUR")
    assert parse_amount("19.99", "EUR") == 1999  # int(19.99 * 100) would be 1998
    assert parse_amount("4.35", "EUR") == 435  # int(4.35 * 100) would be 434


# --- format_money ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("amount", "currency", "shown"),
    [
        (750, "EUR", "€7.50"),
        (500, "EUR", "€5"),
        (5, "EUR", "€0.05"),
        (123_456, "EUR", "€1,234.56"),
        (100_000, "EUR", "€1,000"),
        (750, "eur", "€7.50"),
        (999, "USD", "$9.99"),
        (400, "GBP", "£4"),
        (500, "JPY", "¥500"),
        (1_234_567, "JPY", "¥1,234,567"),
        (750, "CHF", "7.50 CHF"),
        (100, "KRW", "100 KRW"),
        (12_345, "UAH", "₴123.45"),
    ],
)
def test_money_is_shown_with_its_symbol_and_only_the_decimals_it_needs(amount, currency, shown):
    assert format_money(amount, currency) == shown


# --- monthly recurring revenue -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("amount", "interval", "mrr"),
    [
        (500, Interval.MONTH, 500),
        (5000, Interval.YEAR, 417),  # 416.67
        (1200, Interval.YEAR, 100),
        (6, Interval.YEAR, 1),  # 0.5 rounds half up
        (18, Interval.YEAR, 2),  # 1.5
        (30, Interval.YEAR, 3),  # 2.5: half up, not to even
        (5, Interval.YEAR, 0),  # 0.42
        (1, Interval.MONTH, 1),
    ],
)
def test_mrr_counts_a_yearly_price_as_a_twelfth_rounded_half_up(amount, interval, mrr):
    assert mrr_minor(amount, interval) == mrr


@given(st.integers(min_value=1, max_value=10**9))
def test_mrr_of_a_yearly_price_is_within_half_a_minor_unit_of_a_twelfth(amount):
    mrr = mrr_minor(amount, Interval.YEAR)
    assert type(mrr) is int
    assert abs(Decimal(mrr) - Decimal(amount) / 12) <= Decimal("0.5")
    assert mrr_minor(amount * 12, Interval.YEAR) == amount
    assert mrr_minor(amount, Interval.MONTH) == amount


# --- membership states -------------------------------------------------------------------------


def facts(status: str, **kwargs) -> SubscriptionFacts:
    return SubscriptionFacts(status=SubscriptionStatus(status), **kwargs)


def state(f: SubscriptionFacts | None, comped_until: datetime | None = None) -> MembershipState:
    return membership_state(f, NOW, GRACE, comped_until)


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ("active", MembershipState.ACTIVE),
        ("trialing", MembershipState.TRIALING),
        ("incomplete", MembershipState.NONE),  # still entering a card: not a patron yet
        ("incomplete_expired", MembershipState.ENDED),
        ("canceled", MembershipState.ENDED),
        ("paused", MembershipState.PAUSED),
        ("unpaid", MembershipState.LAPSED),
    ],
)
def test_each_stripe_status_gives_one_membership_state(status, expected):
    assert state(facts(status)) is expected


def test_every_stripe_status_is_covered():
    assert {s.value for s in SubscriptionStatus} == {
        "incomplete",
        "incomplete_expired",
        "trialing",
        "active",
        "past_due",
        "canceled",
        "unpaid",
        "paused",
    }
    for status in SubscriptionStatus:
        assert isinstance(state(facts(status.value)), MembershipState)


def test_no_subscription_means_not_a_patron():
    assert state(None) is MembershipState.NONE
    assert not rules.is_patron(state(None))


@pytest.mark.parametrize(
    ("overdue_for", "expected"),
    [
        (timedelta(0), MembershipState.PAST_DUE),
        (timedelta(days=6, hours=23), MembershipState.PAST_DUE),
        (GRACE, MembershipState.PAST_DUE),  # the last moment of grace
        (GRACE + timedelta(seconds=1), MembershipState.LAPSED),
        (timedelta(days=30), MembershipState.LAPSED),
    ],
)
def test_a_failed_renewal_keeps_perks_during_the_grace_period_only(overdue_for, expected):
    result = state(facts("past_due", past_due_since=NOW - overdue_for))
    assert result is expected
    assert rules.is_patron(result) is (expected is MembershipState.PAST_DUE)


def test_past_due_without_a_known_start_counts_from_now():
    assert state(facts("past_due")) is MembershipState.PAST_DUE


def test_unpaid_is_lapsed_even_within_the_grace_period():
    assert state(facts("unpaid", past_due_since=NOW)) is MembershipState.LAPSED


def test_a_cancellation_keeps_perks_until_the_period_ends():
    period_end = NOW + timedelta(days=10)
    canceling = facts("active", cancel_at_period_end=True, current_period_end=period_end)
    assert state(canceling) is MembershipState.CANCELING
    assert rules.is_patron(MembershipState.CANCELING)
    at_end = membership_state(canceling, period_end, GRACE)
    after = membership_state(canceling, period_end + timedelta(seconds=1), GRACE)
    assert at_end is MembershipState.ENDED
    assert after is MembershipState.ENDED
    assert not rules.is_patron(after)


def test_a_cancellation_without_a_known_period_end_is_canceling():
    assert state(facts("active", cancel_at_period_end=True)) is MembershipState.CANCELING


def test_a_trial_that_will_be_canceled_is_canceling():
    f = facts("trialing", cancel_at_period_end=True, current_period_end=NOW + timedelta(days=3))
    assert state(f) is MembershipState.CANCELING


def test_a_requested_pause_is_paused_whatever_the_status_says():
    until = NOW + timedelta(days=40)
    assert state(facts("active", pause_requested=True, paused_until=until)) is (
        MembershipState.PAUSED
    )
    assert state(facts("active", pause_requested=True)) is MembershipState.PAUSED
    assert state(facts("past_due", pause_requested=True)) is MembershipState.PAUSED
    assert not rules.is_patron(MembershipState.PAUSED)


def test_a_paused_until_date_alone_does_not_pause():
    # pause_collection is what pauses; a stale date left behind must not.
    assert state(facts("active", paused_until=NOW + timedelta(days=5))) is MembershipState.ACTIVE


def test_an_ended_subscription_stays_ended_whatever_else_it_says():
    for status in ("canceled", "incomplete_expired"):
        f = facts(status, cancel_at_period_end=True, pause_requested=True, past_due_since=NOW)
        assert state(f) is MembershipState.ENDED


@pytest.mark.parametrize(
    ("paid", "comped_until", "expected"),
    [
        (None, NOW + timedelta(days=1), MembershipState.COMPED),
        (None, NOW, MembershipState.NONE),  # ends at that moment
        (None, NOW - timedelta(days=1), MembershipState.NONE),
        (facts("canceled"), NOW + timedelta(days=1), MembershipState.COMPED),
        (
            facts("past_due", past_due_since=NOW - timedelta(days=30)),
            NOW + timedelta(days=1),
            MembershipState.COMPED,
        ),
        (facts("canceled"), NOW - timedelta(days=1), MembershipState.ENDED),
        # Paying patrons stay paying patrons: a comp never hides a real subscription.
        (facts("active"), NOW + timedelta(days=1), MembershipState.ACTIVE),
        (facts("past_due", past_due_since=NOW), NOW + timedelta(days=1), MembershipState.PAST_DUE),
        (facts("paused"), NOW + timedelta(days=1), MembershipState.PAUSED),
        (facts("incomplete"), NOW + timedelta(days=1), MembershipState.COMPED),
    ],
)
def test_staff_comps_grant_perks_only_to_those_without_a_paid_membership(
    paid, comped_until, expected
):
    assert state(paid, comped_until) is expected


def test_which_states_enjoy_perks():
    assert {s for s in MembershipState if rules.is_patron(s)} == {
        MembershipState.ACTIVE,
        MembershipState.TRIALING,
        MembershipState.PAST_DUE,
        MembershipState.CANCELING,
        MembershipState.COMPED,
    }


def test_only_final_statuses_end_the_live_subscription():
    assert {s for s in SubscriptionStatus if not rules.is_live(s)} == {
        SubscriptionStatus.CANCELED,
        SubscriptionStatus.INCOMPLETE_EXPIRED,
    }


# --- pauses ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("start", "months", "resumes"),
    [
        ((2027, 1, 31), 1, (2027, 2, 28)),
        ((2028, 1, 31), 1, (2028, 2, 29)),  # leap year
        ((2100, 1, 31), 1, (2100, 2, 28)),  # not a leap year (divisible by 100)
        ((2000, 1, 31), 1, (2000, 2, 29)),  # a leap year (divisible by 400)
        ((2027, 11, 30), 3, (2028, 2, 29)),
        ((2026, 12, 31), 2, (2027, 2, 28)),
        ((2026, 12, 15), 1, (2027, 1, 15)),
        ((2026, 10, 31), 1, (2026, 11, 30)),
        ((2026, 3, 31), 3, (2026, 6, 30)),
        ((2026, 11, 25), 2, (2027, 1, 25)),
        ((2026, 11, 30), 1, (2026, 12, 30)),
        ((2026, 12, 31), 1, (2027, 1, 31)),
    ],
)
def test_a_pause_resumes_the_same_day_months_later_or_the_last_day_of_a_shorter_month(
    start, months, resumes
):
    now = datetime(*start, 9, 30, 15, tzinfo=UTC)
    assert pause_resumes_at(now, months) == datetime(*resumes, 9, 30, 15, tzinfo=UTC)


@pytest.mark.parametrize("months", [0, 4, -1, 12])
def test_a_pause_lasts_one_to_three_months_only(months):
    with pytest.raises(ValueError, match="one, two or three months"):
        pause_resumes_at(NOW, months)


@given(
    st.datetimes(
        min_value=datetime(2000, 1, 1), max_value=datetime(2200, 12, 31), timezones=st.just(UTC)
    ),
    st.sampled_from([1, 2, 3]),
)
def test_a_pause_always_ends_in_the_right_month_and_later(now, months):
    resumes = pause_resumes_at(now, months)
    month_index = now.year * 12 + now.month - 1 + months
    assert (resumes.year, resumes.month) == (month_index // 12, month_index % 12 + 1)
    assert resumes.day == min(now.day, calendar.monthrange(resumes.year, resumes.month)[1])
    assert resumes.time() == now.time()
    assert resumes.tzinfo is UTC
    assert timedelta(days=28 * months - 3) <= resumes - now <= timedelta(days=31 * months)


# --- plan ids ----------------------------------------------------------------------------------


def test_a_plan_id_names_tier_interval_currency_and_amount():
    assert plan_id("reader", Interval.MONTH, "EUR", 500) == "membership-reader-month-eur-500"
    assert plan_id("co-creator", Interval.YEAR, "gbp", 20000) == (
        "membership-co-creator-year-gbp-20000"
    )


@given(
    st.sampled_from(["reader", "insider", "co-creator"]),
    st.sampled_from(list(Interval)),
    st.sampled_from(["EUR", "USD", "GBP", "JPY"]),
    st.integers(min_value=1, max_value=10**7),
    st.sampled_from(["reader", "insider", "co-creator"]),
    st.sampled_from(list(Interval)),
    st.sampled_from(["EUR", "USD", "GBP", "JPY"]),
    st.integers(min_value=1, max_value=10**7),
)
def test_two_prices_share_a_plan_id_only_when_they_are_the_same_price(
    slug_a, interval_a, currency_a, amount_a, slug_b, interval_b, currency_b, amount_b
):
    a = (slug_a, interval_a, currency_a, amount_a)
    b = (slug_b, interval_b, currency_b, amount_b)
    assert (plan_id(*a) == plan_id(*b)) is (a == b)
    assert plan_id(*a) == plan_id(slug_a, interval_a, currency_a.lower(), amount_a)
    assert len(plan_id(*a)) <= 120  # fits prices.stripe_plan_id
