"""My data: download everything we hold; delete the account, keeping only an anonymous row."""

from __future__ import annotations

import json

from sqlalchemy import func, select

from membership.accounts.models import LoginSession, Member
from membership.emails import OutboundEmail
from tests.conftest import PASSWORD


def test_a_reader_downloads_their_data_as_json(client, make_member, login):
    member = make_member("export@example.org", display_name="Olena K.")
    login(member)
    response = client.get("/account/export")
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    assert "attachment" in response.headers["Content-Disposition"]
    data = json.loads(response.get_data(as_text=True))
    assert data["account"]["email"] == "export@example.org"
    assert data["account"]["display_name"] == "Olena K."
    assert len(data["login_sessions"]) == 1
    assert "password_hash" not in json.dumps(data)


def test_deleting_needs_the_password_and_the_tick(client, make_member, login, db_session):
    member = make_member("keep@example.org")
    login(member)
    no_tick = client.submit("/account/delete", {"password": PASSWORD}, token_page="/account/delete")
    assert no_tick.status_code == 400
    wrong = client.submit(
        "/account/delete", {"password": "wrong one", "confirm": "y"}, token_page="/account/delete"
    )
    assert wrong.status_code == 400
    assert "not your current password" in wrong.get_data(as_text=True)
    db_session.refresh(member)
    assert member.deleted_at is None and member.email == "keep@example.org"


def test_deleting_an_account_removes_personal_data_and_logs_out(
    client, make_member, login, db_session
):
    member = make_member("gone@example.org", display_name="Soon Gone")
    login(member)
    response = client.submit(
        "/account/delete", {"password": PASSWORD, "confirm": "y"}, token_page="/account/delete"
    )
    assert response.status_code == 302
    db_session.expire_all()
    row = db_session.get(Member, member.id)
    assert row.deleted_at is not None
    assert "gone" not in row.email and row.display_name == "Deleted member"
    assert row.password_hash is None
    assert db_session.scalar(select(func.count()).select_from(LoginSession)) == 0
    assert (
        db_session.scalar(
            select(func.count()).select_from(OutboundEmail).where(OutboundEmail.member_id == row.id)
        )
        == 0
    )
    assert client.get("/account/").status_code == 302
    again = client.submit("/account/login", {"email": "gone@example.org", "password": PASSWORD})
    assert again.status_code == 400


def test_the_address_of_a_deleted_account_can_sign_up_again(client, make_member, login, db_session):
    member = make_member("return@example.org")
    login(member)
    client.submit(
        "/account/delete", {"password": PASSWORD, "confirm": "y"}, token_page="/account/delete"
    )
    response = client.submit(
        "/account/signup",
        {"email": "return@example.org", "password": PASSWORD, "display_name": "Back"},
        token_page="/account/signup",
    )
    assert response.status_code == 302
    assert db_session.scalar(select(Member).where(Member.email == "return@example.org")) is not None
