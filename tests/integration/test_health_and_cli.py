"""The health check and the command-line tools."""

from __future__ import annotations

from sqlalchemy import select

from membership import create_app
from membership.accounts.models import Member, Role
from membership.cli import DEMO_READERS, DEMO_STAFF
from membership.database import utcnow
from membership.emails import OutboundEmail
from membership.staff import demo as staff_demo
from tests.conftest import PASSWORD


def test_healthz_says_the_database_is_reachable(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok", "database": "ok"}


def test_healthz_answers_503_when_the_database_is_down(tmp_path):
    app = create_app(
        {
            "TESTING": True,
            "SQLALCHEMY_DATABASE_URI": "postgresql+psycopg://nobody@127.0.0.1:1/none",
            "SQLALCHEMY_ENGINE_OPTIONS": {"connect_args": {"connect_timeout": 2}},
        }
    )
    response = app.test_client().get("/healthz")
    assert response.status_code == 503
    assert response.get_json()["database"] == "unreachable"


def test_staff_create_makes_a_confirmed_staff_account_from_stdin(runner, db_session):
    result = runner.invoke(
        args=["staff", "create", "Editor@Example.org", "--password-stdin"], input=PASSWORD + "\n"
    )
    assert result.exit_code == 0, result.output
    member = db_session.scalar(select(Member).where(Member.email == "editor@example.org"))
    assert member.role is Role.STAFF and member.email_confirmed
    assert member.password_hash.startswith("$argon2id$")
    assert PASSWORD not in result.output


def test_staff_create_promotes_an_existing_reader_without_touching_the_password(
    runner, make_member, db_session
):
    member = make_member("promote@example.org")
    before = member.password_hash
    result = runner.invoke(args=["staff", "create", "promote@example.org"])
    assert result.exit_code == 0, result.output
    db_session.refresh(member)
    assert member.role is Role.STAFF and member.password_hash == before


def test_staff_create_refuses_a_weak_password_and_a_bad_email(runner, db_session):
    weak = runner.invoke(
        args=["staff", "create", "weak@example.org", "--password-stdin"], input="short\n"
    )
    assert weak.exit_code != 0 and "8 characters" in weak.output
    bad = runner.invoke(args=["staff", "create", "not-an-email", "--password-stdin"], input="x\n")
    assert bad.exit_code != 0 and "valid email" in bad.output
    assert db_session.scalar(select(Member).where(Member.email == "weak@example.org")) is None


def test_seed_demo_is_idempotent_and_prints_the_logins(runner, db_session):
    first = runner.invoke(args=["seed-demo"])
    second = runner.invoke(args=["seed-demo"])
    assert first.exit_code == second.exit_code == 0, first.output
    assert DEMO_STAFF[0] in first.output and DEMO_STAFF[2] in first.output
    emails = set(db_session.scalars(select(Member.email)))
    logins = {DEMO_STAFF[0], *(email for email, _, _ in DEMO_READERS)}
    history = {f"patron{n:03d}@{staff_demo.DOMAIN}" for n in range(staff_demo.PATRONS)}
    assert emails == logins | history  # the second run added nobody
    assert "past and present patrons" in first.output
    assert "past and present patrons" not in second.output
    staff = db_session.scalar(select(Member).where(Member.email == DEMO_STAFF[0]))
    assert staff.is_staff


def test_emails_deliver_retries_queued_mail_once_it_is_due(
    runner, client, mailbox, app, monkeypatch, db_session
):
    monkeypatch.setitem(app.config, "SMTP_PORT", 1)  # the mail server is down during signup
    client.submit(
        "/account/signup",
        {"email": "queued@example.org", "password": PASSWORD, "display_name": "Q"},
        token_page="/account/signup",
    )
    monkeypatch.undo()
    assert mailbox.to("queued@example.org") == []
    assert "Sent 0" in runner.invoke(args=["emails", "deliver"]).output, "backing off: not due"

    message = db_session.scalar(select(OutboundEmail))
    message.next_attempt_at = utcnow()
    db_session.commit()
    assert "Sent 1, failed 0" in runner.invoke(args=["emails", "deliver"]).output
    assert "/account/confirm/" in mailbox.text(mailbox.last_to("queued@example.org"))
