"""Security headers for every response."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from flask import Flask, Response, request, session
from flask_login import current_user


def stripe_sources(config: Mapping[str, Any]) -> tuple[str, str, str]:
    """Extra (script, connect, frame) sources for Stripe.js: none unless Stripe is configured."""
    if not config.get("STRIPE_SECRET_KEY"):
        return "", "", ""
    base = config.get("STRIPE_API_BASE", "")
    if base:  # an offline stand-in such as localstripe serves its own Stripe.js
        origin = "{0.scheme}://{0.netloc}".format(urlsplit(base))
        return f" {origin}", f" {origin}", ""
    return (
        " https://js.stripe.com",
        " https://api.stripe.com",
        " https://js.stripe.com https://hooks.stripe.com",
    )


def content_security_policy(
    extra_script: str = "", extra_connect: str = "", frame: str = ""
) -> str:
    return "; ".join(
        [
            "default-src 'self'",
            f"script-src 'self'{extra_script}",
            f"connect-src 'self'{extra_connect}",
            "frame-src " + (frame.strip() or "'none'"),
            "style-src 'self'",
            "img-src 'self' data:",
            "font-src 'self'",
            "object-src 'none'",
            "base-uri 'none'",
            "form-action 'self'",
            "frame-ancestors 'none'",
        ]
    )


def init_app(app: Flask) -> None:
    defaults = [
        ("Content-Security-Policy", content_security_policy(*stripe_sources(app.config))),
        ("X-Content-Type-Options", "nosniff"),
        ("X-Frame-Options", "DENY"),
        ("Referrer-Policy", "strict-origin-when-cross-origin"),
        ("Permissions-Policy", "camera=(), microphone=(), geolocation=()"),
        ("Cross-Origin-Opener-Policy", "same-origin"),
    ]
    if not app.config["DEVELOPMENT"] and not app.config["TESTING"]:
        defaults.append(("Strict-Transport-Security", "max-age=31536000; includeSubDomains"))

    @app.after_request
    def set_security_headers(response: Response) -> Response:
        # This runs on every response: one pass over the headers a view set (a view's own
        # value wins), not one lookup per default, which cost a fifth of a trivial route's time
        # (docs/performance.md, "Pages under load").
        headers = response.headers
        present = {name.lower() for name in headers.keys()}  # noqa: SIM118 - Headers, not a dict
        headers.extend([(k, v) for k, v in defaults if k.lower() not in present])
        # Pages for a logged-in member are theirs alone: never kept by a shared cache. Static
        # files are the same for everyone (and asking who is logged in would cost a query), and
        # without a user id in the session nobody is logged in: no need to ask.
        if (
            request.endpoint != "static"
            and "_user_id" in session  # flask-login's key, set by login_user
            and current_user.is_authenticated
        ):
            headers["Cache-Control"] = "no-store"
        return response
