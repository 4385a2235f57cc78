"""Email: composed from templates, text and HTML, saved locally in development."""

from __future__ import annotations

from datetime import UTC

from sqlalchemy import select

from membership.accounts.models import Member
from membership.emails import OutboundEmail
from tests.conftest import PASSWORD


def test_emails_have_a_text_and_an_html_part_with_the_same_link(client, mailbox):
    client.submit(
        "/account/signup",
        {"email": "parts@example.org", "password": PASSWORD, "display_name": "<b>Bold</b>"},
        token_page="/account/signup",
    )
    message = mailbox.last_to("parts@example.org")
    link = mailbox.link_in_last("parts@example.org")
    html = message.get_body(preferencelist=("html",)).get_content()
    assert link in html
    assert "&lt;b&gt;Bold&lt;/b&gt;" in html, "names are escaped in HTML mail"
    assert message["From"] == "Test Newsroom <members@example.org>"


def test_without_smtp_mail_is_saved_to_the_outbox_folder(
    app, client, tmp_path, monkeypatch, mailbox
):
    monkeypatch.setitem(app.config, "SMTP_HOST", "")
    monkeypatch.setitem(app.config, "MAIL_OUTBOX_DIR", str(tmp_path))
    client.submit(
        "/account/signup",
        {"email": "outbox@example.org", "password": PASSWORD, "display_name": "Dev"},
        token_page="/account/signup",
    )
    saved = list(tmp_path.glob("*.eml"))
    assert len(saved) == 1
    assert "/account/confirm/" in saved[0].read_text()
    assert mailbox.to("outbox@example.org") == []


def test_datetimes_come_back_timezone_aware_in_utc(client, db_session):
    client.submit(
        "/account/signup",
        {"email": "tz@example.org", "password": PASSWORD, "display_name": "Tz"},
        token_page="/account/signup",
    )
    db_session.expire_all()
    member = db_session.scalar(select(Member).where(Member.email == "tz@example.org"))
    email = db_session.scalar(select(OutboundEmail).where(OutboundEmail.member_id == member.id))
    for value in (member.created_at, member.password_changed_at, email.created_at, email.sent_at):
        assert value.tzinfo is not None and value.utcoffset() == UTC.utcoffset(None)
