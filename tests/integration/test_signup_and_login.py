"""Signup, email confirmation, login and logout through the real pages."""

from __future__ import annotations

import re

from sqlalchemy import func, select

from membership.accounts.models import LoginSession, Member
from membership.emails import EmailStatus, OutboundEmail
from tests.conftest import PASSWORD


def signup(client, email="new.reader@example.org", password=PASSWORD, name="New Reader"):
    return client.submit(
        "/account/signup",
        {"email": email, "password": password, "display_name": name},
        token_page="/account/signup",
    )


def test_a_reader_signs_up_confirms_and_logs_in(client, db_session, mailbox):
    response = signup(client, email="  New.Reader@Example.ORG ")
    assert response.status_code == 302
    assert response.headers["Location"].endswith("/account/check-email")

    member = db_session.scalar(select(Member).where(Member.email == "new.reader@example.org"))
    assert member is not None and not member.email_confirmed
    assert member.password_hash.startswith("$argon2id$")

    link = mailbox.link_in_last("new.reader@example.org")
    page = client.get(link)
    assert page.status_code == 200
    assert "Confirm my email address" in page.get_data(as_text=True)
    db_session.refresh(member)
    assert not member.email_confirmed, "following the link (a GET) must not change anything"

    confirmed = client.submit(link, token_page=link)
    assert confirmed.status_code == 302
    db_session.refresh(member)
    assert member.email_confirmed

    logged_in = client.submit(
        "/account/login", {"email": "NEW.reader@example.org", "password": PASSWORD}
    )
    assert logged_in.status_code == 302
    overview = client.get("/account/")
    assert "new.reader@example.org" in overview.get_data(as_text=True)
    assert overview.headers["Cache-Control"] == "no-store"


def test_signing_up_with_a_taken_email_looks_the_same_and_warns_the_owner(
    client, make_member, db_session, mailbox
):
    owner = make_member("owner@example.org")
    first = signup(client, email="fresh@example.org")
    second = signup(client, email="OWNER@example.org")
    assert first.status_code == second.status_code == 302
    assert first.headers["Location"] == second.headers["Location"]
    assert db_session.scalar(select(func.count()).select_from(Member)) == 2
    warning = mailbox.last_to("owner@example.org")
    assert "already have one" in mailbox.text(warning)
    assert owner.display_name == "Test Reader"


def test_an_unconfirmed_reader_can_log_in_sees_a_reminder_and_gets_a_new_link(
    client, make_member, login, mailbox
):
    member = make_member("unconfirmed@example.org", confirmed=False)
    login(member)
    page = client.get("/account/").get_data(as_text=True)
    assert "Please confirm your email address" in page
    response = client.submit("/account/confirm/resend", token_page="/account/")
    assert response.status_code == 302
    assert "/account/confirm/" in mailbox.text(mailbox.last_to("unconfirmed@example.org"))


def test_wrong_password_and_unknown_email_get_the_same_answer(client, make_member):
    make_member("known@example.org")
    wrong = client.submit("/account/login", {"email": "known@example.org", "password": "nope" * 3})
    unknown = client.submit(
        "/account/login", {"email": "unknown@example.org", "password": "nope" * 3}
    )
    assert wrong.status_code == unknown.status_code == 400
    assert "do not match an account" in wrong.get_data(as_text=True)

    def page(response):
        html = response.get_data(as_text=True)
        html = re.sub(r"(un)?known@example\.org", "EMAIL", html)
        return re.sub(r'value="[^"]{40,}"', "TOKEN", html)  # the CSRF token differs by design

    assert page(wrong) == page(unknown)


def test_logout_ends_the_session_and_replaying_the_old_cookie_does_not_log_in(
    client, make_member, login, db_session
):
    member = make_member()
    login(member)
    cookie = client.get_cookie("membership_session")
    assert cookie is not None
    old_value = cookie.value
    assert client.get("/account/").status_code == 200

    out = client.submit("/account/logout", token_page="/account/")
    assert out.status_code == 302
    assert db_session.scalar(select(func.count()).select_from(LoginSession)) == 0
    assert client.get("/account/").status_code == 302

    client.set_cookie("membership_session", old_value)
    replay = client.get("/account/")
    assert replay.status_code == 302
    assert "/account/login" in replay.headers["Location"]


def test_login_issues_a_new_session_cookie(client, make_member, login):
    member = make_member()
    client.get("/account/login")
    before = client.get_cookie("membership_session").value
    login(member)
    after = client.get_cookie("membership_session").value
    assert before != after


def test_logout_by_get_changes_nothing(client, make_member, login):
    login(make_member())
    assert client.get("/account/logout").status_code == 405
    assert client.get("/account/").status_code == 200


def test_email_is_delivered_only_after_the_commit_and_retried_when_smtp_fails(
    app, client, db_session, mailbox, deliver
):
    app.config["SMTP_PORT"], real_port = 1, app.config["SMTP_PORT"]  # nothing listens on port 1
    try:
        response = signup(client, email="retry@example.org")
    finally:
        app.config["SMTP_PORT"] = real_port
    assert response.status_code == 302, "a failing mail server must not fail the signup"
    member = db_session.scalar(select(Member).where(Member.email == "retry@example.org"))
    assert member is not None
    message = db_session.scalar(select(OutboundEmail).where(OutboundEmail.member_id == member.id))
    assert message.status is EmailStatus.PENDING and message.attempts == 1
    assert message.last_error
    assert mailbox.to("retry@example.org") == []

    message.next_attempt_at = message.created_at  # due again now
    db_session.commit()
    assert deliver() == (1, 0)
    db_session.refresh(message)
    assert message.status is EmailStatus.SENT
    assert "/account/confirm/" in mailbox.text(mailbox.last_to("retry@example.org"))


def test_signup_keeps_where_the_reader_was_going(client):
    response = client.submit(
        "/account/signup",
        {"email": "next@example.org", "password": PASSWORD, "display_name": "N", "next": "/staff/"},
        token_page="/account/signup",
    )
    assert response.status_code == 302
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "/account/login?next=/staff/" in page


def test_signup_drops_a_next_that_leaves_the_site(client):
    response = client.submit(
        "/account/signup",
        {
            "email": "n2@example.org",
            "password": PASSWORD,
            "display_name": "N",
            "next": "//evil.example",
        },
        token_page="/account/signup",
    )
    assert "evil" not in response.headers["Location"]


def test_the_confirmation_link_takes_the_reader_back_to_the_tier_they_chose(client, mailbox):
    choice = "/support/join?tier=2&interval=month&currency=EUR&amount="
    client.submit(
        "/account/signup",
        {"email": "chooser@example.org", "password": PASSWORD, "display_name": "C", "next": choice},
        token_page="/account/signup",
    )
    link = mailbox.link_in_last("chooser@example.org")
    assert "next=" in link
    confirmed = client.submit(link, token_page=link)
    assert confirmed.status_code == 302
    login_page = client.get(confirmed.headers["Location"]).get_data(as_text=True)
    assert 'name="next" type="hidden" value="/support/join?tier=2&amp;interval=month' in login_page
