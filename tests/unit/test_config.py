"""Settings: safe for development, checked at start, refused where they would be dangerous."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import flask_migrate
import pytest

from membership import PROJECT_ROOT, config, create_app
from membership.extensions import db, limiter

# Every variable the settings read, so that a developer's own shell cannot change the outcome.
VARIABLES = (
    "MEMBERSHIP_ENV",
    "SECRET_KEY",
    "DATABASE_URL",
    "ALLOW_SQLITE",
    "BASE_URL",
    "NEWSROOM_NAME",
    "MAIL_FROM",
    "SMTP_HOST",
    "SMTP_PORT",
    "SMTP_USERNAME",
    "SMTP_PASSWORD",
    "SMTP_STARTTLS",
    "SMTP_TIMEOUT",
    "REDIS_URL",
    "TRUSTED_PROXIES",
    "RATELIMIT_ENABLED",
    "API_RATE_LIMIT",
    "CONFIRM_EMAIL_MAX_AGE",
    "RESET_PASSWORD_MAX_AGE",
    "LOGIN_SESSION_DAYS",
    "STRIPE_SECRET_KEY",
    "STRIPE_PUBLISHABLE_KEY",
    "STRIPE_WEBHOOK_SECRET",
    "STRIPE_API_BASE",
    "STRIPE_API_VERSION",
    "STRIPE_MAX_NETWORK_RETRIES",
    "CURRENCIES",
    "GRACE_PERIOD_DAYS",
    "DONATION_MINIMUM",
)

# A complete production setup, as docs/deploy.md describes it.
PRODUCTION = {
    "MEMBERSHIP_ENV": "production",
    "SECRET_KEY": "k" * 48,
    "DATABASE_URL": "postgresql://membership:hunter2@db.example.org:5432/membership",
    "BASE_URL": "https://members.example.org",
    "SMTP_HOST": "smtp.example.org",
    "SMTP_USERNAME": "members",
    "SMTP_PASSWORD": "smtp-password",
    "REDIS_URL": "redis://:redis-password@redis.example.org:6379/0",
    "STRIPE_SECRET_KEY": "sk_live_abc",
    "STRIPE_PUBLISHABLE_KEY": "pk_live_abc",
    "STRIPE_WEBHOOK_SECRET": "whsec_abc",
}


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in VARIABLES:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def limiter_back_to_memory() -> Iterator[None]:
    """create_app binds the one rate limiter to the app's storage: after an app with Redis,
    give the other tests back an in-memory one rather than a Redis server that does not exist."""
    yield
    with pytest.MonkeyPatch.context() as patch:
        for name in VARIABLES:
            patch.delenv(name, raising=False)
        limiter.init_app(create_app({"TESTING": True, "SQLALCHEMY_DATABASE_URI": "sqlite://"}))


def settings_for(monkeypatch: pytest.MonkeyPatch, **variables: str | None) -> dict:
    """Read the settings from ``variables`` (None: unset); raises ConfigError like the app."""
    for name, value in variables.items():
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    settings = config.from_environment("/srv/app/instance")
    config.check(settings)
    return settings


def production(monkeypatch: pytest.MonkeyPatch, **changes: str | None) -> dict:
    return settings_for(monkeypatch, **{**PRODUCTION, **changes})


# --- what passes ----------------------------------------------------------------------------------


def test_development_defaults_use_sqlite_under_instance(monkeypatch):
    settings = settings_for(monkeypatch)
    assert settings["SQLALCHEMY_DATABASE_URI"] == "sqlite:////srv/app/instance/membership.sqlite3"
    assert settings["SESSION_COOKIE_SECURE"] is False
    assert settings["RATELIMIT_ENABLED"] is True


def test_make_run_settings_with_localstripe_pass(monkeypatch):
    settings_for(
        monkeypatch,
        STRIPE_SECRET_KEY="sk_test_offline_demo",
        STRIPE_PUBLISHABLE_KEY="pk_test_offline_demo",
        STRIPE_WEBHOOK_SECRET="whsec_offline_demo",
        STRIPE_API_BASE="http://127.0.0.1:8420",
    )


def test_a_complete_production_setup_starts_with_secure_cookies_and_hsts(
    monkeypatch, limiter_back_to_memory
):
    for name, value in PRODUCTION.items():
        monkeypatch.setenv(name, value)
    app = create_app()
    assert app.config["SESSION_COOKIE_SECURE"] is True
    assert app.config["SESSION_COOKIE_HTTPONLY"] is True
    assert app.config["SESSION_COOKIE_SAMESITE"] == "Lax"
    assert app.config["SQLALCHEMY_DATABASE_URI"].startswith("postgresql+psycopg://")
    assert app.config["RATELIMIT_STORAGE_URI"] == PRODUCTION["REDIS_URL"]
    response = app.test_client().get("/", base_url="https://members.example.org")
    assert response.headers["Strict-Transport-Security"].startswith("max-age=")


def test_production_without_redis_starts_but_warns_that_limits_are_per_process(monkeypatch, caplog):
    with caplog.at_level(logging.WARNING, logger="membership"):
        app = create_app_with(monkeypatch, {**PRODUCTION, "REDIS_URL": ""})
    assert app.config["RATELIMIT_STORAGE_URI"] == "memory://"
    assert "REDIS_URL is not set: rate limits are counted by each process" in caplog.text


def create_app_with(monkeypatch: pytest.MonkeyPatch, variables: dict[str, str]):
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    return create_app()


def test_sqlite_in_production_runs_only_when_asked_for(monkeypatch, tmp_path):
    database = f"sqlite:///{tmp_path / 'members.sqlite3'}"
    with pytest.raises(config.ConfigError, match=r"DATABASE_URL is SQLite.*ALLOW_SQLITE=1"):
        production(monkeypatch, DATABASE_URL=database)
    settings = production(monkeypatch, DATABASE_URL=database, ALLOW_SQLITE="1")
    assert settings["SQLALCHEMY_DATABASE_URI"] == database


def test_a_redis_socket_reaches_the_rate_limiter_under_its_name(
    monkeypatch, limiter_back_to_memory
):
    app = create_app_with(monkeypatch, {**PRODUCTION, "REDIS_URL": "unix:///run/redis.sock?db=2"})
    assert app.config["RATELIMIT_STORAGE_URI"] == "redis+unix:///run/redis.sock?db=2"


def test_while_redis_is_unreachable_logins_still_work_and_are_limited_per_process(
    tmp_path, limiter_back_to_memory
):
    app = create_app(
        {
            "TESTING": True,
            "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'members.sqlite3'}",
            "REDIS_URL": "redis://127.0.0.1:1/0",  # nothing listens there
            "WTF_CSRF_ENABLED": False,
        }
    )
    with app.app_context():
        flask_migrate.upgrade()
    client = app.test_client()
    form = {"email": "reader@example.org", "password": "not the password"}
    statuses = [client.post("/account/login", data=form).status_code for _ in range(11)]
    assert statuses == [400] * 10 + [429]
    with app.app_context():
        db.engine.dispose()


# --- what is refused outside development, and the words that say how to fix it -------------------


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"SECRET_KEY": None}, "SECRET_KEY is not set"),
        ({"SECRET_KEY": config.DEV_SECRET_KEY}, "SECRET_KEY is not set"),
        ({"SECRET_KEY": "too-short"}, "SECRET_KEY is too short"),
        ({"DATABASE_URL": None}, r"DATABASE_URL is not set.*expects PostgreSQL.*ALLOW_SQLITE=1"),
        (
            {"DATABASE_URL": "sqlite://", "ALLOW_SQLITE": "1"},
            "DATABASE_URL points at an in-memory SQLite database",
        ),
        ({"BASE_URL": "http://members.example.org"}, "BASE_URL must start with https://"),
        ({"SMTP_HOST": None}, "SMTP_HOST is not set"),
        ({"SMTP_PASSWORD": None}, "SMTP_PASSWORD is not set"),
        ({"SMTP_USERNAME": None}, "SMTP_USERNAME is not set"),
        (
            {"STRIPE_PUBLISHABLE_KEY": None, "STRIPE_WEBHOOK_SECRET": None},
            r"Stripe is half configured: STRIPE_PUBLISHABLE_KEY, STRIPE_WEBHOOK_SECRET are not",
        ),
        ({"STRIPE_WEBHOOK_SECRET": None}, "STRIPE_WEBHOOK_SECRET is not set"),
        ({"STRIPE_SECRET_KEY": None}, "STRIPE_SECRET_KEY is not set"),
        (
            {"STRIPE_PUBLISHABLE_KEY": "pk_test_abc"},
            "STRIPE_SECRET_KEY is a live key but STRIPE_PUBLISHABLE_KEY is a test key",
        ),
        (
            {"STRIPE_SECRET_KEY": "sk_test_abc"},
            "STRIPE_SECRET_KEY is a test key but STRIPE_PUBLISHABLE_KEY is a live key",
        ),
        (
            {"STRIPE_SECRET_KEY": "pk_live_abc"},
            "STRIPE_SECRET_KEY does not look like a Stripe key: it should start with sk_ or rk_",
        ),
        ({"STRIPE_WEBHOOK_SECRET": "abc"}, "STRIPE_WEBHOOK_SECRET does not look like"),
        ({"STRIPE_API_BASE": "http://127.0.0.1:8420"}, "STRIPE_API_BASE is set together with live"),
    ],
    ids=lambda value: "-".join(value) if isinstance(value, dict) else None,
)
def test_outside_development_an_unsafe_setting_stops_the_app(monkeypatch, changes, message):
    with pytest.raises(config.ConfigError, match=message):
        production(monkeypatch, **changes)


def test_test_keys_and_restricted_keys_are_accepted_in_production(monkeypatch):
    production(
        monkeypatch,
        STRIPE_SECRET_KEY="rk_test_abc",
        STRIPE_PUBLISHABLE_KEY="pk_test_abc",
        STRIPE_API_BASE="http://127.0.0.1:8420",
    )
    no_keys = dict.fromkeys(("STRIPE_SECRET_KEY", "STRIPE_PUBLISHABLE_KEY"))
    with pytest.raises(config.ConfigError, match="STRIPE_SECRET_KEY, STRIPE_PUBLISHABLE_KEY are"):
        production(monkeypatch, **no_keys)
    production(monkeypatch, **no_keys, STRIPE_WEBHOOK_SECRET=None)  # payments off


def test_every_problem_is_listed_at_once(monkeypatch):
    with pytest.raises(config.ConfigError) as caught:
        settings_for(monkeypatch, MEMBERSHIP_ENV="production", REDIS_URL="localhost:6379")
    message = str(caught.value)
    assert message.startswith("5 settings need fixing:\n")
    for name in ("REDIS_URL", "SECRET_KEY", "DATABASE_URL", "BASE_URL", "SMTP_HOST"):
        assert f"\n- {name} " in message, name


# --- what is malformed anywhere, development included ---------------------------------------------


@pytest.mark.parametrize(
    ("variables", "message"),
    [
        ({"DATABASE_URL": "members.sqlite3"}, "DATABASE_URL is not a database URL"),
        ({"DATABASE_URL": "mysql://app@db/members"}, "mysql:// is not supported"),
        ({"DATABASE_URL": "postgresql+psycopg2://db/m"}, "asks for the psycopg2 driver"),
        ({"REDIS_URL": "localhost:6379"}, "REDIS_URL must start with redis://, rediss:// or"),
        ({"REDIS_URL": "http://redis:6379"}, "REDIS_URL must start with redis://"),
        ({"REDIS_URL": "redis://redis:99999/0"}, "Port out of range"),
        ({"REDIS_URL": "redis://redis:6379/cache"}, "after the host comes the database number"),
        ({"BASE_URL": "members.example.org"}, "BASE_URL must be a full address like https://"),
        ({"BASE_URL": "https://[::1"}, "BASE_URL must be a full address"),
        ({"STRIPE_API_BASE": "localhost:8420"}, "STRIPE_API_BASE must be a full address"),
        ({"STRIPE_API_VERSION": "latest"}, "STRIPE_API_VERSION must be a Stripe API version"),
        ({"MAIL_FROM": "The Newsroom"}, "MAIL_FROM must hold an email address"),
        ({"SMTP_PORT": "twenty-five"}, "SMTP_PORT must be a whole number, got 'twenty-five'"),
        ({"SMTP_PORT": "70000"}, "SMTP_PORT must be from 1 to 65535, got 70000"),
        ({"TRUSTED_PROXIES": "-1"}, "TRUSTED_PROXIES must be from 0 to 10, got -1"),
        ({"TRUSTED_PROXIES": "one"}, "TRUSTED_PROXIES must be a whole number"),
        ({"DONATION_MINIMUM": "0"}, "DONATION_MINIMUM must be 1 or more"),
        ({"GRACE_PERIOD_DAYS": "-3"}, "GRACE_PERIOD_DAYS must be 0 or more"),
        ({"SMTP_STARTTLS": "maybe"}, "SMTP_STARTTLS must be true or false"),
        ({"CURRENCIES": "EURO,USD"}, "CURRENCIES must be ISO 4217 codes"),
        ({"CURRENCIES": " , "}, "CURRENCIES must be ISO 4217 codes"),
        ({"API_RATE_LIMIT": "lots"}, "API_RATE_LIMIT must be a rate like"),
    ],
    ids=lambda value: (
        "-".join(f"{k}={v}" for k, v in value.items()) if isinstance(value, dict) else None
    ),
)
def test_a_malformed_setting_stops_the_app_even_in_development(monkeypatch, variables, message):
    with pytest.raises(config.ConfigError, match=message):
        settings_for(monkeypatch, **variables)


@pytest.mark.parametrize(
    "variables",
    [
        {"DATABASE_URL": "postgresql://app:hunter2@db:port/members"},
        {"DATABASE_URL": "mysql://app:hunter2@db/members"},
        {"REDIS_URL": "redis://:hunter2@redis:99999/0"},
        {"REDIS_URL": "redis://:hunter2@redis:6379/cache"},
    ],
)
def test_errors_about_an_address_never_show_its_password(monkeypatch, variables):
    with pytest.raises(config.ConfigError) as caught:
        settings_for(monkeypatch, **variables)
    assert "hunter2" not in str(caught.value)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgres://u@h/db", "postgresql+psycopg://u@h/db"),
        ("postgresql://u@h/db", "postgresql+psycopg://u@h/db"),
        ("postgresql+psycopg://u@h/db", "postgresql+psycopg://u@h/db"),
        ("sqlite:///x.db", "sqlite:///x.db"),
    ],
)
def test_database_urls_use_the_psycopg_driver(url, expected):
    assert config.normalise_database_url(url) == expected


def test_behind_one_trusted_proxy_the_client_address_comes_from_x_forwarded_for():
    from flask import request

    app = create_app(
        {"TESTING": True, "SQLALCHEMY_DATABASE_URI": "sqlite://", "TRUSTED_PROXIES": 1}
    )

    @app.get("/_whoami")
    def whoami() -> str:
        return request.remote_addr or ""

    seen = app.test_client().get("/_whoami", headers={"X-Forwarded-For": "203.0.113.9"})
    assert seen.get_data(as_text=True) == "203.0.113.9"


# --- what an operator sees when the app refuses to start ------------------------------------------

BROKEN = {
    **PRODUCTION,
    "STRIPE_PUBLISHABLE_KEY": "pk_test_abc",
    "DATABASE_URL": "postgresql://membership:hunter2@db.invalid/membership",
}


def run(command: list[str]) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in VARIABLES}
    return subprocess.run(
        command,
        env={**env, **BROKEN},
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def assert_refused_in_plain_words(result: subprocess.CompletedProcess[str]) -> None:
    assert result.returncode == config.EXIT_CONFIG_ERROR, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    assert (
        "Configuration error: STRIPE_SECRET_KEY is a live key but STRIPE_PUBLISHABLE_KEY is a "
        "test key" in result.stderr
    ), result.stderr
    assert "hunter2" not in result.stderr + result.stdout


def test_a_flask_command_with_a_bad_setting_prints_one_line_and_fails():
    result = run([sys.executable, "-m", "flask", "--app", "wsgi", "routes"])
    assert_refused_in_plain_words(result)
    assert result.stderr.strip().count("\n") == 0, result.stderr


def test_gunicorn_with_a_bad_setting_stops_instead_of_restarting_workers():
    """Without preloading, the worker loads the app: gunicorn would start it again and again
    if it exited with any other status than its "app failed to load"."""
    gunicorn = Path(sys.executable).parent / "gunicorn"
    command = [str(gunicorn), "--bind", "127.0.0.1:0", "--workers", "1", "--no-control-socket"]
    result = run([*command, "wsgi:app"])
    assert_refused_in_plain_words(result)
    assert "App failed to load" in result.stderr


def test_gunicorn_with_the_production_settings_file_says_the_same():
    gunicorn = Path(sys.executable).parent / "gunicorn"
    command = [str(gunicorn), "-c", "python:membership.gunicorn_conf", "--bind", "127.0.0.1:0"]
    result = run([*command, "--workers", "1", "wsgi:app"])
    assert_refused_in_plain_words(result)
