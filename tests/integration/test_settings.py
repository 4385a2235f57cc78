"""Settings: name, email (confirmed at the new address) and password (current one required)."""

from __future__ import annotations

from sqlalchemy import func, select

from membership.accounts.models import LoginSession
from tests.conftest import PASSWORD

NEW_PASSWORD = "another long passphrase 77"


def test_a_reader_changes_their_display_name(client, make_member, login, db_session):
    member = make_member()
    login(member)
    response = client.submit(
        "/account/name", {"display_name": "  Olena   K. "}, token_page="/account/"
    )
    assert response.status_code == 302
    db_session.refresh(member)
    assert member.display_name == "Olena K."


def test_an_empty_name_is_refused_next_to_the_field(client, make_member, login, db_session):
    member = make_member()
    login(member)
    response = client.submit("/account/name", {"display_name": "   "}, token_page="/account/")
    assert response.status_code == 400
    assert "Enter the name you want us to use." in response.get_data(as_text=True)
    db_session.refresh(member)
    assert member.display_name == "Test Reader"


def test_changing_email_needs_the_password_and_a_click_at_the_new_address(
    client, make_member, login, mailbox, db_session
):
    member = make_member("old@example.org")
    login(member)
    wrong = client.submit(
        "/account/email",
        {"email": "new@example.org", "password": "not my password"},
        token_page="/account/",
    )
    assert wrong.status_code == 400
    assert "not your current password" in wrong.get_data(as_text=True)
    assert mailbox.to("new@example.org") == []

    asked = client.submit(
        "/account/email", {"email": "New@Example.org", "password": PASSWORD}, token_page="/account/"
    )
    assert asked.status_code == 302
    db_session.refresh(member)
    assert member.email == "old@example.org", "nothing changes until the new address confirms"

    link = mailbox.link_in_last("new@example.org")
    assert client.get(link).status_code == 200
    db_session.refresh(member)
    assert member.email == "old@example.org", "opening the link (GET) changes nothing"
    assert client.submit(link, token_page=link).status_code == 302
    db_session.refresh(member)
    assert member.email == "new@example.org"
    assert "new@example.org" in mailbox.text(mailbox.last_to("old@example.org"))

    reused = client.get(link)
    assert reused.status_code == 400
    assert "This link does not work" in reused.get_data(as_text=True)


def test_moving_to_a_taken_address_reveals_nothing_and_changes_nothing(
    client, make_member, login, mailbox, db_session
):
    member = make_member("mover@example.org")
    make_member("taken@example.org")
    login(member)
    response = client.submit(
        "/account/email",
        {"email": "taken@example.org", "password": PASSWORD},
        token_page="/account/",
    )
    assert response.status_code == 302, "the same answer as for a free address"
    assert "/account/email/" not in mailbox.text(mailbox.last_to("taken@example.org"))
    db_session.refresh(member)
    assert member.email == "mover@example.org"


def test_changing_password_needs_the_current_one_and_logs_out_other_devices(
    client, another_client, make_member, login, db_session, mailbox
):
    member = make_member("pw@example.org")
    login(member)
    login(member, c=another_client)
    wrong = client.submit(
        "/account/password",
        {"current_password": "wrong password", "new_password": NEW_PASSWORD},
        token_page="/account/",
    )
    assert wrong.status_code == 400
    changed = client.submit(
        "/account/password",
        {"current_password": PASSWORD, "new_password": NEW_PASSWORD},
        token_page="/account/",
    )
    assert changed.status_code == 302
    assert client.get("/account/").status_code == 200, "this device stays logged in"
    assert another_client.get("/account/").status_code == 302, "the other device is logged out"
    assert db_session.scalar(select(func.count()).select_from(LoginSession)) == 1
    assert "password" in mailbox.last_to("pw@example.org")["Subject"]


def test_a_new_password_equal_to_the_email_is_refused(client, make_member, login):
    member = make_member("same.as.email@example.org")
    login(member)
    response = client.submit(
        "/account/password",
        {"current_password": PASSWORD, "new_password": "Same.As.Email@example.org"},
        token_page="/account/",
    )
    assert response.status_code == 400
    assert "must not be your email address" in response.get_data(as_text=True)
