"""Forgotten password: the same answer for every address, single-use links that expire."""

from __future__ import annotations

from sqlalchemy import func, select

from membership.accounts.models import LoginSession
from tests.conftest import PASSWORD

NEW_PASSWORD = "a brand new passphrase 2026"


def ask_for_reset(client, email):
    return client.submit("/account/reset", {"email": email}, token_page="/account/reset")


def test_reset_answers_the_same_whether_or_not_the_email_has_an_account(
    client, make_member, mailbox
):
    make_member("known@example.org")
    known = ask_for_reset(client, "known@example.org")
    unknown = ask_for_reset(client, "nobody@example.org")
    assert known.status_code == unknown.status_code == 302
    assert known.headers["Location"] == unknown.headers["Location"]
    assert len(mailbox.to("known@example.org")) == 1
    assert mailbox.to("nobody@example.org") == []


def test_a_reset_link_sets_a_new_password_and_ends_every_session(
    client, another_client, make_member, login, mailbox, db_session
):
    member = make_member("forgetful@example.org")
    login(member, c=another_client)  # logged in on another device
    ask_for_reset(client, "forgetful@example.org")
    link = mailbox.link_in_last("forgetful@example.org")

    form = client.get(link)
    assert form.status_code == 200 and "Choose a new password" in form.get_data(as_text=True)
    done = client.submit(link, {"password": NEW_PASSWORD}, token_page=link)
    assert done.status_code == 302 and done.headers["Location"].endswith("/account/login")

    assert db_session.scalar(select(func.count()).select_from(LoginSession)) == 0
    assert another_client.get("/account/").status_code == 302, "other devices are logged out"
    old = client.submit("/account/login", {"email": member.email, "password": PASSWORD})
    assert old.status_code == 400
    login(member, password=NEW_PASSWORD)


def test_a_reset_link_works_only_once(client, make_member, mailbox):
    make_member("once@example.org")
    ask_for_reset(client, "once@example.org")
    link = mailbox.link_in_last("once@example.org")
    assert client.submit(link, {"password": NEW_PASSWORD}, token_page=link).status_code == 302

    again = client.get(link)
    assert again.status_code == 400
    page = again.get_data(as_text=True)
    assert "This link does not work" in page
    assert "Send me a new reset link" in page


def test_an_expired_reset_link_offers_a_new_one(app, client, make_member, mailbox, monkeypatch):
    make_member("late@example.org")
    ask_for_reset(client, "late@example.org")
    link = mailbox.link_in_last("late@example.org")
    monkeypatch.setitem(app.config, "RESET_PASSWORD_MAX_AGE", -1)
    response = client.get(link)
    assert response.status_code == 400
    assert "expired" in response.get_data(as_text=True)


def test_a_tampered_reset_link_is_refused(client, make_member, mailbox):
    make_member("tamper@example.org")
    ask_for_reset(client, "tamper@example.org")
    link = mailbox.link_in_last("tamper@example.org")
    response = client.get(link[:-3] + "abc")
    assert response.status_code == 400
    assert "not valid" in response.get_data(as_text=True)


def test_a_weak_new_password_is_refused_next_to_the_field(client, make_member, mailbox):
    make_member("weak@example.org")
    ask_for_reset(client, "weak@example.org")
    link = mailbox.link_in_last("weak@example.org")
    response = client.submit(link, {"password": "password1"}, token_page=link)
    assert response.status_code == 400
    assert "most common" in response.get_data(as_text=True)
