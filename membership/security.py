"""Security headers for every response."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from flask import Flask, Response, request
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
    policy = content_security_policy(*stripe_sources(app.config))
    hsts = not app.config["DEVELOPMENT"] and not app.config["TESTING"]

    @app.after_request
    def set_security_headers(response: Response) -> Response:
        headers = response.headers
        headers.setdefault("Content-Security-Policy", policy)
        headers.setdefault("X-Content-Type-Options", "nosniff")
        headers.setdefault("X-Frame-Options", "DENY")
        headers.setdefault("Referrer-Policy", "strict-origin-when-cross-origin")
        headers.setdefault("Permissions-Policy", "camera=(), microphone=(), geolocation=()")
        headers.setdefault("Cross-Origin-Opener-Policy", "same-origin")
        if hsts:
            headers.setdefault("Strict-Transport-Security", "max-age=31536000; includeSubDomains")
        # Pages for a logged-in member are theirs alone: never kept by a shared cache. Static
        # files are the same for everyone (and asking who is logged in would cost a query).
        if request.endpoint != "static" and current_user and current_user.is_authenticated:
            headers["Cache-Control"] = "no-store"
        return response
