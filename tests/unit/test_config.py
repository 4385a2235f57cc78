"""Settings: safe for development, refused where they would be dangerous."""

from __future__ import annotations

import pytest

from membership import config, create_app


def test_outside_development_the_default_secret_key_stops_the_app(monkeypatch):
    monkeypatch.setenv("MEMBERSHIP_ENV", "production")
    monkeypatch.delenv("SECRET_KEY", raising=False)
    with pytest.raises(config.ConfigError, match="SECRET_KEY is not set"):
        create_app({"SQLALCHEMY_DATABASE_URI": "sqlite://"})


def test_outside_development_a_short_secret_key_stops_the_app(monkeypatch):
    monkeypatch.setenv("MEMBERSHIP_ENV", "production")
    monkeypatch.setenv("SECRET_KEY", "too-short")
    with pytest.raises(config.ConfigError, match="too short"):
        create_app({"SQLALCHEMY_DATABASE_URI": "sqlite://"})


def test_production_cookies_are_secure_and_hsts_is_sent(monkeypatch):
    monkeypatch.setenv("MEMBERSHIP_ENV", "production")
    monkeypatch.setenv("SECRET_KEY", "x" * 48)
    monkeypatch.setenv("DATABASE_URL", "sqlite://")
    app = create_app()
    assert app.config["SESSION_COOKIE_SECURE"] is True
    assert app.config["SESSION_COOKIE_HTTPONLY"] is True
    assert app.config["SESSION_COOKIE_SAMESITE"] == "Lax"
    response = app.test_client().get("/", base_url="https://members.example.org")
    assert response.headers["Strict-Transport-Security"].startswith("max-age=")


def test_development_defaults_use_sqlite_under_instance(monkeypatch):
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.delenv("MEMBERSHIP_ENV", raising=False)
    settings = config.from_environment("/srv/app/instance")
    assert settings["SQLALCHEMY_DATABASE_URI"] == "sqlite:////srv/app/instance/membership.sqlite3"
    assert settings["SESSION_COOKIE_SECURE"] is False


def test_a_malformed_number_is_named_in_the_error(monkeypatch):
    monkeypatch.setenv("SMTP_PORT", "twenty-five")
    with pytest.raises(config.ConfigError, match="SMTP_PORT"):
        config.from_environment("/tmp/instance")


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
