"""Headers, cookies, CSRF, rate limits and error pages."""

from __future__ import annotations

import os

import flask_migrate
import pytest
from sqlalchemy import func, select

from membership import create_app
from membership.accounts.models import Member
from membership.extensions import db, limiter
from tests.conftest import PASSWORD, CsrfClient, settings_for_tests, skip_or_fail


def test_every_page_sends_the_security_headers(client):
    headers = client.get("/").headers
    csp = headers["Content-Security-Policy"]
    assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert "https:" not in csp, "no other host is allowed outside Stripe's (billing)"
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Referrer-Policy"] == "strict-origin-when-cross-origin"
    assert headers["X-Frame-Options"] == "DENY"


def test_the_session_cookie_is_httponly_and_samesite(client, make_member):
    member = make_member()
    response = client.submit("/account/login", {"email": member.email, "password": PASSWORD})
    assert response.status_code == 302
    set_cookie = response.headers["Set-Cookie"]
    assert set_cookie.startswith("membership_session=")
    assert "HttpOnly" in set_cookie and "SameSite=Lax" in set_cookie


def test_account_pages_are_never_cached(client):
    for url in ("/account/login", "/account/signup", "/account/reset"):
        assert client.get(url).headers["Cache-Control"] == "no-store", url


def test_a_form_without_its_csrf_token_is_refused_and_changes_nothing(client, db_session):
    response = client.post(
        "/account/signup",
        data={"email": "csrf@example.org", "password": PASSWORD, "display_name": "X"},
    )
    assert response.status_code == 400
    assert "Reload the page and try again" in response.get_data(as_text=True)
    count = db_session.scalar(
        select(func.count()).select_from(Member).where(Member.email == "csrf@example.org")
    )
    assert count == 0


def test_a_csrf_token_from_another_session_is_refused(client, another_client, make_member):
    member = make_member()
    foreign_token = another_client.csrf_token()
    client.get("/account/login")
    response = client.post(
        "/account/login",
        data={"email": member.email, "password": PASSWORD, "csrf_token": foreign_token},
    )
    assert response.status_code == 400


def test_too_many_login_attempts_get_a_readable_429_page(client, make_member):
    member = make_member()
    token = client.csrf_token()
    statuses = [
        client.post(
            "/account/login",
            data={"email": member.email, "password": "wrong password!", "csrf_token": token},
        ).status_code
        for _ in range(11)
    ]
    assert statuses[:10] == [400] * 10
    assert statuses[10] == 429
    page = client.post(
        "/account/login", data={"email": member.email, "password": PASSWORD, "csrf_token": token}
    )
    assert page.status_code == 429
    assert "Too many attempts" in page.get_data(as_text=True)
    assert client.get("/account/login").status_code == 200, "reading the page is not limited"


@pytest.mark.parametrize(
    ("url", "data", "limit"),
    [
        ("/account/signup", {"email": "s@example.org", "password": "x", "display_name": "S"}, 5),
        ("/account/reset", {"email": "r@example.org"}, 3),
    ],
)
def test_signup_and_reset_are_rate_limited(client, url, data, limit):
    token = client.csrf_token(url)
    statuses = [
        client.post(url, data={**data, "csrf_token": token}).status_code for _ in range(limit + 1)
    ]
    assert 429 not in statuses[:limit]
    assert statuses[limit] == 429


def test_a_flood_from_one_address_gets_429s_and_others_are_served(app, client):
    limit = int(app.config["RATELIMIT_DEFAULT"].split()[0])
    flood = {"REMOTE_ADDR": "198.51.100.7"}
    statuses = [client.get("/", environ_overrides=flood).status_code for _ in range(limit + 1)]
    assert statuses[:limit] == [200] * limit
    assert statuses[limit] == 429
    assert "Too many" in client.get("/", environ_overrides=flood).get_data(as_text=True)
    # Another reader, and the load balancer's health check from the flooding address, still get in.
    assert client.get("/", environ_overrides={"REMOTE_ADDR": "203.0.113.9"}).status_code == 200
    assert client.get("/healthz", environ_overrides=flood).status_code == 200


def test_unknown_pages_get_the_404_page_in_the_layout(client):
    response = client.get("/no/such/page")
    assert response.status_code == 404
    page = response.get_data(as_text=True)
    assert "Page not found" in page and "Test Newsroom" in page


def test_a_crash_shows_the_500_page_without_a_stack_trace(app, client):
    original = app.view_functions["voting.index"]
    app.view_functions["voting.index"] = lambda: 1 / 0
    try:
        response = client.get("/vote")
    finally:
        app.view_functions["voting.index"] = original
    assert response.status_code == 500
    page = response.get_data(as_text=True)
    assert "Something went wrong on our side" in page
    assert "Traceback" not in page and "ZeroDivisionError" not in page


def test_a_huge_body_gets_413_with_a_message(client):
    response = client.post("/account/login", data={"email": "x" * (2 * 1024 * 1024)})
    assert response.status_code == 413
    assert "larger than we accept" in response.get_data(as_text=True)


def test_json_clients_get_json_errors(client):
    response = client.get("/nowhere", headers={"Accept": "application/json"})
    assert response.status_code == 404
    assert response.get_json()["error"] == "Page not found"


@pytest.fixture
def redis_url(app):
    import redis

    url = os.environ.get("REDIS_TEST_URL", "redis://127.0.0.1:6379/15")
    try:
        redis.Redis.from_url(url, socket_connect_timeout=1).ping()
    except redis.exceptions.ConnectionError:
        skip_or_fail(f"Redis is not reachable at {url}")
    yield url
    redis.Redis.from_url(url).flushdb()
    limiter.init_app(app)  # back to the session app's in-memory storage


def test_with_redis_url_the_limits_live_in_redis_for_every_process(
    redis_url, database_url, smtp_server, db_session, tmp_path
):
    import redis

    # Its own database on SQLite: the test's open transaction holds SQLite's write lock.
    own = database_url if database_url.startswith("postgresql") else f"sqlite:///{tmp_path}/r.db"
    settings = settings_for_tests(own, smtp_server[0].port)
    settings.pop("RATELIMIT_STORAGE_URI")
    app = create_app({**settings, "REDIS_URL": redis_url})
    with app.app_context():
        flask_migrate.upgrade()
    store = redis.Redis.from_url(redis_url)
    store.flushdb()
    app.test_client_class = CsrfClient
    client = app.test_client()
    statuses = [
        client.submit("/account/reset", {"email": "r@example.org"}, token_page="/account/reset")
        for _ in range(4)
    ]
    assert [response.status_code for response in statuses] == [302, 302, 302, 429]
    assert store.dbsize() > 0, "the counters are in Redis, where every process sees them"
    with app.app_context():
        db.engine.dispose()
    assert any(b"reset" in key or b"LIMITER" in key for key in store.keys("*"))
