"""Tiers and prices, joining, giving once, managing a membership, and Stripe webhooks."""

from __future__ import annotations

from flask import current_app

from membership.billing.gateway import GatewaySettings, StripeGateway


def get_gateway() -> StripeGateway:
    """The app's Stripe gateway, built once from its settings."""
    gateway = current_app.extensions.get("stripe_gateway")
    if gateway is None:
        config = current_app.config
        gateway = StripeGateway(
            GatewaySettings(
                secret_key=config["STRIPE_SECRET_KEY"],
                api_version=config["STRIPE_API_VERSION"],
                api_base=config["STRIPE_API_BASE"],
                webhook_secret=config["STRIPE_WEBHOOK_SECRET"],
                max_network_retries=config["STRIPE_MAX_NETWORK_RETRIES"],
            )
        )
        current_app.extensions["stripe_gateway"] = gateway
    return gateway


def billing_enabled() -> bool:
    return bool(current_app.config["STRIPE_SECRET_KEY"])


def test_mode() -> bool:
    return current_app.config["STRIPE_SECRET_KEY"].startswith("sk_test_")


def stripe_js_url() -> str:
    """Stripe.js from Stripe, or localstripe's stand-in when the API base points there."""
    base = current_app.config["STRIPE_API_BASE"]
    return f"{base.rstrip('/')}/js.stripe.com/v3/" if base else "https://js.stripe.com/v3/"
