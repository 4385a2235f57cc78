"""The payment provider, in our own words. The only module that imports ``stripe``.

Everything returned is a plain ``dict`` (Stripe's JSON), so the rest of the app never handles SDK
objects. Errors become :class:`CardError` (the reader can fix it with another card) or
:class:`GatewayUnavailable` (nothing was charged; try again later).

The same code runs against real Stripe and against localstripe, the offline fake used in tests
and in the demo; see ``STRIPE_API_BASE``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import stripe

Json = dict[str, Any]


class GatewayError(Exception):
    """Base class: something the payment provider refused or could not do."""


class CardError(GatewayError):
    """The card was declined or failed authentication; ``message`` is the bank's reason."""

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


class GatewayUnavailable(GatewayError):
    """The provider could not be reached or failed; nothing was charged."""


class InvalidWebhook(GatewayError):
    """A webhook whose signature, timestamp or body does not check out."""


@dataclass(frozen=True)
class GatewaySettings:
    secret_key: str
    api_version: str
    api_base: str = ""
    webhook_secret: str = ""
    max_network_retries: int = 2


def _plain(obj: Any) -> Json:
    return obj.to_dict() if hasattr(obj, "to_dict") else dict(obj)


class StripeGateway:
    """A small interface over ``stripe.StripeClient``."""

    def __init__(self, settings: GatewaySettings) -> None:
        self.settings = settings
        base = {"api": settings.api_base} if settings.api_base else None
        self._client = stripe.StripeClient(
            settings.secret_key,
            stripe_version=settings.api_version,
            base_addresses=base,  # type: ignore[arg-type]
            max_network_retries=settings.max_network_retries,
        )
        self._v1 = self._client.v1

    # --- calls -------------------------------------------------------------------------------

    def _call(
        self, method: Any, *args: Any, idempotency_key: str | None = None, **params: Any
    ) -> Json:
        options = {"idempotency_key": idempotency_key} if idempotency_key else None
        try:
            result = method(*args, params=params or None, options=options)
        except stripe.CardError as exc:
            raise CardError(exc.user_message or "Your card was declined.", exc.code) from exc
        except (stripe.APIConnectionError, stripe.RateLimitError, stripe.APIError) as exc:
            raise GatewayUnavailable(str(exc)) from exc
        except stripe.AuthenticationError as exc:
            raise GatewayUnavailable("Stripe refused our API key") from exc
        except stripe.InvalidRequestError as exc:
            if exc.http_status is not None and exc.http_status >= 500:
                raise GatewayUnavailable(str(exc)) from exc
            raise GatewayError(str(exc)) from exc
        return _plain(result)

    # --- catalog -----------------------------------------------------------------------------

    def ensure_product(self, product_id: str, name: str) -> Json:
        try:
            return self._call(self._v1.products.retrieve, product_id)
        except GatewayError:
            return self._call(self._v1.products.create, id=product_id, name=name)

    def ensure_plan(
        self, plan_id: str, *, product_id: str, amount: int, currency: str, interval: str
    ) -> Json:
        try:
            return self._call(self._v1.plans.retrieve, plan_id)
        except GatewayError:
            return self._call(
                self._v1.plans.create,
                id=plan_id,
                product=product_id,
                amount=amount,
                currency=currency.lower(),
                interval=interval,
            )

    def set_plan_active(self, plan_id: str, active: bool) -> Json:
        """Archive a price (new subscriptions cannot use it) or offer it again."""
        return self._call(self._v1.plans.update, plan_id, active=active)

    # --- customers and cards -----------------------------------------------------------------

    def create_customer(self, *, email: str, name: str, member_id: int) -> Json:
        return self._call(
            self._v1.customers.create,
            email=email,
            name=name,
            metadata={"member_id": str(member_id)},
            idempotency_key=f"customer-for-member-{member_id}",
        )

    def get_customer(self, customer_id: str) -> Json:
        return self._call(self._v1.customers.retrieve, customer_id)

    def get_customer_with_card(self, customer_id: str) -> Json:
        """The customer with its default payment method (the card) expanded, in one call."""
        return self._call(
            self._v1.customers.retrieve,
            customer_id,
            expand=["invoice_settings.default_payment_method"],
        )

    def create_setup_intent(self, customer_id: str | None) -> Json:
        params: Json = {"payment_method_types": ["card"], "usage": "off_session"}
        if customer_id:
            params["customer"] = customer_id
        return self._call(self._v1.setup_intents.create, **params)

    def get_setup_intent(self, setup_intent_id: str) -> Json:
        return self._call(self._v1.setup_intents.retrieve, setup_intent_id)

    def use_card(self, customer_id: str, payment_method_id: str) -> Json:
        """Attach a card to the customer (Stripe does it at setup, localstripe does not) and
        make it the default for invoices. Returns the payment method."""
        method = self._call(self._v1.payment_methods.retrieve, payment_method_id)
        if method.get("customer") != customer_id:
            method = self._call(
                self._v1.payment_methods.attach, payment_method_id, customer=customer_id
            )
        self._call(
            self._v1.customers.update,
            customer_id,
            invoice_settings={"default_payment_method": payment_method_id},
        )
        return method

    def get_payment_method(self, payment_method_id: str) -> Json:
        return self._call(self._v1.payment_methods.retrieve, payment_method_id)

    # --- subscriptions -----------------------------------------------------------------------

    def create_subscription(
        self,
        *,
        customer_id: str,
        plan_id: str,
        member_id: int,
        trial_days: int = 0,
        idempotency_key: str,
    ) -> Json:
        params: Json = {
            "customer": customer_id,
            "items": [{"plan": plan_id}],
            "metadata": {"member_id": str(member_id)},
            "expand": ["latest_invoice.payment_intent"],
        }
        if trial_days:
            params["trial_period_days"] = trial_days
        return self._call(self._v1.subscriptions.create, idempotency_key=idempotency_key, **params)

    def get_subscription(self, subscription_id: str) -> Json:
        return self._call(
            self._v1.subscriptions.retrieve,
            subscription_id,
            expand=["latest_invoice.payment_intent"],
        )

    def get_subscription_for_sync(self, subscription_id: str) -> Json:
        """The subscription with its customer, so that an unknown one can be linked by email."""
        return self._call(self._v1.subscriptions.retrieve, subscription_id, expand=["customer"])

    def change_plan(self, subscription: Json, plan_id: str) -> Json:
        """Move to another plan now, with Stripe's default proration.

        Only the item's plan is sent: localstripe breaks on SubscriptionItem updates and on
        ``proration_behavior``.
        """
        item_id = subscription["items"]["data"][0]["id"]
        return self._call(
            self._v1.subscriptions.update,
            subscription["id"],
            items=[{"id": item_id, "plan": plan_id}],
        )

    def set_cancel_at_period_end(self, subscription_id: str, cancel: bool) -> Json:
        return self._call(
            self._v1.subscriptions.update, subscription_id, cancel_at_period_end=cancel
        )

    def pause(self, subscription_id: str, resumes_at: int) -> Json:
        """Stop collecting payments until ``resumes_at`` (Stripe's pause_collection)."""
        return self._call(
            self._v1.subscriptions.update,
            subscription_id,
            pause_collection={"behavior": "void", "resumes_at": resumes_at},
        )

    def resume(self, subscription_id: str) -> Json:
        return self._call(self._v1.subscriptions.update, subscription_id, pause_collection="")

    def cancel_now(self, subscription_id: str) -> Json:
        return self._call(self._v1.subscriptions.cancel, subscription_id)

    def pay_invoice(self, invoice_id: str) -> Json:
        return self._call(self._v1.invoices.pay, invoice_id, expand=["payment_intent"])

    def get_invoice(self, invoice_id: str) -> Json:
        return self._call(self._v1.invoices.retrieve, invoice_id, expand=["payment_intent"])

    def get_invoice_for_sync(self, invoice_id: str) -> Json:
        """The invoice with its payment intent, subscription and customer, in one call.

        ``subscription`` can be expanded on API versions before 2025-03-31 (the pinned default);
        on later versions it moved, and we fetch the invoice without it.
        """
        try:
            return self._call(
                self._v1.invoices.retrieve,
                invoice_id,
                expand=["payment_intent", "subscription", "customer"],
            )
        except (CardError, GatewayUnavailable):
            raise
        except GatewayError:
            return self._call(self._v1.invoices.retrieve, invoice_id, expand=["customer"])

    def list_invoices(self, customer_id: str, limit: int = 24) -> list[Json]:
        result = self._call(self._v1.invoices.list, customer=customer_id, limit=limit)
        return list(result.get("data", []))

    # --- one-off payments --------------------------------------------------------------------

    def create_payment(
        self,
        *,
        amount: int,
        currency: str,
        payment_method_id: str,
        customer_id: str | None,
        metadata: dict[str, str],
        idempotency_key: str,
    ) -> Json:
        params: Json = {
            "amount": amount,
            "currency": currency.lower(),
            "payment_method": payment_method_id,
            "payment_method_types": ["card"],
            "confirm": True,
            "metadata": metadata,
        }
        if customer_id:
            params["customer"] = customer_id
        return self._call(
            self._v1.payment_intents.create, idempotency_key=idempotency_key, **params
        )

    def get_payment_intent(self, payment_intent_id: str) -> Json:
        return self._call(self._v1.payment_intents.retrieve, payment_intent_id)

    def get_charge(self, charge_id: str) -> Json:
        return self._call(self._v1.charges.retrieve, charge_id)

    def refund(self, payment_intent_id: str, amount: int, idempotency_key: str) -> Json:
        return self._call(
            self._v1.refunds.create,
            payment_intent=payment_intent_id,
            amount=amount,
            idempotency_key=idempotency_key,
        )

    # --- listing, for reconcile ----------------------------------------------------------------

    def iter_subscriptions(self, status: str = "all") -> Iterator[Json]:
        """Every subscription, with its customer (to link ones made outside the app) and the
        customer's default card (four levels: the deepest expansion Stripe allows)."""
        expand = ["data.customer", "data.customer.invoice_settings.default_payment_method"]
        yield from self._iterate(
            self._v1.subscriptions.list, {"status": status, "limit": 100, "expand": expand}
        )

    def iter_events(self) -> Iterator[Json]:
        """Recent events, newest first."""
        yield from self._iterate(self._v1.events.list, {"limit": 100})

    def _iterate(self, method: Any, params: Json) -> Iterator[Json]:
        try:
            page = method(params=params)
            for item in page.auto_paging_iter():
                yield _plain(item)
        except (stripe.APIConnectionError, stripe.RateLimitError, stripe.APIError) as exc:
            raise GatewayUnavailable(str(exc)) from exc

    # --- webhooks ----------------------------------------------------------------------------

    def parse_webhook(self, payload: bytes, signature: str | None, tolerance: int = 300) -> Json:
        """Verify a webhook's signature on the raw body and return the event."""
        if not self.settings.webhook_secret:
            raise InvalidWebhook("no webhook secret is configured")
        if not signature:
            raise InvalidWebhook("missing Stripe-Signature header")
        try:
            stripe.WebhookSignature.verify_header(
                payload.decode("utf-8"), signature, self.settings.webhook_secret, tolerance
            )
        except (stripe.SignatureVerificationError, UnicodeDecodeError) as exc:
            raise InvalidWebhook("bad signature") from exc
        try:
            event = json.loads(payload)
        except ValueError as exc:
            raise InvalidWebhook("the body is not JSON") from exc
        if not isinstance(event, dict) or not isinstance(event.get("id"), str):
            raise InvalidWebhook("the body is not a Stripe event")
        if not isinstance(event.get("type"), str) or not isinstance(event.get("data"), dict):
            raise InvalidWebhook("the body is not a Stripe event")
        return event
