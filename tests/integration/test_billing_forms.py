"""Bad input on the support, join and give forms: a clear message, and Stripe is never asked.

Stripe here is localstripe, emptied before each test; every request the app's gateway makes is
recorded, and localstripe is asked afterwards whether it saw a customer.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

import pytest
import stripe as stripe_sdk
from flask import Flask
from sqlalchemy import func, select

from membership.accounts.models import Member
from membership.billing import service, sync
from membership.billing.gateway import StripeGateway
from membership.billing.models import (
    JoinAttempt,
    Payment,
    PaymentKind,
    PaymentStatus,
    Price,
    Subscription,
    Tier,
)
from membership.billing.rules import Interval
from membership.cli import DEMO_TIERS
from membership.config import DEFAULT_STRIPE_API_VERSION
from membership.database import utcnow
from membership.extensions import db
from tests.conftest import LocalStripe

Json = dict[str, Any]
ANY_PAGE = "/support/give"  # any page with a form, for the CSRF token of the session


@pytest.fixture
def gateway(stripe: StripeGateway) -> StripeGateway:
    """The app's gateway, on an emptied localstripe."""
    return stripe


@pytest.fixture
def stripe_calls(gateway: StripeGateway, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    made: list[str] = []
    call, iterate = gateway._call, gateway._iterate

    def counted_call(method: Any, *args: Any, **kwargs: Any) -> Json:
        made.append(f"{type(method.__self__).__name__}.{method.__name__}")
        return call(method, *args, **kwargs)

    def counted_iterate(method: Any, params: Json) -> Iterator[Json]:
        made.append(f"{type(method.__self__).__name__}.{method.__name__}")
        return iterate(method, params)

    monkeypatch.setattr(gateway, "_call", counted_call)
    monkeypatch.setattr(gateway, "_iterate", counted_iterate)
    return made


@pytest.fixture
def stripe_customers(localstripe: LocalStripe) -> Any:
    """How many customers localstripe holds (asked with Stripe's SDK, not through the app)."""
    client = stripe_sdk.StripeClient(
        "sk_test_suite",
        base_addresses={"api": localstripe.base_url},
        max_network_retries=0,
        stripe_version=DEFAULT_STRIPE_API_VERSION,
    )
    return lambda: len(client.v1.customers.list(params={"limit": 100}).data)


@pytest.fixture
def tiers(app: Flask, db_session: Any, gateway: StripeGateway) -> dict[str, int]:
    """The demo tiers (not synced: nothing here may reach Stripe), an archived tier, and a tier
    offered in EUR only; slug -> id."""
    with app.app_context():
        ids = {}
        catalog = [
            *DEMO_TIERS,
            ("retired", "Retired", "No longer offered.", {"EUR": (300, 3000)}),
            ("pilot", "Pilot", "Offered in euros only.", {"EUR": (700, 7000)}),
        ]
        for position, (slug, name, description, prices) in enumerate(catalog):
            tier = Tier(slug=slug, name=name, description=description, position=position)
            db.session.add(tier)
            db.session.flush()
            for currency, (monthly, yearly) in prices.items():
                service.set_price(db.session, tier, Interval.MONTH, currency, monthly)
                service.set_price(db.session, tier, Interval.YEAR, currency, yearly)
            ids[slug] = tier.id
        db.session.get(Tier, ids["retired"]).active = False
        db.session.commit()
    return ids


def count(session: Any, model: Any, *where: Any) -> int:
    session.expire_all()
    return session.scalar(select(func.count()).select_from(model).where(*where))


def flashed(client: Any, response: Any) -> str:
    """The page a redirect leads to (where the flashed message is shown)."""
    assert response.status_code in (302, 303), response.status_code
    return client.get(response.headers["Location"]).get_data(as_text=True)


def choice(tiers: dict[str, int], **changes: Any) -> dict[str, str]:
    data = {"tier": str(tiers["reader"]), "interval": "month", "currency": "EUR", "amount": ""}
    data.update(changes)
    return {k: v for k, v in data.items() if v is not None}


GENERIC_CHOICE = "Please choose a tier, monthly or yearly, and a currency."

BAD_CHOICES = {
    "below the minimum": ({"amount": "4.99"}, "The minimum for Reader is €5."),
    "far below the minimum": ({"amount": "0.01"}, "The minimum for Reader is €5."),
    "above the maximum": ({"amount": "100000.01"}, "more than we can take at once (100,000)"),
    "not a number": ({"amount": "lots"}, "Enter the amount as a number, like 5 or 7.50."),
    "three decimals": ({"amount": "5.001"}, "Use at most two decimals for EUR."),
    "negative": ({"amount": "-10"}, "Enter an amount above zero."),
    "not a number at all": ({"amount": "NaN"}, "Enter the amount as a number, like 5 or 7.50."),
    "a currency we do not offer": ({"currency": "JPY"}, "Choose one of the currencies we offer."),
    "an unknown currency": ({"currency": "XXXX"}, "Choose one of the currencies we offer."),
    "an interval we do not offer": ({"interval": "week"}, "Choose monthly or yearly."),
    "no tier": ({"tier": None}, GENERIC_CHOICE),
    "a tier that is not a number": ({"tier": "reader"}, GENERIC_CHOICE),
    "no interval": ({"interval": None}, GENERIC_CHOICE),
    "no currency": ({"currency": None}, GENERIC_CHOICE),
    "a huge amount": ({"amount": "9" * 5000}, GENERIC_CHOICE),
    "a tier that does not exist": ({"tier": "999999"}, "That tier is not offered any more."),
    "a negative tier id": ({"tier": "-1"}, "That tier is not offered any more."),
    "an archived tier": ({"tier": "retired"}, "That tier is not offered any more."),
    "a currency the tier lacks": (
        {"tier": "pilot", "currency": "USD"},
        "Pilot is not offered in USD yet.",
    ),
}


def _resolve(tiers: dict[str, int], changes: Json) -> Json:
    if changes.get("tier") in ("retired", "pilot"):
        return {**changes, "tier": str(tiers[changes["tier"]])}
    return changes


# --- the join summary (GET, from the support page) ---------------------------------------------


def test_a_good_choice_reaches_the_summary_without_asking_stripe(
    client, login, make_member, db_session, tiers, stripe_calls, stripe_customers
):
    """The control for the refusals below."""
    login(make_member())
    response = client.get("/support/join?" + urlencode(choice(tiers, amount="7,50")))
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert "You are joining as <strong>Reader</strong>" in page
    assert "€7.50 a month" in page
    assert stripe_calls == []
    assert stripe_customers() == 0


@pytest.mark.parametrize("case", list(BAD_CHOICES))
def test_a_bad_choice_on_the_support_page_is_explained_and_asks_nothing_of_stripe(
    client, login, make_member, db_session, tiers, stripe_calls, stripe_customers, case
):
    changes, message = BAD_CHOICES[case]
    login(make_member())
    prices = count(db_session, Price)
    response = client.get("/support/join?" + urlencode(choice(tiers, **_resolve(tiers, changes))))
    assert response.status_code == 303
    assert response.headers["Location"] == "/support"
    page = flashed(client, response)
    assert message in page
    assert 'class="flash flash-error" role="alert"' in page
    assert count(db_session, JoinAttempt) == 0
    assert count(db_session, Price) == prices  # no pay-what-you-want price was kept
    assert stripe_calls == []
    assert stripe_customers() == 0


# --- confirming the choice (POST) --------------------------------------------------------------


def _join_form(tiers: dict[str, int], **changes: Any) -> dict[str, str]:
    return {**choice(tiers, **changes), "token": "t" * 32}


def test_a_good_confirmation_opens_the_card_step_without_asking_stripe(
    client, login, make_member, db_session, tiers, stripe_calls, stripe_customers
):
    login(make_member())
    response = client.submit("/support/join", _join_form(tiers), token_page=ANY_PAGE)
    assert response.status_code == 302
    assert response.headers["Location"] == "/support/join/" + "t" * 32
    assert count(db_session, JoinAttempt) == 1
    assert stripe_calls == []
    assert stripe_customers() == 0


@pytest.mark.parametrize("case", list(BAD_CHOICES))
def test_a_tampered_confirmation_is_refused_and_asks_nothing_of_stripe(
    client, login, make_member, db_session, tiers, stripe_calls, stripe_customers, case
):
    changes, message = BAD_CHOICES[case]
    login(make_member())
    form = _join_form(tiers, **_resolve(tiers, changes))
    response = client.submit("/support/join", form, token_page=ANY_PAGE)
    page = flashed(client, response)
    assert response.headers["Location"] == "/support"
    expected = "Please choose your tier again." if message == GENERIC_CHOICE else message
    assert expected in page
    assert count(db_session, JoinAttempt) == 0
    assert stripe_calls == []
    assert stripe_customers() == 0


@pytest.mark.parametrize("token", [None, "", "short", "x" * 65])
def test_a_confirmation_without_a_proper_form_token_is_refused(
    client, login, make_member, db_session, tiers, stripe_calls, token
):
    login(make_member())
    form = choice(tiers)
    if token is not None:
        form["token"] = token
    response = client.submit("/support/join", form, token_page=ANY_PAGE)
    assert "Please choose your tier again." in flashed(client, response)
    assert count(db_session, JoinAttempt) == 0
    assert stripe_calls == []


def test_a_visitor_must_log_in_before_choosing(client, db_session, tiers, stripe_calls):
    response = client.get("/support/join?" + urlencode(choice(tiers)))
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/account/login?next=")
    assert stripe_calls == []


# --- giving once --------------------------------------------------------------------------------


def _gift(**changes: Any) -> dict[str, str]:
    data = {"amount": "10", "currency": "EUR", "email": "giver@example.org", "token": "g" * 32}
    data.update(changes)
    return {k: v for k, v in data.items() if v is not None}


def test_a_good_gift_goes_to_the_card_step_without_asking_stripe(
    client, db_session, gateway, stripe_calls, stripe_customers
):
    """The control for the refusals below."""
    response = client.submit("/support/give", _gift(amount="12,50"), token_page=ANY_PAGE)
    assert response.status_code == 302
    assert response.headers["Location"] == "/support/give/" + "g" * 32
    payment = db_session.scalar(select(Payment))
    assert (payment.amount, payment.currency, payment.email) == (1250, "EUR", "giver@example.org")
    assert stripe_calls == []
    assert stripe_customers() == 0


BAD_GIFTS = {
    "below the minimum": ({"amount": "1.99"}, "amount", "The smallest gift is €2."),
    "below the minimum in GBP": (
        {"amount": "1", "currency": "GBP"},
        "amount",
        "The smallest gift is £2.",
    ),
    "zero": ({"amount": "0"}, "amount", "Enter an amount above zero."),
    "negative": ({"amount": "-5"}, "amount", "Enter an amount above zero."),
    "above the maximum": (
        {"amount": "100001"},
        "amount",
        "That is more than we can take at once (100,000).",
    ),
    "not a number": ({"amount": "ten"}, "amount", "Enter the amount as a number, like 5 or 7.50."),
    "infinity": ({"amount": "Infinity"}, "amount", "Enter the amount as a number, like 5 or 7.50."),
    "three decimals": ({"amount": "2.005"}, "amount", "Use at most two decimals for EUR."),
    "empty amount": ({"amount": ""}, "amount", "Enter an amount."),
    "blank amount": ({"amount": "   "}, "amount", "Enter an amount."),
    "no amount": ({"amount": None}, "amount", "Enter an amount."),
    "a huge amount": ({"amount": "9" * 10_000}, "amount", "Enter an amount."),
    "a currency we do not offer": ({"currency": "JPY"}, "currency", "Not a valid choice."),
    "a lower-case currency": ({"currency": "eur"}, "currency", "Not a valid choice."),
    "no currency": ({"currency": None}, "currency", "Not a valid choice."),
    "no email for the receipt": ({"email": ""}, "email", "Enter your email address"),
    "not an email": ({"email": "giver-at-example"}, "email", "Enter a valid email address."),
    "a huge email": ({"email": "g" * 5000 + "@example.org"}, "email", "valid email address"),
}


@pytest.mark.parametrize("case", list(BAD_GIFTS))
def test_a_bad_gift_is_explained_next_to_its_field_and_asks_nothing_of_stripe(
    client, db_session, gateway, stripe_calls, stripe_customers, case
):
    changes, field, message = BAD_GIFTS[case]
    response = client.submit("/support/give", _gift(**changes), token_page=ANY_PAGE)
    assert response.status_code == 400
    page = response.get_data(as_text=True)
    error = page.split(f'id="{field}-error">', 1)
    assert len(error) == 2, f"no error next to {field}"
    assert message in error[1].split("</p>", 1)[0]
    assert count(db_session, Payment) == 0
    assert stripe_calls == []
    assert stripe_customers() == 0


@pytest.mark.parametrize("token", [None, "", "short", "x" * 65])
def test_a_gift_without_a_proper_form_token_is_refused(
    client, db_session, gateway, stripe_calls, token
):
    response = client.submit("/support/give", _gift(token=token), token_page=ANY_PAGE)
    assert response.status_code == 400
    assert count(db_session, Payment) == 0
    assert stripe_calls == []


def test_a_member_gives_without_typing_an_email(
    client, login, make_member, db_session, gateway, stripe_calls
):
    member = make_member()
    login(member)
    response = client.submit("/support/give", _gift(email=None), token_page=ANY_PAGE)
    assert response.status_code == 302
    payment = db_session.scalar(select(Payment))
    assert payment.member_id == member.id
    assert payment.email is None
    assert stripe_calls == []


# --- a patron on the join and membership pages ---------------------------------------------------


@pytest.fixture
def patron(app: Flask, db_session: Any, make_member: Any, tiers: dict[str, int]) -> Member:
    """An Insider patron (EUR 10 a month) with a paid first invoice, as our tables know them."""
    member = make_member()
    member_id = member.id
    now = int(time.time())
    with app.app_context():
        me = db.session.get(Member, member_id)
        me.stripe_customer_id = "cus_form_patron"
        data = {
            "id": "sub_form_patron",
            "object": "subscription",
            "customer": "cus_form_patron",
            "status": "active",
            "cancel_at_period_end": False,
            "start_date": now,
            "current_period_end": now + 30 * 86400,
            "metadata": {"member_id": str(member_id)},
            "items": {
                "data": [{"id": "si_1", "plan": {"id": "membership-insider-month-eur-1000"}}]
            },
        }
        assert sync.apply_subscription(db.session, data, reason="joined") is not None
        invoice = {
            "id": "in_form_patron",
            "status": "paid",
            "amount_paid": 1000,
            "currency": "eur",
            "subscription": "sub_form_patron",
            "status_transitions": {"paid_at": now},
        }
        assert sync.apply_invoice(db.session, invoice, reason="first payment") is not None
        db.session.commit()
    return member


def test_joining_again_as_a_patron_leads_to_my_membership_with_a_message(
    client, login, db_session, patron, tiers, stripe_calls, stripe_customers
):
    login(patron)
    summary = client.get("/support/join?" + urlencode(choice(tiers, tier=str(tiers["insider"]))))
    assert summary.status_code in (200, 302, 303)
    response = client.submit(
        "/support/join", _join_form(tiers, tier=str(tiers["insider"])), token_page=ANY_PAGE
    )
    assert response.headers["Location"] == "/membership"
    page = flashed(client, response)
    assert "You are already a patron: you can change your tier on My membership." in page
    assert "Insider patron" in page
    assert count(db_session, JoinAttempt) == 0
    assert count(db_session, Subscription) == 1
    assert "SubscriptionService.create" not in stripe_calls
    assert "CustomerService.create" not in stripe_calls
    assert stripe_customers() == 0


def test_my_membership_shows_a_patron_their_tier_status_and_payments(
    client, login, db_session, patron, stripe_calls
):
    login(patron)
    response = client.get("/membership")
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert "Insider patron" in page
    assert '<dd class="state state-active">' in page
    assert "€10 a month" in page
    assert "Pause payments" in page
    assert "Cancel my membership" in page
    payment_id = db_session.scalar(select(Payment.id).where(Payment.member_id == patron.id))
    assert f'href="/membership/receipts/{payment_id}"' in page
    # Its card comes from Stripe; a customer Stripe does not know shows no card, not an error.
    assert stripe_calls == ["CustomerService.retrieve"]


def test_my_membership_for_a_reader_who_is_not_a_patron(client, login, make_member, db_session):
    login(make_member())
    page = client.get("/membership").get_data(as_text=True)
    assert "You are not a patron yet" in page
    assert "Pause payments" not in page


# --- receipts and gifts of other people --------------------------------------------------------


@pytest.fixture
def someone_elses_payments(app: Flask, db_session: Any, make_member: Any) -> dict[str, Any]:
    owner = make_member()
    gift = Payment(
        member_id=owner.id,
        kind=PaymentKind.DONATION,
        status=PaymentStatus.SUCCEEDED,
        amount=2000,
        currency="EUR",
        idempotency_token="owner-gift-token-0123456789",
        paid_at=utcnow(),
    )
    pending = Payment(
        member_id=owner.id,
        kind=PaymentKind.DONATION,
        status=PaymentStatus.PENDING,
        amount=1500,
        currency="EUR",
        idempotency_token="owner-pending-token-0123456789",
    )
    db_session.add_all([gift, pending])
    db_session.commit()
    return {"owner": owner, "gift": gift.id, "pending": pending.idempotency_token}


def test_a_receipt_is_shown_to_its_owner(client, login, db_session, someone_elses_payments):
    login(someone_elses_payments["owner"])
    response = client.get(f"/membership/receipts/{someone_elses_payments['gift']}")
    assert response.status_code == 200
    assert "€20" in response.get_data(as_text=True)


def test_the_receipts_of_another_member_are_not_found(
    client, login, make_member, db_session, someone_elses_payments
):
    login(make_member())
    assert client.get(f"/membership/receipts/{someone_elses_payments['gift']}").status_code == 404
    assert client.get("/membership/receipts/999999").status_code == 404


def test_a_visitor_is_asked_to_log_in_for_a_receipt(client, db_session, someone_elses_payments):
    response = client.get(f"/membership/receipts/{someone_elses_payments['gift']}")
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/account/login")


def test_the_gift_of_another_member_cannot_be_paid_or_seen(
    client, login, make_member, db_session, gateway, stripe_calls, someone_elses_payments
):
    token = someone_elses_payments["pending"]
    login(make_member())
    assert client.get(f"/support/give/{token}").status_code == 404
    assert client.get(f"/support/give/{token}/thanks").status_code == 404
    csrf = client.csrf_token(ANY_PAGE)
    for step in ("setup", "pay", "confirm"):
        response = client.post(
            f"/support/give/{token}/{step}",
            json={"setup_intent_id": "seti_123"},
            headers={"X-CSRFToken": csrf},
        )
        assert response.status_code == 404, step
    assert stripe_calls == []


def test_in_test_mode_the_support_page_says_so_and_names_the_test_cards(client, catalog):
    page = client.get("/support").get_data(as_text=True)
    assert "Test mode:" in page
    assert "4242 4242 4242 4242" in page and "4000 0025 0000 3155" in page


def test_with_live_keys_the_support_page_shows_no_test_mode(app, client, catalog, monkeypatch):
    monkeypatch.setitem(app.config, "STRIPE_SECRET_KEY", "sk_live_example")
    page = client.get("/support").get_data(as_text=True)
    assert "Test mode:" not in page and "4242" not in page
    assert "Join as Insider" in page
