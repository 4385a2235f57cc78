"""The member API the newsroom's main site calls: status and perks by email, behind an API key."""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import pytest
from flask import Flask
from sqlalchemy import select

from membership.accounts.models import Member
from membership.api import service as api
from membership.api.models import ApiKey
from membership.billing.models import Payment, PaymentKind, PaymentStatus, Subscription, Tier
from membership.billing.rules import Interval, MembershipState, SubscriptionStatus
from membership.database import utcnow
from membership.extensions import db
from membership.perks.models import Grant, Perk, PerkKind, TierPerk
from tests.support.queries import Queries, count_queries

FIELDS = {
    "email",
    "status",
    "tier",
    "interval",
    "currency",
    "amount",
    "current_period_end",
    "cancel_at_period_end",
    "perks",
    "patron",
}
PERIOD_END = datetime(2031, 1, 2, 3, 4, 5, tzinfo=UTC)
_ids = itertools.count(1)


# --- fixtures and helpers ------------------------------------------------------------------------


def new_key(app: Flask, name: str = "main site") -> str:
    with app.app_context():
        made = api.create_key(db.session, name)
        db.session.commit()
        return made.secret


@pytest.fixture
def key(app: Flask, db_session: Any) -> str:
    return new_key(app)


def auth(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def get_member(client: Any, email: str, secret: str | None, **kwargs: Any) -> Any:
    headers = auth(secret) if secret is not None else {}
    return client.get(f"/api/v1/members/{quote(email, safe='@')}", headers=headers, **kwargs)


@pytest.fixture
def perks(db_session: Any, catalog: dict[str, Tier]) -> dict[str, Perk]:
    """ad_free from Reader up, newsletter from Insider up, merch at Reader but withheld above."""
    made = {
        key: Perk(key=key, name=name, kind=PerkKind.FLAG)
        for key, name in [
            ("ad_free", "Ad-free reading"),
            ("newsletter", "Patrons' newsletter"),
            ("merch", "Merch discount"),
        ]
    }
    db_session.add_all(made.values())
    db_session.flush()
    db_session.add_all(
        [
            TierPerk(tier=catalog["reader"], perk=made["ad_free"]),
            TierPerk(tier=catalog["insider"], perk=made["newsletter"]),
            TierPerk(tier=catalog["reader"], perk=made["merch"]),
            TierPerk(tier=catalog["insider"], perk=made["merch"], grant=Grant.WITHHOLD),
        ]
    )
    db_session.commit()
    return made


def subscribe(
    db_session: Any,
    member: Member,
    tier: Tier,
    *,
    interval: Interval = Interval.MONTH,
    currency: str = "EUR",
    status: SubscriptionStatus = SubscriptionStatus.ACTIVE,
    state: MembershipState = MembershipState.ACTIVE,
    live: bool = True,
    current_period_end: datetime | None = PERIOD_END,
    **fields: Any,
) -> Subscription:
    price = tier.listed_price(interval, currency)
    assert price is not None
    subscription = Subscription(
        member=member,
        price=price,
        stripe_subscription_id=f"sub_api_test_{next(_ids)}",
        status=status,
        state=state,
        live=live,
        current_period_end=current_period_end,
        **fields,
    )
    db_session.add(subscription)
    db_session.commit()
    return subscription


# --- what the main site gets ---------------------------------------------------------------------


def test_a_patron_gets_every_field_and_the_perks_of_their_tier(
    client, key, make_member, catalog, perks, db_session
):
    member = make_member("patron@example.org")
    subscribe(db_session, member, catalog["insider"], interval=Interval.YEAR, currency="GBP")

    response = get_member(client, "patron@example.org", key)

    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    assert response.get_json() == {
        "email": "patron@example.org",
        "status": "active",
        "tier": "insider",
        "interval": "year",
        "currency": "GBP",
        "amount": 8000,
        "current_period_end": "2031-01-02T03:04:05Z",
        "cancel_at_period_end": False,
        # Insider inherits ad_free from Reader, adds newsletter, and staff withheld merch.
        "perks": ["ad_free", "newsletter"],
        "patron": True,
    }


def test_a_patron_who_cancelled_keeps_perks_until_the_period_ends(
    client, key, make_member, catalog, perks, db_session
):
    member = make_member()
    subscribe(db_session, member, catalog["reader"], cancel_at_period_end=True)

    body = get_member(client, member.email, key).get_json()

    assert body["status"] == "canceling"
    assert body["cancel_at_period_end"] is True
    assert body["patron"] is True
    assert body["perks"] == ["ad_free", "merch"]
    assert (body["tier"], body["interval"], body["currency"], body["amount"]) == (
        "reader",
        "month",
        "EUR",
        500,
    )


def test_a_reader_who_never_joined_is_not_a_patron(client, key, make_member, perks):
    member = make_member()

    response = get_member(client, member.email, key)

    assert response.status_code == 200
    assert response.get_json() == {
        "email": member.email,
        "status": "none",
        "tier": None,
        "interval": None,
        "currency": None,
        "amount": None,
        "current_period_end": None,
        "cancel_at_period_end": False,
        "perks": [],
        "patron": False,
    }


@pytest.mark.parametrize(
    ("fields", "expected_status"),
    [
        pytest.param(
            {
                "status": SubscriptionStatus.PAST_DUE,
                "state": MembershipState.LAPSED,
                "past_due_since": utcnow() - timedelta(days=30),
            },
            "lapsed",
            id="lapsed",
        ),
        pytest.param(
            {
                "status": SubscriptionStatus.CANCELED,
                "state": MembershipState.ENDED,
                "live": False,
                "ended_at": utcnow() - timedelta(days=3),
                "current_period_end": utcnow() - timedelta(days=3),
            },
            "ended",
            id="ended",
        ),
        pytest.param(
            {"status": SubscriptionStatus.PAUSED, "state": MembershipState.PAUSED},
            "paused",
            id="paused",
        ),
    ],
)
def test_a_former_patron_has_no_perks_but_their_last_membership_is_described(
    client, key, make_member, catalog, perks, db_session, fields, expected_status
):
    member = make_member()
    subscribe(db_session, member, catalog["insider"], **fields)

    body = get_member(client, member.email, key).get_json()

    assert set(body) == FIELDS
    assert body["status"] == expected_status
    assert body["patron"] is False
    assert body["perks"] == []
    assert body["tier"] == "insider"
    assert body["amount"] == 1000


def test_a_card_still_being_entered_is_no_membership_yet(
    client, key, make_member, catalog, perks, db_session
):
    member = make_member()
    subscribe(
        db_session,
        member,
        catalog["insider"],
        status=SubscriptionStatus.INCOMPLETE,
        state=MembershipState.NONE,
    )

    body = get_member(client, member.email, key).get_json()

    assert body["status"] == "none" and body["patron"] is False and body["perks"] == []
    assert body["tier"] is None and body["amount"] is None


def test_the_status_follows_the_clock_not_the_stored_state(
    client, key, make_member, catalog, perks, db_session
):
    """A renewal failed long ago: the stored state still says past due, but grace is over."""
    member = make_member()
    subscribe(
        db_session,
        member,
        catalog["reader"],
        status=SubscriptionStatus.PAST_DUE,
        state=MembershipState.PAST_DUE,
        past_due_since=utcnow() - timedelta(days=8),
    )

    body = get_member(client, member.email, key).get_json()

    assert body["status"] == "lapsed" and body["perks"] == []


# --- emails --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "asked", ["Reader.Case@Example.ORG", "READER.CASE@EXAMPLE.ORG", " reader.case@example.org"]
)
def test_the_email_is_matched_whatever_its_case(client, key, make_member, asked):
    make_member("reader.case@example.org")

    response = get_member(client, asked, key)

    assert response.status_code == 200
    assert response.get_json()["email"] == "reader.case@example.org"


def test_an_address_with_a_plus_and_a_slash_is_found(client, key, make_member):
    make_member("first+news/letters@example.org")

    response = get_member(client, "first+news/letters@example.org", key)

    assert response.status_code == 200, response.get_json()


@pytest.mark.parametrize(
    "malformed",
    [
        "not-an-email",
        "two@@example.org",
        "nobody@",
        "@example.org",
        "a" * 300 + "@example.org",
        "nul\x00byte@example.org",
        "emoji@🙂",
        "spaces in@example.org",
    ],
)
def test_a_malformed_email_is_a_400_with_a_message(client, key, malformed):
    response = get_member(client, malformed, key)

    assert response.status_code == 400
    body = response.get_json()
    assert body["message"] and body["error"]
    assert response.headers["Cache-Control"] == "no-store"


@pytest.mark.parametrize(
    "raw_path",
    ["%ff%fe@example.org", "%00", "..%2F..%2Fetc", "a@b%0d%0aX-Injected:%201", "%C0%AE@x.org"],
)
def test_strange_bytes_in_the_address_are_refused_without_an_error(client, key, raw_path):
    response = client.get(f"/api/v1/members/{raw_path}", headers=auth(key))

    assert response.status_code in (400, 404)
    assert response.is_json
    assert "X-Injected" not in response.headers


def test_an_unknown_member_is_a_404(client, key):
    response = get_member(client, "nobody@example.org", key)

    assert response.status_code == 404
    assert response.get_json()["message"]
    assert response.headers["Cache-Control"] == "no-store"


def test_a_deleted_member_is_a_404(client, key, make_member, db_session):
    member = make_member("gone@example.org")
    member.deleted_at = utcnow()
    db_session.commit()

    assert get_member(client, "gone@example.org", key).status_code == 404


# --- keys ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({}, id="no header"),
        pytest.param({"Authorization": "Bearer"}, id="empty bearer"),
        pytest.param({"Authorization": "Bearer mk_not-a-real-key"}, id="unknown key"),
        pytest.param({"Authorization": "Bearer " + "mk_" + "x" * 5000}, id="huge key"),
        pytest.param({"Authorization": "Basic bWFpbjpzaXRl"}, id="basic auth"),
        pytest.param({"Authorization": "Token mk_abc"}, id="other scheme"),
        pytest.param({"Authorization": "Bearer mk_\u00e9\u00e9"}, id="non-ascii key"),
    ],
)
def test_without_a_valid_key_the_answer_is_401_and_says_nothing_else(
    client, key, make_member, headers
):
    member = make_member()
    for email in (member.email, "nobody@example.org", "not-an-email"):
        response = client.get(f"/api/v1/members/{email}", headers=headers)
        assert response.status_code == 401, email
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
        assert response.headers["Cache-Control"] == "no-store"
        assert set(response.get_json()) == {"error", "message"}
        assert member.email not in response.get_data(as_text=True)


def test_a_wrong_key_is_told_it_is_invalid(client, key, make_member):
    member = make_member()
    missing = get_member(client, member.email, None)
    wrong = get_member(client, member.email, key[:-1] + ("A" if key[-1] != "A" else "B"))
    assert missing.headers["WWW-Authenticate"] == 'Bearer realm="member-api"'
    assert 'error="invalid_token"' in wrong.headers["WWW-Authenticate"]


def test_the_stored_hash_is_not_a_key(app, client, key, make_member, db_session):
    member = make_member()
    stored = db_session.scalar(select(ApiKey.key_hash))
    assert stored != key and key not in stored
    assert get_member(client, member.email, stored).status_code == 401
    assert get_member(client, member.email, "mk_" + stored).status_code == 401


def test_a_revoked_key_stops_working_at_once(app, client, key, make_member):
    member = make_member()
    assert get_member(client, member.email, key).status_code == 200
    with app.app_context():
        api.revoke(db.session, "main site")
        db.session.commit()
    assert get_member(client, member.email, key).status_code == 401


def test_the_api_needs_no_cookie_and_no_csrf_token(app, key, make_member, db_session):
    member = make_member()
    browser = app.test_client(use_cookies=False)
    response = get_member(browser, member.email, key)
    assert response.status_code == 200
    assert "Set-Cookie" not in response.headers


def test_last_used_is_recorded_at_most_once_a_minute(app, client, key, make_member, db_session):
    member = make_member()
    api_key = db_session.scalar(select(ApiKey))
    assert api_key.last_used_at is None

    get_member(client, member.email, key)
    db_session.expire_all()
    first = api_key.last_used_at
    assert first is not None and utcnow() - first < timedelta(minutes=1)

    get_member(client, member.email, key)
    db_session.expire_all()
    assert api_key.last_used_at == first  # no write for a second call within the minute

    api_key.last_used_at = utcnow() - timedelta(minutes=2)
    db_session.commit()
    get_member(client, "not-an-email", key)  # any authenticated call counts as a use
    db_session.expire_all()
    assert utcnow() - api_key.last_used_at < timedelta(minutes=1)


def test_authenticate_compares_hashes_and_ignores_what_is_not_a_key(app, db_session, key):
    with app.app_context():
        assert api.authenticate(db.session, key) is not None
        assert api.authenticate(db.session, "") is None
        assert api.authenticate(db.session, key.removeprefix("mk_")) is None
        assert api.authenticate(db.session, key + "x") is None


# --- rate limit ----------------------------------------------------------------------------------


def test_over_the_limit_a_key_gets_429_in_json_and_other_keys_do_not(
    app, client, key, make_member, monkeypatch
):
    monkeypatch.setitem(app.config, "API_RATE_LIMIT", "3 per minute")
    other = new_key(app, "newsletter service")
    member = make_member()

    statuses = [get_member(client, member.email, key).status_code for _ in range(3)]
    over = get_member(client, member.email, key)

    assert statuses == [200, 200, 200]
    assert over.status_code == 429
    body = over.get_json()
    assert set(body) == {"error", "message"} and body["message"]
    assert int(over.headers["Retry-After"]) > 0
    assert over.headers["Cache-Control"] == "no-store"
    assert get_member(client, member.email, other).status_code == 200


def test_the_default_limit_is_generous_and_configurable(app):
    from membership.config import ConfigError, from_environment

    assert app.config["API_RATE_LIMIT"] == "6000 per minute"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("API_RATE_LIMIT", "100 per second")
        assert from_environment("/tmp")["API_RATE_LIMIT"] == "100 per second"
        patch.setenv("API_RATE_LIMIT", "lots")
        with pytest.raises(ConfigError, match="API_RATE_LIMIT"):
            from_environment("/tmp")


# --- speed: a fixed number of queries ------------------------------------------------------------


@pytest.fixture
def statements(app: Flask, db_session: Any) -> Iterator[Queries]:
    """Every SQL statement sent to the database while the test runs (savepoints left out)."""
    with app.app_context():
        engine = db.engine
    with count_queries(engine) as seen:
        yield seen


def test_a_request_costs_the_same_few_queries_however_much_a_member_has(
    client, key, make_member, catalog, perks, db_session, statements
):
    plain = make_member()
    small = make_member()
    subscribe(db_session, small, catalog["reader"])
    big = make_member()
    old = subscribe(
        db_session,
        big,
        catalog["reader"],
        status=SubscriptionStatus.CANCELED,
        live=False,
        current_period_end=utcnow() - timedelta(days=40),
    )
    current = subscribe(db_session, big, catalog["co-creator"], currency="USD")
    for n in range(30):
        db_session.add(
            Payment(
                member_id=big.id,
                subscription_id=(old if n % 2 else current).id,
                kind=PaymentKind.SUBSCRIPTION,
                status=PaymentStatus.SUCCEEDED,
                amount=2500,
                currency="USD",
                stripe_invoice_id=f"in_api_test_{n}",
                paid_at=utcnow() - timedelta(days=n),
            )
        )
    for n in range(15):
        perk = Perk(key=f"extra_{n:02}", name=f"Extra {n}", kind=PerkKind.FLAG)
        db_session.add(perk)
        db_session.add(TierPerk(tier=catalog["co-creator"], perk=perk))
    db_session.commit()
    emails = {"plain": plain.email, "small": small.email, "big": big.email}
    get_member(client, plain.email, key)  # the key's first use writes last_used_at once

    counts = {}
    for name, email in emails.items():
        statements.clear()
        response = get_member(client, email, key)
        assert response.status_code == 200
        counts[name] = len(statements)

    assert len(get_member(client, emails["big"], key).get_json()["perks"]) == 2 + 15
    assert counts["plain"] == counts["small"] == counts["big"], counts
    # The key, the member, their subscription (price and tier joined in), and what perks_for
    # asks: its own look at the subscription and the perk table (perks, grants, tiers).
    assert counts["big"] <= 8, counts


# --- the command line ----------------------------------------------------------------------------


def test_a_key_made_on_the_command_line_works_and_only_its_hash_is_stored(
    runner, client, make_member, db_session
):
    member = make_member()

    result = runner.invoke(args=["api-keys", "create", "main site"])

    assert result.exit_code == 0, result.output
    secret = result.output.strip().splitlines()[-1]
    assert secret.startswith("mk_") and len(secret) >= 40
    stored = db_session.scalar(select(ApiKey).where(ApiKey.name == "main site"))
    assert stored.key_hash == hashlib.sha256(secret.encode()).hexdigest() != secret
    assert secret.startswith(stored.prefix)
    assert get_member(client, member.email, secret).status_code == 200


def test_key_names_are_unique_and_not_empty(runner, db_session):
    assert runner.invoke(args=["api-keys", "create", "main site"]).exit_code == 0
    again = runner.invoke(args=["api-keys", "create", "main site"])
    assert again.exit_code != 0 and "already a key" in again.output
    empty = runner.invoke(args=["api-keys", "create", "  "])
    assert empty.exit_code != 0 and "name" in empty.output


def test_listing_keys_shows_prefixes_and_use_but_never_a_key(
    runner, client, make_member, db_session
):
    member = make_member()
    assert "No API keys" in runner.invoke(args=["api-keys", "list"]).output
    secret = runner.invoke(args=["api-keys", "create", "main site"]).output.splitlines()[-1]
    runner.invoke(args=["api-keys", "create", "app"])
    get_member(client, member.email, secret)

    result = runner.invoke(args=["api-keys", "list"])

    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split() == ["NAME", "PREFIX", "CREATED", "LAST", "USED", "REVOKED"]
    main = next(line for line in lines if line.startswith("main site"))
    assert secret[:11] in main and secret not in result.output
    assert main.count("UTC") == 2  # created and last used, not revoked
    app_line = next(line for line in lines if line.startswith("app "))
    assert app_line.count("UTC") == 1 and app_line.rstrip().endswith("-")


def test_revoking_a_key_on_the_command_line(runner, client, make_member, db_session):
    member = make_member()
    secret = runner.invoke(args=["api-keys", "create", "main site"]).output.splitlines()[-1]

    result = runner.invoke(args=["api-keys", "revoke", "main site"])

    assert result.exit_code == 0, result.output
    assert "Revoked" in result.output and secret not in result.output
    assert get_member(client, member.email, secret).status_code == 401
    listed = runner.invoke(args=["api-keys", "list"]).output
    assert next(line for line in listed.splitlines() if "main site" in line).count("UTC") == 2
    unknown = runner.invoke(args=["api-keys", "revoke", "no such key"])
    assert unknown.exit_code != 0 and "no key called" in unknown.output


# --- the description ----------------------------------------------------------------------------


def test_the_openapi_document_describes_every_answer(client):
    response = client.get("/api/v1/openapi.json")

    assert response.status_code == 200
    document = response.get_json()
    assert document["openapi"].startswith("3.")
    operation = document["paths"]["/api/v1/members/{email}"]["get"]
    assert set(operation["responses"]) == {"200", "400", "401", "404", "429"}
    assert document["components"]["securitySchemes"]["apiKey"]["scheme"] == "bearer"
    member = document["components"]["schemas"]["Member"]
    assert set(member["required"]) == set(member["properties"]) == FIELDS
