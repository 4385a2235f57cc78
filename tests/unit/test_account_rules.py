"""Account rules, without the app or a database."""

from __future__ import annotations

import pytest

from membership.accounts import rules


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Reader@Example.ORG", "reader@example.org"),
        ("  spaced@example.org  ", "spaced@example.org"),
        ("Olena.K@EXAMPLE.com.ua", "olena.k@example.com.ua"),
        ("user@BÜCHER.de", "user@bücher.de"),
    ],
)
def test_emails_are_normalised_so_case_never_makes_a_second_account(raw, expected):
    assert rules.normalise_email(raw) == expected


@pytest.mark.parametrize(
    "raw", ["", "   ", "not-an-email", "a@b", "x" * 250 + "@example.org", "nul\x00@example.org"]
)
def test_invalid_emails_are_refused_with_a_readable_message(raw):
    with pytest.raises(rules.InvalidEmail, match="valid email address"):
        rules.normalise_email(raw)


def test_a_short_password_is_refused():
    assert rules.password_problem("short") == "Use at least 8 characters."


def test_a_common_password_is_refused_whatever_its_case():
    assert "common" in rules.password_problem("Password123")
    assert "common" in rules.password_problem("QWERTYUIOP")


def test_the_common_password_list_has_thousands_of_entries():
    assert len(rules.common_passwords()) > 5000
    assert "iloveyou" in rules.common_passwords()


def test_a_password_equal_to_the_email_is_refused():
    problem = rules.password_problem("Reader@Example.org", email="reader@example.org")
    assert problem == "Your password must not be your email address."


def test_long_passwords_with_any_characters_are_accepted_untruncated():
    passphrase = "Кава щоранку, 咖啡 ☕ and a long sentence " * 4
    assert len(passphrase) > 128
    assert rules.password_problem(passphrase) is None
    assert rules.password_problem("a" * 256 + "!") == "Use at most 256 characters."


def test_display_names_are_tidied_and_limited():
    assert rules.clean_display_name("  Olena   K.  ") == "Olena K."
    assert rules.clean_display_name("محمد ☕") == "محمد ☕"
    with pytest.raises(ValueError, match="Enter the name"):
        rules.clean_display_name("   ")
    with pytest.raises(ValueError, match="at most 80"):
        rules.clean_display_name("x" * 81)
    with pytest.raises(ValueError, match="cannot be shown"):
        rules.clean_display_name("bell\x07")


@pytest.mark.parametrize(
    "target",
    [
        "//evil.example",
        "https://evil.example",
        "/\\evil.example",
        "\\\\evil.example",
        "javascript:alert(1)",
        "http:/evil.example",
        "/ok\nLocation: x",
        "evil.example",
        "",
        None,
    ],
)
def test_next_redirects_to_other_sites_are_refused(target):
    assert rules.safe_next(target) is None


@pytest.mark.parametrize("target", ["/account/", "/staff/?page=2", "/vote#round-3"])
def test_next_redirects_within_the_site_are_kept(target):
    assert rules.safe_next(target) == target
