"""Security headers for every response."""

from __future__ import annotations

from flask import Flask, Response
from flask_login import current_user


def content_security_policy(extra_script: str = "", extra_connect: str = "") -> str:
    return "; ".join(
        [
            "default-src 'self'",
            f"script-src 'self'{extra_script}",
            f"connect-src 'self'{extra_connect}",
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
    policy = content_security_policy()
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
        # Pages for a logged-in member are theirs alone: never kept by a shared cache.
        if current_user and current_user.is_authenticated:
            headers["Cache-Control"] = "no-store"
        return response
