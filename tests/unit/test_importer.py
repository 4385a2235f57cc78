"""Reading members.csv and payments.csv from another platform: what staff see when a line is bad."""

from __future__ import annotations

import codecs
from datetime import UTC, datetime

from membership.billing.rules import Interval
from membership.staff import importer

TIERS = {"reader", "insider", "co-creator"}
HEADER = ",".join(importer.MEMBER_HEADERS)
PAY_HEADER = ",".join(importer.PAYMENT_HEADERS)
GOOD = (
    "ada@example.org,Ada Lovelace,insider,month,EUR,1000,active,"
    "2025-01-15T10:00:00Z,,2026-12-15T10:00:00Z,cus_ada,sub_ada"
)


def members(*lines: str, header: str = HEADER) -> bytes:
    return "\n".join([header, *lines]).encode("utf-8")


def messages(parsed: importer.Parsed) -> list[str]:
    return [str(p) for p in parsed.problems]


def test_a_good_line_is_read_with_its_values():
    parsed = importer.parse_members(members(GOOD), TIERS)
    assert parsed.problems == []
    [row] = parsed.rows
    assert row.email == "ada@example.org"
    assert row.interval is Interval.MONTH
    assert row.amount == 1000
    assert row.started_at == datetime(2025, 1, 15, 10, tzinfo=UTC)
    assert row.subscription_key == "sub_ada"


def test_a_file_saved_with_a_byte_order_mark_is_accepted():
    data = codecs.BOM_UTF8 + members(GOOD)
    parsed = importer.parse_members(data, TIERS)
    assert parsed.problems == []
    assert len(parsed.rows) == 1


def test_a_name_with_a_comma_in_quotes_stays_one_value():
    line = GOOD.replace("Ada Lovelace", '"Lovelace, Ada"')
    parsed = importer.parse_members(members(line), TIERS)
    assert parsed.problems == []
    assert parsed.rows[0].name == "Lovelace, Ada"


def test_an_unquoted_comma_is_reported_with_its_line_number():
    line = GOOD.replace("Ada Lovelace", "Lovelace, Ada")
    parsed = importer.parse_members(members(GOOD.replace("ada@", "bob@"), line), TIERS)
    assert parsed.rows and len(parsed.rows) == 1
    [problem] = parsed.problems
    assert problem.line == 3
    assert "double quotes" in problem.message


def test_the_same_email_twice_is_refused_with_both_lines():
    other = GOOD.replace("ada@example.org", "ADA@Example.org").replace("sub_ada", "sub_2")
    other = other.replace("cus_ada", "cus_2")
    parsed = importer.parse_members(members(GOOD, other), TIERS)
    assert messages(parsed) == ["members.csv line 3: email ada@example.org is also on line 2."]


def test_an_unknown_tier_is_refused():
    parsed = importer.parse_members(members(GOOD.replace("insider", "gold")), TIERS)
    [problem] = parsed.problems
    assert problem.line == 2 and "unknown tier 'gold'" in problem.message


def test_known_tiers_come_from_the_caller():
    parsed = importer.parse_members(members(GOOD), {"insider"})
    assert parsed.problems == []
    parsed = importer.parse_members(members(GOOD), {"reader"})
    assert parsed.problems


def test_a_date_that_is_not_iso_is_refused():
    parsed = importer.parse_members(
        members(GOOD.replace("2025-01-15T10:00:00Z", "15/01/2025")), TIERS
    )
    [problem] = parsed.problems
    assert "started_at '15/01/2025' is not an ISO 8601 date" in problem.message


def test_ended_before_started_is_refused():
    line = GOOD.replace(",active,", ",ended,").replace(
        "2025-01-15T10:00:00Z,,", "2025-01-15T10:00:00Z,2024-12-01,"
    )
    parsed = importer.parse_members(members(line), TIERS)
    assert any("ended_at is before started_at" in m for m in messages(parsed))


def test_negative_zero_and_decimal_amounts_are_refused():
    for amount in ("-1000", "0", "10.00", "1e3", "ten"):
        parsed = importer.parse_members(members(GOOD.replace(",1000,", f",{amount},")), TIERS)
        assert parsed.rows == [], amount
        assert any("amount" in m for m in messages(parsed)), amount


def test_a_currency_code_must_be_three_letters():
    for currency in ("EURO", "E1R", "€"):
        parsed = importer.parse_members(members(GOOD.replace(",EUR,", f",{currency},")), TIERS)
        assert any("three-letter ISO code" in m for m in messages(parsed)), currency
    parsed = importer.parse_members(members(GOOD.replace(",EUR,", ",eur,")), TIERS)
    assert parsed.rows[0].currency == "EUR"


def test_a_status_outside_the_list_is_refused():
    parsed = importer.parse_members(members(GOOD.replace(",active,", ",paused,")), TIERS)
    assert any("status 'paused'" in m for m in messages(parsed))


def test_wrong_headers_are_named():
    header = HEADER.replace("stripe_subscription_id", "subscription")
    parsed = importer.parse_members(members(GOOD, header=header), TIERS)
    [problem] = parsed.problems
    assert problem.line == 1
    assert "missing stripe_subscription_id" in problem.message
    assert "unknown subscription" in problem.message


def test_bytes_that_are_not_utf8_are_refused():
    data = members(GOOD.replace("Ada Lovelace", "Zoë")).replace("ë".encode(), "ë".encode("latin-1"))
    parsed = importer.parse_members(data, TIERS)
    assert parsed.rows == []
    assert "is not UTF-8" in parsed.problems[0].message


def test_an_empty_file_is_refused():
    for data in (b"", b"\n\n", HEADER.encode()):
        parsed = importer.parse_members(data, TIERS)
        assert parsed.rows == []
        assert len(parsed.problems) == 1, data


def test_every_bad_line_is_listed_not_just_the_first():
    bad_tier = GOOD.replace("insider", "gold").replace("ada@", "b@").replace("_ada", "_b")
    bad_date = GOOD.replace("2026-12-15T10:00:00Z", "soon").replace("ada@", "c@")
    bad_date = bad_date.replace("sub_ada", "sub_c").replace("cus_ada", "cus_c")
    parsed = importer.parse_members(members(GOOD, bad_tier, bad_date), TIERS)
    assert [p.line for p in parsed.problems] == [3, 4]


def test_a_comped_member_needs_no_price_but_an_end():
    comped = "c@example.org,Cleo,reader,,,,comped,2026-01-01,2027-01-01,,,"
    parsed = importer.parse_members(members(comped), TIERS)
    assert parsed.problems == []
    assert parsed.rows[0].amount is None
    no_end = "c@example.org,Cleo,reader,,,,comped,2026-01-01,,,,"
    assert importer.parse_members(members(no_end), TIERS).problems


def test_payments_must_belong_to_a_known_member():
    data = f"{PAY_HEADER}\nzed@example.org,2026-01-01,500,EUR,donation,".encode()
    parsed = importer.parse_payments(data, {"ada@example.org"})
    assert "no member with email zed@example.org" in parsed.problems[0].message


def test_a_refund_must_match_an_earlier_payment():
    lines = [
        PAY_HEADER,
        "ada@example.org,2026-01-01,1000,EUR,subscription,in_1",
        "ada@example.org,2026-01-05,400,EUR,refund,re_1",
        "ada@example.org,2026-01-06,700,EUR,refund,re_2",
    ]
    parsed = importer.parse_payments("\n".join(lines).encode(), {"ada@example.org"})
    assert parsed.rows[1].refund_of == "in_1"
    [problem] = parsed.problems
    assert problem.line == 4 and "refund matches no earlier payment" in problem.message


def test_payments_without_a_stripe_id_get_stable_distinct_keys():
    lines = [PAY_HEADER] + ["ada@example.org,2026-01-01,500,EUR,donation,"] * 2
    first = importer.parse_payments("\n".join(lines).encode(), {"ada@example.org"})
    again = importer.parse_payments("\n".join(lines).encode(), {"ada@example.org"})
    keys = [row.key for row in first.rows]
    assert len(set(keys)) == 2
    assert keys == [row.key for row in again.rows]
