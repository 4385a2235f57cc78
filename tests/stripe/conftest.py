"""Helpers to drive the billing flows against localstripe as a real server, without a browser.

The card step's JavaScript does three things, and so do these helpers: ask our server for a
SetupIntent, confirm the card with Stripe (here: the same requests localstripe's mock Stripe.js
makes), then send the SetupIntent id back to our server. 3-D Secure is answered through
localstripe's ``_authenticate`` endpoint, exactly as the mock's "Complete / Fail authentication"
buttons do.
"""

from __future__ import annotations

import html
import json
import re
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import flask_migrate
import pytest
import stripe as stripe_sdk
from aiosmtpd.controller import Controller
from flask import Flask
from sqlalchemy import select
from werkzeug.serving import BaseWSGIServer, make_server

from membership import create_app
from membership.accounts.models import Member
from membership.billing import get_gateway, rules, service, webhooks
from membership.billing.gateway import GatewaySettings, StripeGateway
from membership.billing.models import Subscription
from membership.billing.rules import MembershipState
from membership.extensions import db
from tests.conftest import (
    WEBHOOK_SECRET,
    CsrfClient,
    LocalStripe,
    Mailbox,
    settings_for_tests,
    stripe_settings,
)

SECRET_KEY = "sk_test_suite"
PUBLISHABLE_KEY = "pk_test_suite"

VISA = "4242424242424242"  # succeeds
DECLINED_ON_CHARGE = "4000000000000341"  # attaches, every charge declined
THREE_D_SECURE = "4000002500003155"  # every charge asks for 3-D Secure
MASTERCARD = "5555555555554444"  # succeeds (localstripe calls every card a Visa)


# --- localstripe, as Stripe itself and as the mock Stripe.js ------------------------------------


def post_json(url: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """POST a JSON body the way localstripe's mock Stripe.js does (publishable key in the body)."""
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")


@dataclass
class StripeApi:
    """Stripe's side of things: the SDK on localstripe, plus what the browser would do."""

    base: str
    v1: Any

    # What the browser does with Stripe.js.

    def confirm_setup(self, client_secret: str, card: str, *, authenticate: bool = True) -> Any:
        """``stripe.confirmCardSetup`` with a card number; answers 3-D Secure like the mock."""
        seti = client_secret.split("_secret_")[0]
        url = f"{self.base}/v1/setup_intents/{seti}/confirm"
        secret = {"key": PUBLISHABLE_KEY, "use_stripe_sdk": True, "client_secret": client_secret}
        status, body = post_json(
            url,
            {
                **secret,
                "payment_method_data": {
                    "type": "card",
                    "card": {"number": card, "exp_month": 12, "exp_year": 2030, "cvc": "123"},
                    "billing_details": {"name": "Test Reader"},
                },
            },
        )
        assert status == 200, body
        if body["status"] == "requires_action" and authenticate:
            status, body = post_json(url, secret)
            assert status == 200, body
        return body

    def authenticate(self, client_secret: str, *, success: bool) -> dict[str, Any]:
        """``stripe.confirmCardPayment``: the reader completes or fails 3-D Secure."""
        intent = client_secret.split("_secret_")[0]
        status, body = post_json(
            f"{self.base}/v1/payment_intents/{intent}/_authenticate"
            f"?success={'true' if success else 'false'}",
            {"key": PUBLISHABLE_KEY, "client_secret": client_secret},
        )
        assert status == 200, body
        return body

    # What Stripe holds.

    def all(self, kind: str, **params: Any) -> list[dict[str, Any]]:
        """Every object of a kind (``customers``, ``subscriptions``...), as plain dicts."""
        page = getattr(self.v1, kind).list(params={"limit": 100, **params})
        return [item.to_dict() for item in page.auto_paging_iter()]

    def subscriptions_of(self, customer_id: str) -> list[dict[str, Any]]:
        return self.all("subscriptions", customer=customer_id, status="all")

    def subscription(self, subscription_id: str) -> dict[str, Any]:
        return self.v1.subscriptions.retrieve(subscription_id).to_dict()

    def customer(self, customer_id: str) -> dict[str, Any]:
        return self.v1.customers.retrieve(customer_id).to_dict()

    def events(self) -> list[dict[str, Any]]:
        """Every event localstripe made since the last flush, oldest first (it lists them in the
        order they were made; the sort is stable, so events of the same second keep it)."""
        return sorted(self.all("events"), key=lambda event: event["created"])

    def counts(self) -> dict[str, int]:
        """How many objects of each kind a flow could create; to prove nothing was called."""
        kinds = ("customers", "setup_intents", "subscriptions", "payment_intents", "invoices")
        return {kind: len(self.all(kind)) for kind in (*kinds, "plans")}


def api_for(localstripe: LocalStripe) -> StripeApi:
    client = stripe_sdk.StripeClient(
        SECRET_KEY, base_addresses={"api": localstripe.base_url}, max_network_retries=0
    )
    return StripeApi(base=localstripe.base_url, v1=client.v1)


@pytest.fixture
def stripe_api(stripe: StripeGateway, localstripe: LocalStripe) -> StripeApi:
    """Direct access to localstripe (emptied by the ``stripe`` fixture) with the Stripe SDK."""
    return api_for(localstripe)


# --- our pages, as the reader's browser sees them ------------------------------------------------


def form_inputs(page: str) -> dict[str, str]:
    """The ``name -> value`` of every input on a page (hidden fields included)."""
    found = {}
    for tag in re.findall(r"<input\b[^>]*>", page):
        name = re.search(r'\bname="([^"]*)"', tag)
        value = re.search(r'\bvalue="([^"]*)"', tag)
        if name:
            found[html.unescape(name.group(1))] = html.unescape(value.group(1)) if value else ""
    return found


def _data(page: str, attribute: str) -> str:
    match = re.search(rf'\b{attribute}="([^"]*)"', page)
    assert match, f"no {attribute} on the card page"
    return html.unescape(match.group(1))


@dataclass
class CardStep:
    """The card form of a join, a gift or a card update, driven as card.js drives it."""

    client: CsrfClient
    api: StripeApi
    setup_url: str
    submit_url: str
    confirm_url: str
    csrf: str

    @classmethod
    def open(cls, client: CsrfClient, api: StripeApi, url: str) -> CardStep:
        response = client.get(url)
        assert response.status_code == 200, response.status_code
        page = response.get_data(as_text=True)
        return cls(
            client=client,
            api=api,
            setup_url=_data(page, "data-setup-url"),
            submit_url=_data(page, "data-submit-url"),
            confirm_url=_data(page, "data-confirm-url"),
            csrf=form_inputs(page)["csrf_token"],
        )

    def post(self, url: str, body: dict[str, Any] | None = None) -> Any:
        return self.client.post(url, json=body or {}, headers={"X-CSRFToken": self.csrf})

    def setup(self) -> str:
        """Step 1: our server's SetupIntent; returns its client secret."""
        response = self.post(self.setup_url)
        assert response.status_code == 200, response.get_data(as_text=True)
        data = response.get_json()
        assert data["status"] == "ok", data
        return data["client_secret"]

    def new_card(self, card: str = VISA) -> str:
        """Steps 1 and 2: a SetupIntent confirmed with ``card``; returns its id."""
        setup = self.api.confirm_setup(self.setup(), card)
        assert setup["status"] == "succeeded", setup
        return setup["id"]

    def submit(self, setup_intent_id: str) -> Any:
        """Step 3: send the confirmed card to our server (subscribe, pay or save)."""
        return self.post(self.submit_url, {"setup_intent_id": setup_intent_id})

    def pay(self, card: str = VISA) -> dict[str, Any]:
        """Steps 1 to 3 with ``card``; returns the outcome our server answered."""
        response = self.submit(self.new_card(card))
        assert response.status_code == 200, response.get_data(as_text=True)
        return response.get_json()

    def confirm(self) -> dict[str, Any]:
        """Step 4, after 3-D Secure in the browser."""
        response = self.post(self.confirm_url)
        assert response.status_code == 200, response.get_data(as_text=True)
        return response.get_json()


def choose(
    client: CsrfClient,
    tier_id: int,
    *,
    interval: str = "month",
    currency: str = "EUR",
    amount: str = "",
) -> Any:
    """The support page's choice, sent by GET to the summary page."""
    return client.get(
        "/support/join",
        query_string={
            "tier": tier_id,
            "interval": interval,
            "currency": currency,
            "amount": amount,
        },
    )


def start_join(client: CsrfClient, api: StripeApi, tier_id: int, **choice: Any) -> CardStep:
    """Choose a tier, confirm the summary, and open the card step of that join attempt."""
    summary = choose(client, tier_id, **choice)
    assert summary.status_code == 200, summary.headers.get("Location")
    response = client.post("/support/join", data=form_inputs(summary.get_data(as_text=True)))
    assert response.status_code == 302, response.get_data(as_text=True)
    assert "/support/join/" in response.headers["Location"], response.headers["Location"]
    return CardStep.open(client, api, response.headers["Location"])


def join(
    client: CsrfClient, api: StripeApi, tier_id: int, card: str = VISA, **choice: Any
) -> tuple[CardStep, dict[str, Any]]:
    """A whole join with one card; returns the card step and our server's outcome."""
    step = start_join(client, api, tier_id, **choice)
    return step, step.pay(card)


def start_gift(
    client: CsrfClient, api: StripeApi, amount: str, currency: str = "EUR", email: str = ""
) -> CardStep:
    page = client.get("/support/give")
    assert page.status_code == 200
    fields = form_inputs(page.get_data(as_text=True))
    fields.update(amount=amount, currency=currency)
    if email:
        fields["email"] = email
    response = client.post("/support/give", data=fields)
    assert response.status_code == 302, response.get_data(as_text=True)
    return CardStep.open(client, api, response.headers["Location"])


def token_of(step: CardStep) -> str:
    """The join attempt's or the gift's token, from its card step's URLs."""
    return step.submit_url.split("/")[3]


# --- Stripe's events, applied through the app ----------------------------------------------------


def apply_events(app: Flask, api: StripeApi, events: list[Any] | None = None) -> list[Any]:
    """Hand Stripe's events (default: every one localstripe made, oldest first) to the webhook
    receiver, as if they had been delivered. One already received is stored once: DUPLICATE."""
    with app.app_context():
        gateway = get_gateway()
        return [webhooks.receive(db.session, gateway, e) for e in events or api.events()]


def state_of(app: Flask, member: Member) -> MembershipState:
    """The member's state as the app decides it now (the rules read the app's settings)."""
    with app.app_context():
        return service.membership_state(db.session, member)


def is_patron(app: Flask, member: Member) -> bool:
    return rules.is_patron(state_of(app, member))


def subscription_of(session: Any, member: Member) -> Subscription:
    session.expire_all()
    found = session.scalars(select(Subscription).where(Subscription.member_id == member.id)).all()
    assert len(found) == 1, found
    return found[0]


# --- a patron, for the self-service, renewal and reconcile tests --------------------------------


@dataclass
class Patron:
    member: Member
    customer_id: str
    subscription_id: str


@pytest.fixture
def patron(
    client: CsrfClient,
    login: Any,
    make_member: Any,
    catalog: dict[str, Any],
    stripe_api: StripeApi,
    db_session: Any,
) -> Patron:
    """A reader who joined as Reader, €5 a month, with 4242, and is logged in."""
    member = make_member("patron@example.org", display_name="Pat Patron")
    login(member)
    _, outcome = join(client, stripe_api, catalog["reader"].id)
    assert outcome["status"] == "active", outcome
    db_session.refresh(member)
    subscription = subscription_of(db_session, member)
    return Patron(
        member=member,
        customer_id=member.stripe_customer_id or "",
        subscription_id=subscription.stripe_subscription_id,
    )


def fail_a_renewal(api: StripeApi, customer_id: str, subscription_id: str) -> str:
    """Stripe tries to renew the membership and the bank's authentication fails; the invoice id."""
    card = {"number": THREE_D_SECURE, "exp_month": 12, "exp_year": 2030, "cvc": "123"}
    method = api.v1.payment_methods.create(params={"type": "card", "card": card})
    api.v1.payment_methods.attach(method["id"], params={"customer": customer_id})
    api.v1.customers.update(
        customer_id, params={"invoice_settings": {"default_payment_method": method["id"]}}
    )
    invoice = api.v1.invoices.create(
        params={"customer": customer_id, "subscription": subscription_id}
    )
    invoice = api.v1.invoices.pay(invoice["id"])
    intent = api.v1.payment_intents.retrieve(invoice["payment_intent"])
    assert intent["status"] == "requires_action"
    api.authenticate(intent["client_secret"], success=False)
    assert api.subscription(subscription_id)["status"] == "past_due"
    return invoice["id"]


# --- Stripe out of reach -------------------------------------------------------------------------


@dataclass
class StripeSwitch:
    """Points the app at Stripe, or at a closed port; the app's own gateway comes back after."""

    app: Flask
    monkeypatch: pytest.MonkeyPatch
    working: StripeGateway

    def down(self) -> None:
        unreachable = StripeGateway(
            GatewaySettings(
                secret_key=SECRET_KEY,
                api_version=self.app.config["STRIPE_API_VERSION"],
                api_base="http://127.0.0.1:1",
                webhook_secret=WEBHOOK_SECRET,
                max_network_retries=0,
            )
        )
        self.monkeypatch.setitem(self.app.extensions, "stripe_gateway", unreachable)

    def up(self) -> None:
        self.monkeypatch.setitem(self.app.extensions, "stripe_gateway", self.working)


@pytest.fixture
def stripe_switch(
    app: Flask, stripe: StripeGateway, monkeypatch: pytest.MonkeyPatch
) -> StripeSwitch:
    return StripeSwitch(app=app, monkeypatch=monkeypatch, working=stripe)


# --- the app served for real, for localstripe's own webhooks -------------------------------------


@dataclass
class LiveApp:
    app: Flask
    url: str


@pytest.fixture
def live_app(
    tmp_path: Path, smtp_server: tuple[Controller, Mailbox], localstripe: LocalStripe
) -> Iterator[LiveApp]:
    """The app on its own SQLite file, served over HTTP from a thread, receiving localstripe's
    signed webhooks. Nothing here is rolled back: the database is fresh for each test."""
    localstripe.flush()
    database_url = f"sqlite:///{tmp_path / 'live.sqlite3'}"
    app = create_app(
        {**settings_for_tests(database_url, smtp_server[0].port), **stripe_settings(localstripe)}
    )
    app.test_client_class = CsrfClient
    with app.app_context():
        flask_migrate.upgrade()
    server: BaseWSGIServer = make_server("127.0.0.1", 0, app, threaded=True)
    url = f"http://127.0.0.1:{server.server_port}"
    thread = threading.Thread(target=server.serve_forever, name="live-webhooks", daemon=True)
    thread.start()
    localstripe.register_webhook(f"{url}/webhooks/stripe")
    try:
        yield LiveApp(app=app, url=url)
    finally:
        localstripe.register_webhook(f"{url}/webhooks/stripe", events=[])
        server.shutdown()
        thread.join(timeout=10)
        server.server_close()
        with app.app_context():
            db.engine.dispose()
