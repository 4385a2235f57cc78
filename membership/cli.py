"""``flask --app wsgi ...`` commands: staff accounts, demo data, email delivery."""

from __future__ import annotations

import sys

import click
from flask import Flask
from flask.cli import AppGroup

from membership.accounts import rules, service
from membership.accounts.models import Role
from membership.database import utcnow
from membership.emails import deliver_pending
from membership.extensions import db

staff_cli = AppGroup("staff", help="Manage staff accounts.")
emails_cli = AppGroup("emails", help="Transactional email.")

DEMO_STAFF = ("staff@example.org", "Sam Editor", "demo-staff-pass-2026", Role.ADMIN)
DEMO_READERS = [
    ("reader@example.org", "Rita Reader", "demo-reader-pass-2026"),
    ("olena@example.org", "Olena K.", "demo-reader-pass-2026"),
    ("james@example.org", "James W.", "demo-reader-pass-2026"),
]


@staff_cli.command("create")
@click.argument("email")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
@click.option("--admin", is_flag=True, help="Make the account an admin (may manage staff).")
def create_staff(email: str, password_stdin: bool, admin: bool) -> None:
    """Create a staff account for EMAIL, or give an existing account the staff role."""
    try:
        address = rules.normalise_email(email)
    except rules.InvalidEmail as exc:
        raise click.BadParameter(str(exc), param_hint="EMAIL") from exc
    existing = service.find_by_email(db.session, address)
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    elif existing is None:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    else:
        password = None
    try:
        result = service.create_or_promote_staff(
            db.session, email=address, password=password, role=Role.ADMIN if admin else Role.STAFF
        )
    except service.AccountError as exc:
        raise click.ClickException(exc.message) from exc
    db.session.commit()
    verb = "Created" if result.created else "Updated"
    click.echo(f"{verb} {result.member.role.value} account {result.member.id}.")


@emails_cli.command("deliver")
def deliver_emails() -> None:
    """Send queued emails that are due (run from cron to retry failed deliveries)."""
    total_sent = total_failed = 0
    while True:
        sent, failed = deliver_pending(db.session)
        total_sent += sent
        total_failed += failed
        if sent + failed == 0 or sent == 0:
            break
    click.echo(f"Sent {total_sent}, failed {total_failed}.")


@click.command("seed-demo")
def seed_demo() -> None:
    """Create demo accounts with known passwords (safe to run again)."""
    email, name, password, role = DEMO_STAFF
    service.create_or_promote_staff(db.session, email=email, password=password, role=role)
    staff = service.find_by_email(db.session, email)
    assert staff is not None
    staff.display_name = name
    for email, name, password in DEMO_READERS:
        member = service.find_by_email(db.session, email)
        if member is None:
            member = service.Member(email=email, display_name=name, email_confirmed_at=utcnow())
            member.password_hash = service.hash_password(password)
            db.session.add(member)
    db.session.commit()
    click.echo("Demo accounts (for trying the app on your machine only):")
    click.echo(f"  staff (admin): {DEMO_STAFF[0]} / {DEMO_STAFF[2]}")
    for email, _, password in DEMO_READERS:
        click.echo(f"  reader:        {email} / {password}")


def init_app(app: Flask) -> None:
    app.cli.add_command(staff_cli)
    app.cli.add_command(emails_cli)
    app.cli.add_command(seed_demo)
