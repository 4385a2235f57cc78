"""Password hashing: argon2id at or above OWASP's parameters, upgraded when they change."""

from __future__ import annotations

from argon2 import PasswordHasher, extract_parameters

from membership.accounts import service
from membership.accounts.models import Member
from membership.database import utcnow


def test_hashes_are_argon2id_with_at_least_owasp_parameters():
    params = extract_parameters(service.hash_password("a long enough passphrase"))
    assert params.type.name == "ID"
    assert params.memory_cost >= 19 * 1024
    assert params.time_cost >= 2


def test_a_hash_made_with_weaker_parameters_is_upgraded_at_login():
    weak = PasswordHasher(time_cost=1, memory_cost=8 * 1024, parallelism=1)
    member = Member(email="m@example.org", display_name="M", password_changed_at=utcnow())
    member.password_hash = weak.hash("a long enough passphrase")
    assert service.check_password(member, "a long enough passphrase")
    assert extract_parameters(member.password_hash).memory_cost >= 19 * 1024


def test_a_wrong_password_does_not_touch_the_hash():
    member = Member(email="m@example.org", display_name="M", password_changed_at=utcnow())
    member.password_hash = service.hash_password("a long enough passphrase")
    before = member.password_hash
    assert not service.check_password(member, "a long enough passphrasE")
    assert member.password_hash == before


def test_an_account_without_a_password_never_matches():
    member = Member(email="m@example.org", display_name="M", password_changed_at=utcnow())
    assert not service.check_password(member, "")
    assert not service.check_password(member, "anything at all")


def test_long_passwords_are_not_truncated():
    long_password = "x" * 200 + "-end"
    member = Member(email="m@example.org", display_name="M", password_changed_at=utcnow())
    member.password_hash = service.hash_password(long_password)
    assert service.check_password(member, long_password)
    assert not service.check_password(member, "x" * 200 + "-END")
