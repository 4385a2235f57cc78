"""Settings, read from the environment with safe defaults for development.

Every setting can be overridden by ``create_app(overrides)``, which is how the tests configure
the app. ``check`` then looks at the result before anything starts: a malformed value stops the
app in every environment, and outside development so does a setting that is only safe on a
developer's machine. Each error names the variable and says what to put in it.
"""

from __future__ import annotations

import os
import re
import sys
from email.utils import parseaddr
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import urlsplit

import limits
import sqlalchemy as sa
from redis.connection import parse_url as parse_redis_url

DEV_SECRET_KEY = "dev-only-secret-key-change-me"  # noqa: S105 - refused outside development
DEFAULT_STRIPE_API_VERSION = "2025-02-24.acacia"

# gunicorn stops when a worker exits with this status ("App failed to load") instead of
# starting new workers that would fail the same way; any non-zero status suits flask's CLI.
EXIT_CONFIG_ERROR = 4

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


class ConfigError(RuntimeError):
    """A setting is missing or malformed; the message says which and how to fix it."""


def refuse_to_start(error: ConfigError) -> NoReturn:
    """Print the problem as plain lines (a traceback would bury it) and exit."""
    print(f"Configuration error: {error}", file=sys.stderr)
    sys.stderr.flush()
    raise SystemExit(EXIT_CONFIG_ERROR)


# --- reading the environment --------------------------------------------------------------------


def _bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name, "").strip().lower()
    if raw == "":
        return default
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    raise ConfigError(f"{name} must be true or false (1/0, yes/no, on/off), got {raw!r}.")


def _int(name: str, default: int, *, minimum: int = 0, maximum: int | None = None) -> int:
    raw = os.environ.get(name, "").strip()
    if raw == "":
        return default
    try:
        value = int(raw)
    except ValueError as exc:
        raise ConfigError(f"{name} must be a whole number, got {raw!r}.") from exc
    if value < minimum or (maximum is not None and value > maximum):
        allowed = f"from {minimum} to {maximum}" if maximum is not None else f"{minimum} or more"
        raise ConfigError(f"{name} must be {allowed}, got {value}.")
    return value


def _rate_limit(name: str, default: str) -> str:
    raw = os.environ.get(name, "").strip() or default
    try:
        limits.parse_many(raw)
    except ValueError as exc:
        raise ConfigError(f"{name} must be a rate like '6000 per minute', got {raw!r}.") from exc
    return raw


def _currencies(raw: str) -> list[str]:
    codes = [code.strip().upper() for code in raw.split(",") if code.strip()]
    if not codes or any(len(code) != 3 or not code.isalpha() for code in codes):
        raise ConfigError(
            f"CURRENCIES must be ISO 4217 codes separated by commas, like EUR,USD,GBP; got {raw!r}."
        )
    return codes


def normalise_database_url(url: str) -> str:
    """Use the psycopg 3 driver for plain ``postgresql://`` URLs, as hosting providers give them."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def limiter_storage_uri(redis_url: str) -> str:
    """The rate limiter's name for the same Redis (it spells sockets ``redis+unix://``)."""
    if redis_url.startswith("unix://"):
        return "redis+" + redis_url
    return redis_url or "memory://"


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
        "BASE_URL": env("BASE_URL", "http://127.0.0.1:5000").strip().rstrip("/"),
        "SQLALCHEMY_DATABASE_URI": normalise_database_url(env("DATABASE_URL", default_db).strip()),
        "SQLALCHEMY_ENGINE_OPTIONS": {"pool_pre_ping": True},
        # SQLite outside development only when asked for: one machine, a handful of writers.
        "ALLOW_SQLITE": _bool("ALLOW_SQLITE", False),
        # Email: with no SMTP_HOST, mail is printed and saved under instance/outbox/ (development).
        "MAIL_FROM": env("MAIL_FROM", "The Frontline Dispatch <members@example.org>"),
        "SMTP_HOST": env("SMTP_HOST", "").strip(),
        "SMTP_PORT": _int("SMTP_PORT", 587, minimum=1, maximum=65535),
        "SMTP_USERNAME": env("SMTP_USERNAME", ""),
        "SMTP_PASSWORD": env("SMTP_PASSWORD", ""),
        "SMTP_STARTTLS": _bool("SMTP_STARTTLS", True),
        "SMTP_TIMEOUT": _int("SMTP_TIMEOUT", 10, minimum=1),
        "MAIL_OUTBOX_DIR": str(Path(instance_path) / "outbox"),
        "REDIS_URL": env("REDIS_URL", "").strip(),
        # How many reverse proxies in front of the app set X-Forwarded-For/-Proto (0: none).
        # Rate limits count the client address this yields, so set it to match your setup.
        "TRUSTED_PROXIES": _int("TRUSTED_PROXIES", 0, maximum=10),
        "RATELIMIT_ENABLED": _bool("RATELIMIT_ENABLED", True),
        # While Redis is unreachable, each process counts on its own instead of failing every
        # rate-limited request (logins, signups, votes); Redis is used again once it is back.
        "RATELIMIT_IN_MEMORY_FALLBACK_ENABLED": True,
        # Requests per API key to the member API: generous, the main site may ask on every page.
        "API_RATE_LIMIT": _rate_limit("API_RATE_LIMIT", "6000 per minute"),
        # Every page, per client address: a flood from one client gets 429s before it slows
        # the app for everyone else. Login, signup, votes and the API have their own limits.
        "RATELIMIT_DEFAULT": _rate_limit("PAGE_RATE_LIMIT", "600 per minute"),
        # Token lifetimes, in seconds.
        "CONFIRM_EMAIL_MAX_AGE": _int("CONFIRM_EMAIL_MAX_AGE", 3 * 24 * 3600, minimum=60),
        "RESET_PASSWORD_MAX_AGE": _int("RESET_PASSWORD_MAX_AGE", 3600, minimum=60),
        "LOGIN_SESSION_DAYS": _int("LOGIN_SESSION_DAYS", 30, minimum=1),
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
        "STRIPE_SECRET_KEY": env("STRIPE_SECRET_KEY", "").strip(),
        "STRIPE_PUBLISHABLE_KEY": env("STRIPE_PUBLISHABLE_KEY", "").strip(),
        "STRIPE_WEBHOOK_SECRET": env("STRIPE_WEBHOOK_SECRET", "").strip(),
        "STRIPE_API_BASE": env("STRIPE_API_BASE", "").strip(),
        "STRIPE_API_VERSION": env("STRIPE_API_VERSION", DEFAULT_STRIPE_API_VERSION).strip(),
        "STRIPE_MAX_NETWORK_RETRIES": _int("STRIPE_MAX_NETWORK_RETRIES", 2, maximum=10),
        # Membership policy.
        "CURRENCIES": _currencies(env("CURRENCIES", "EUR,USD,GBP")),
        "GRACE_PERIOD_DAYS": _int("GRACE_PERIOD_DAYS", 7),
        # The smallest one-off gift, in major units of any currency offered.
        "DONATION_MINIMUM": _int("DONATION_MINIMUM", 2, minimum=1),
    }


# --- checking the result ------------------------------------------------------------------------


def _masked(url: str) -> str:
    """The URL without its password, fit for an error message."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return parts._replace(netloc=netloc).geturl()


def _database_problems(uri: str) -> list[str]:
    example = "postgresql://user:password@db.example.org:5432/membership"
    try:
        url = sa.make_url(uri)
        backend, driver = url.get_backend_name(), url.get_driver_name()
    except (sa.exc.ArgumentError, ValueError):
        # Not even the scheme is echoed: a half-typed URL may hold a password.
        return [f"DATABASE_URL is not a database URL. Use {example}."]
    if backend == "postgresql" and driver != "psycopg":
        return [
            f"DATABASE_URL asks for the {driver} driver; the app uses psycopg 3. "
            f"Write it as {example} (or postgresql+psycopg://...)."
        ]
    if backend not in ("postgresql", "sqlite") or (backend == "sqlite" and driver != "pysqlite"):
        return [
            f"DATABASE_URL must point at PostgreSQL ({example}), or at a SQLite file "
            f"(sqlite:///path/to/membership.sqlite3) in development; {url.drivername}:// "
            "is not supported."
        ]
    return []


def _redis_problems(redis_url: str) -> list[str]:
    if not redis_url:
        return []
    example = "redis://redis.example.org:6379/0, rediss://... (TLS) or unix:///run/redis.sock"
    if not redis_url.startswith(("redis://", "rediss://", "unix://")):
        return [f"REDIS_URL must start with redis://, rediss:// or unix://, like {example}."]
    try:
        parse_redis_url(redis_url)
    except ValueError as exc:
        return [f"REDIS_URL {_masked(redis_url)!r} cannot be used ({exc}); use {example}."]
    path = urlsplit(redis_url).path.strip("/")
    if redis_url.startswith(("redis://", "rediss://")) and path and not path.isdigit():
        return [
            f"REDIS_URL {_masked(redis_url)!r} ends in {path!r}: after the host comes the "
            "database number, like redis://host:6379/0."
        ]
    return []


def _url_problems(name: str, value: str, what: str) -> list[str]:
    try:
        parts = urlsplit(value)
        usable = parts.scheme in ("http", "https") and bool(parts.hostname)
    except ValueError:  # an unclosed [IPv6 address
        usable = False
    if not usable:
        return [f"{name} must be a full address like https://{what}, got {value!r}."]
    return []


def _format_problems(config: dict[str, Any]) -> list[str]:
    """Values that cannot work anywhere, development included."""
    problems = _database_problems(config["SQLALCHEMY_DATABASE_URI"])
    problems += _redis_problems(config["REDIS_URL"])
    problems += _url_problems("BASE_URL", config["BASE_URL"], "members.example.org")
    if config["STRIPE_API_BASE"]:
        problems += _url_problems("STRIPE_API_BASE", config["STRIPE_API_BASE"], "api.stripe.com")
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}(\.[a-z]+)?", config["STRIPE_API_VERSION"]):
        problems.append(
            f"STRIPE_API_VERSION must be a Stripe API version like {DEFAULT_STRIPE_API_VERSION}, "
            f"got {config['STRIPE_API_VERSION']!r}."
        )
    if "@" not in parseaddr(config["MAIL_FROM"])[1]:
        problems.append(
            "MAIL_FROM must hold an email address, like "
            f"'Newsroom <members@example.org>', got {config['MAIL_FROM']!r}."
        )
    if config["TRUSTED_PROXIES"] < 0:
        problems.append("TRUSTED_PROXIES must be 0 or more (the number of proxies in front).")
    return problems


def _stripe_problems(config: dict[str, Any]) -> list[str]:
    keys = {
        "STRIPE_SECRET_KEY": ("sk_", "rk_"),
        "STRIPE_PUBLISHABLE_KEY": ("pk_",),
        "STRIPE_WEBHOOK_SECRET": ("whsec_",),
    }
    values = {name: config[name] for name in keys}
    if not any(values.values()):
        return []  # payments are off
    missing = [name for name, value in values.items() if not value]
    if missing:
        return [
            f"Stripe is half configured: {', '.join(missing)} "
            f"{'is' if len(missing) == 1 else 'are'} not set. Set all three from the Stripe "
            "Dashboard (Developers: API keys, and the signing secret of the webhook endpoint "
            "for /webhooks/stripe), or none to turn payments off."
        ]
    problems = [
        f"{name} does not look like a Stripe key: it should start with {' or '.join(prefixes)}."
        for name, prefixes in keys.items()
        if not values[name].startswith(prefixes)
    ]
    if problems:
        return problems
    secret_live = values["STRIPE_SECRET_KEY"][3:].startswith("live_")
    publishable_live = values["STRIPE_PUBLISHABLE_KEY"][3:].startswith("live_")
    if secret_live != publishable_live:
        modes = {True: "live", False: "test"}
        return [
            f"STRIPE_SECRET_KEY is a {modes[secret_live]} key but STRIPE_PUBLISHABLE_KEY is a "
            f"{modes[publishable_live]} key: take both from the same mode of the Stripe Dashboard."
        ]
    if secret_live and config["STRIPE_API_BASE"]:
        return [
            "STRIPE_API_BASE is set together with live Stripe keys: it is only for an offline "
            "stand-in such as localstripe. Remove it in production."
        ]
    return []


def _production_problems(config: dict[str, Any]) -> list[str]:
    """Settings that are only safe on a developer's machine."""
    env_name = config["ENV_NAME"]
    problems = []
    if config["SECRET_KEY"] in ("", DEV_SECRET_KEY):
        problems.append(
            f"SECRET_KEY is not set: outside development (MEMBERSHIP_ENV={env_name!r}) the app "
            "needs a long random SECRET_KEY, for example "
            '`python -c "import secrets; print(secrets.token_urlsafe(48))"`.'
        )
    elif len(config["SECRET_KEY"]) < 32:
        problems.append("SECRET_KEY is too short: use at least 32 random characters.")
    uri = config["SQLALCHEMY_DATABASE_URI"]
    url = None if _database_problems(uri) else sa.make_url(uri)  # malformed: told already
    if url is not None and url.get_backend_name() == "sqlite":
        if url.database in (None, "", ":memory:"):
            problems.append(
                "DATABASE_URL points at an in-memory SQLite database, which every process "
                "would have on its own and lose at exit: set DATABASE_URL to PostgreSQL."
            )
        elif not config["ALLOW_SQLITE"]:
            problems.append(
                f"DATABASE_URL is {'not set' if 'DATABASE_URL' not in os.environ else 'SQLite'}: "
                f"outside development (MEMBERSHIP_ENV={env_name!r}) the app expects PostgreSQL, "
                "like postgresql://user:password@db.example.org:5432/membership. To run on a "
                "SQLite file anyway (one machine, few writers), set ALLOW_SQLITE=1."
            )
    base_url_ok = not _url_problems("BASE_URL", config["BASE_URL"], "")
    if base_url_ok and urlsplit(config["BASE_URL"]).scheme != "https":
        problems.append(
            f"BASE_URL must start with https:// outside development: it is the address in "
            f"every email link, and login cookies are only sent over HTTPS; got "
            f"{config['BASE_URL']!r}."
        )
    if not config["SMTP_HOST"]:
        problems.append(
            "SMTP_HOST is not set: outside development the app must send its email (account "
            "confirmations, password resets, receipts) through your mail provider's SMTP relay. "
            "Set SMTP_HOST, SMTP_PORT, SMTP_USERNAME and SMTP_PASSWORD."
        )
    if bool(config["SMTP_USERNAME"]) != bool(config["SMTP_PASSWORD"]):
        missing = "SMTP_PASSWORD" if config["SMTP_USERNAME"] else "SMTP_USERNAME"
        problems.append(f"{missing} is not set: SMTP login needs both a username and a password.")
    return problems + _stripe_problems(config)


def check(config: dict[str, Any]) -> list[str]:
    """Refuse to start with a malformed setting, or outside development with one that is only
    safe on a developer's machine. Returns warnings: things that work, but not at scale."""
    problems = _format_problems(config)
    if not (config["DEVELOPMENT"] or config["TESTING"]):
        problems += _production_problems(config)
    if len(problems) == 1:
        raise ConfigError(problems[0])
    if problems:
        raise ConfigError(
            f"{len(problems)} settings need fixing:\n" + "\n".join(f"- {p}" for p in problems)
        )
    if config["DEVELOPMENT"] or config["TESTING"] or config["REDIS_URL"]:
        return []
    return [
        "REDIS_URL is not set: rate limits are counted by each process on its own, so with "
        "several gunicorn workers or machines a client gets that many times the limit. Set "
        "REDIS_URL (see docs/deploy.md)."
    ]
