"""My membership shows the card we store, and asks Stripe only when nothing was ever stored."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask

from membership.accounts.models import Member
from membership.billing import get_gateway, sync
from membership.billing.gateway import GatewayError, GatewaySettings, StripeGateway
from membership.database import utcnow
from tests.integration.perks_support import add_demo_tiers, make_patron

Json = dict[str, Any]
CUSTOMER_ID = "cus_card_double"


class CustomerOnlyGateway(StripeGateway):
    """Our gateway, with Stripe replaced by one customer whose default card is a Mastercard."""

    def __init__(self, settings: Any) -> None:
        super().__init__(settings)
        self.calls: list[tuple[str, tuple[Any, ...], Json]] = []

    def _call(
        self, method: Any, *args: Any, idempotency_key: str | None = None, **params: Any
    ) -> Json:
        name = f"{type(method.__self__).__name__}.{method.__name__}"
        self.calls.append((name, args, params))
        if name == "CustomerService.retrieve" and args == (CUSTOMER_ID,):
            card = {"brand": "mastercard", "last4": "4444", "exp_month": 7, "exp_year": 2029}
            method_json: Json | str = {"id": "pm_double", "object": "payment_method", "card": card}
            if "invoice_settings.default_payment_method" not in (params.get("expand") or []):
                method_json = "pm_double"
            return {
                "id": CUSTOMER_ID,
                "object": "customer",
                "invoice_settings": {"default_payment_method": method_json},
            }
        raise GatewayError(f"the double does not know {name}{args}")


@pytest.fixture
def double(app: Flask, monkeypatch: pytest.MonkeyPatch) -> CustomerOnlyGateway:
    with app.app_context():
        real = get_gateway()
    gateway = CustomerOnlyGateway(real.settings)
    monkeypatch.setitem(app.extensions, "stripe_gateway", gateway)
    return gateway


@pytest.fixture
def patron(db_session: Any, make_member: Any, login: Any) -> Member:
    member = make_member("card.holder@example.org")
    make_patron(db_session, member, add_demo_tiers(db_session)["insider"])
    login(member)
    return member


def _card_line(client: Any) -> str | None:
    page = client.get("/membership").get_data(as_text=True)
    if "<dt>Card</dt>" not in page:
        return None
    start = page.index("<dt>Card</dt><dd>") + len("<dt>Card</dt><dd>")
    return page[start : page.index(" · ", start)]


@pytest.mark.parametrize(
    ("brand", "expected"),
    [
        ("visa", "Visa ending 4242, expires 12/2030"),
        ("amex", "American Express ending 4242, expires 12/2030"),
        ("cartes_bancaires", "Cartes Bancaires ending 4242, expires 12/2030"),
        ("unknown", "Card ending 4242, expires 12/2030"),
    ],
)
def test_the_stored_card_is_shown_without_asking_stripe(
    client, db_session, patron, double, brand, expected
):
    patron.stripe_customer_id = CUSTOMER_ID
    patron.card_brand, patron.card_last4 = brand, "4242"
    patron.card_exp_month, patron.card_exp_year = 12, 2030
    patron.card_synced_at = utcnow()
    db_session.commit()

    assert _card_line(client) == expected
    assert double.calls == []


def test_a_customer_known_to_have_no_card_shows_none_and_asks_nothing(
    client, db_session, patron, double
):
    patron.stripe_customer_id = CUSTOMER_ID
    patron.card_synced_at = utcnow()
    db_session.commit()

    assert _card_line(client) is None
    assert double.calls == []


def test_nothing_stored_yet_fetches_once_in_one_call_and_keeps_it(
    client, db_session, patron, double
):
    patron.stripe_customer_id = CUSTOMER_ID
    db_session.commit()

    assert _card_line(client) == "Mastercard ending 4444, expires 07/2029"
    assert [(name, args) for name, args, _ in double.calls] == [
        ("CustomerService.retrieve", (CUSTOMER_ID,))
    ]
    double.calls.clear()
    assert _card_line(client) == "Mastercard ending 4444, expires 07/2029"
    assert double.calls == []
    db_session.expire_all()
    stored = db_session.get(Member, patron.id)
    assert (stored.stripe_payment_method_id, stored.card_brand, stored.card_last4) == (
        "pm_double",
        "mastercard",
        "4444",
    )


def test_stripe_out_of_reach_leaves_the_card_out_and_the_page_up(
    app, client, db_session, patron, monkeypatch
):
    with app.app_context():
        real = get_gateway()
    unreachable = StripeGateway(
        GatewaySettings(
            secret_key="sk_test_suite",
            api_version=real.settings.api_version,
            api_base="http://127.0.0.1:1",
            max_network_retries=0,
        )
    )
    monkeypatch.setitem(app.extensions, "stripe_gateway", unreachable)
    patron.stripe_customer_id = CUSTOMER_ID
    db_session.commit()

    response = client.get("/membership")

    assert response.status_code == 200
    assert "<dt>Card</dt>" not in response.get_data(as_text=True)
    db_session.expire_all()
    assert db_session.get(Member, patron.id).card_synced_at is None  # asked again next time


def test_another_customer_or_none_drops_the_stored_card(db_session, patron):
    patron.stripe_customer_id = CUSTOMER_ID
    sync.store_card(patron, {"id": "pm_1", "card": {"brand": "visa", "last4": "4242"}})
    assert patron.card_last4 == "4242"

    patron.stripe_customer_id = CUSTOMER_ID  # the same customer: the card stays
    assert patron.card_last4 == "4242"
    patron.stripe_customer_id = None  # customer.deleted, say
    assert (patron.stripe_payment_method_id, patron.card_last4, patron.card_synced_at) == (
        None,
        None,
        None,
    )


def test_a_customer_that_names_another_card_by_id_only_forgets_ours(db_session, patron):
    patron.stripe_customer_id = CUSTOMER_ID
    sync.store_card(patron, {"id": "pm_1", "card": {"brand": "visa", "last4": "4242"}})
    same = {"id": CUSTOMER_ID, "invoice_settings": {"default_payment_method": "pm_1"}}
    other = {"id": CUSTOMER_ID, "invoice_settings": {"default_payment_method": "pm_2"}}
    silent = {"id": CUSTOMER_ID}
    removed = {"id": CUSTOMER_ID, "invoice_settings": {"default_payment_method": None}}

    assert sync.apply_customer_card(patron, same) is False
    assert sync.apply_customer_card(patron, silent) is False
    assert patron.card_last4 == "4242"
    assert sync.apply_customer_card(patron, other) is True
    assert (patron.card_last4, patron.card_synced_at) == (None, None)
    assert sync.apply_customer_card(patron, removed) is True
    assert patron.card_last4 is None and patron.card_synced_at is not None  # known: no card
