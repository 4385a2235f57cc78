"""Settings, read from the environment with safe defaults for development.

Every setting can be overridden by ``create_app(overrides)``, which is how the tests configure
the app.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import limits

DEV_SECRET_KEY = "dev-only-secret-key-change-me"  # noqa: S105 - refused outside development
DEFAULT_STRIPE_API_VERSION = "2025-02-24.acacia"


class ConfigError(RuntimeError):
    """A setting is missing or malformed; the message says which and how to fix it."""


def _bool(value: str | None, default: bool) -> bool:
    if value is None or value == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def _int(name: str, default: int) -> int:
    raw = os.environ.get(name, "")
    if raw == "":
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise ConfigError(f"{name} must be a whole number, got {raw!r}") from exc


def _rate_limit(name: str, default: str) -> str:
    raw = os.environ.get(name, "").strip() or default
    try:
        limits.parse_many(raw)
    except ValueError as exc:
        raise ConfigError(f"{name} must be a rate like '6000 per minute', got {raw!r}") from exc
    return raw


def _currencies(raw: str) -> list[str]:
    codes = [code.strip().upper() for code in raw.split(",") if code.strip()]
    if not codes or any(len(code) != 3 or not code.isalpha() for code in codes):
        raise ConfigError(f"CURRENCIES must be ISO codes separated by commas, got {raw!r}")
    return codes


def normalise_database_url(url: str) -> str:
    """Use the psycopg 3 driver for plain ``postgresql://`` URLs, as hosting providers give them."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def from_environment(instance_path: str) -> dict[str, Any]:
    env = os.environ.get
    environment = env("MEMBERSHIP_ENV", "development")
    development = environment == "development"
    default_db = "sqlite:///" + str(Path(instance_path) / "membership.sqlite3")
    return {
        "ENV_NAME": environment,
        "DEVELOPMENT": development,
        "TESTING": False,
        "SECRET_KEY": env("SECRET_KEY", DEV_SECRET_KEY),
        "NEWSROOM_NAME": env("NEWSROOM_NAME", "The Frontline Dispatch"),
        # Links in emails are built from this; it must be the public address of the app.
        "BASE_URL": env("BASE_URL", "http://127.0.0.1:5000").rstrip("/"),
        "SQLALCHEMY_DATABASE_URI": normalise_database_url(env("DATABASE_URL", default_db)),
        "SQLALCHEMY_ENGINE_OPTIONS": {"pool_pre_ping": True},
        # Email: with no SMTP_HOST, mail is printed and saved under instance/outbox/ (development).
        "MAIL_FROM": env("MAIL_FROM", "The Frontline Dispatch <members@example.org>"),
        "SMTP_HOST": env("SMTP_HOST", ""),
        "SMTP_PORT": _int("SMTP_PORT", 587),
        "SMTP_USERNAME": env("SMTP_USERNAME", ""),
        "SMTP_PASSWORD": env("SMTP_PASSWORD", ""),
        "SMTP_STARTTLS": _bool(env("SMTP_STARTTLS"), True),
        "SMTP_TIMEOUT": _int("SMTP_TIMEOUT", 10),
        "MAIL_OUTBOX_DIR": str(Path(instance_path) / "outbox"),
        "REDIS_URL": env("REDIS_URL", ""),
        # How many reverse proxies in front of the app set X-Forwarded-For/-Proto (0: none).
        # Rate limits count the client address this yields, so set it to match your setup.
        "TRUSTED_PROXIES": _int("TRUSTED_PROXIES", 0),
        "RATELIMIT_ENABLED": _bool(env("RATELIMIT_ENABLED"), True),
        # Requests per API key to the member API: generous, the main site may ask on every page.
        "API_RATE_LIMIT": _rate_limit("API_RATE_LIMIT", "6000 per minute"),
        # Token lifetimes, in seconds.
        "CONFIRM_EMAIL_MAX_AGE": _int("CONFIRM_EMAIL_MAX_AGE", 3 * 24 * 3600),
        "RESET_PASSWORD_MAX_AGE": _int("RESET_PASSWORD_MAX_AGE", 3600),
        "LOGIN_SESSION_DAYS": _int("LOGIN_SESSION_DAYS", 30),
        # Cookies: strict by default, Secure everywhere but development.
        "SESSION_COOKIE_HTTPONLY": True,
        "SESSION_COOKIE_SAMESITE": "Lax",
        "SESSION_COOKIE_SECURE": not development,
        "SESSION_COOKIE_NAME": "membership_session",
        "REMEMBER_COOKIE_HTTPONLY": True,
        "REMEMBER_COOKIE_SAMESITE": "Lax",
        "REMEMBER_COOKIE_SECURE": not development,
        "WTF_CSRF_TIME_LIMIT": None,  # the token lives as long as the session
        "MAX_CONTENT_LENGTH": 1024 * 1024,
        # Static files are linked with a content hash (templating.asset_url): cache them for a year.
        "SEND_FILE_MAX_AGE_DEFAULT": 365 * 24 * 3600,
        # Stripe (used by billing).
        "STRIPE_SECRET_KEY": env("STRIPE_SECRET_KEY", ""),
        "STRIPE_PUBLISHABLE_KEY": env("STRIPE_PUBLISHABLE_KEY", ""),
        "STRIPE_WEBHOOK_SECRET": env("STRIPE_WEBHOOK_SECRET", ""),
        "STRIPE_API_BASE": env("STRIPE_API_BASE", ""),
        "STRIPE_API_VERSION": env("STRIPE_API_VERSION", DEFAULT_STRIPE_API_VERSION),
        "STRIPE_MAX_NETWORK_RETRIES": _int("STRIPE_MAX_NETWORK_RETRIES", 2),
        # Membership policy.
        "CURRENCIES": _currencies(env("CURRENCIES", "EUR,USD,GBP")),
        "GRACE_PERIOD_DAYS": _int("GRACE_PERIOD_DAYS", 7),
        # The smallest one-off gift, in major units of any currency offered.
        "DONATION_MINIMUM": _int("DONATION_MINIMUM", 2),
    }


def check(config: dict[str, Any]) -> None:
    """Refuse to start with settings that are only safe on a developer's machine."""
    if config["DEVELOPMENT"] or config["TESTING"]:
        return
    if config["SECRET_KEY"] in ("", DEV_SECRET_KEY):
        raise ConfigError(
            "SECRET_KEY is not set: outside development (MEMBERSHIP_ENV="
            f"{config['ENV_NAME']!r}) the app needs a long random SECRET_KEY, for example "
            '`python -c "import secrets; print(secrets.token_urlsafe(48))"`.'
        )
    if len(config["SECRET_KEY"]) < 32:
        raise ConfigError("SECRET_KEY is too short: use at least 32 random characters.")
    if not config["BASE_URL"].startswith(("http://", "https://")):
        raise ConfigError(
            "BASE_URL must start with http:// or https:// (it is used in email links)."
        )
