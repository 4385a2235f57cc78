"""``flask --app wsgi ...`` commands: staff accounts, demo data, email delivery."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from datetime import timedelta
from typing import Any

import click
from flask import Flask, current_app
from flask.cli import AppGroup, with_appcontext
from redis import exceptions as redis_errors
from sqlalchemy import select

from membership import queue
from membership.accounts import rules, service
from membership.accounts.models import Role
from membership.api import service as api
from membership.billing import billing_enabled, get_gateway, reconciliation, test_mode, webhooks
from membership.billing import service as billing
from membership.billing import sync as billing_sync
from membership.billing.gateway import GatewayError
from membership.billing.models import Tier
from membership.billing.rules import Interval
from membership.database import utcnow
from membership.emails import deliver_pending
from membership.extensions import db

staff_cli = AppGroup("staff", help="Manage staff accounts.")
emails_cli = AppGroup("emails", help="Transactional email.")
billing_cli = AppGroup("billing", help="Stripe: catalog, webhooks, reconciliation.")
voting_cli = AppGroup("voting", help="Topic voting rounds.")
api_keys_cli = AppGroup("api-keys", help="Keys for the member API that the main site calls.")
members_cli = AppGroup("members", help="Import members from another platform, or export them.")

# (slug, name, description, {currency: (monthly, yearly)} in minor units)
DEMO_TIERS = [
    (
        "reader",
        "Reader",
        "The cost of a cup of coffee a month keeps our reporters in the field.",
        {"EUR": (500, 5000), "USD": (500, 5000), "GBP": (400, 4000)},
    ),
    (
        "insider",
        "Insider",
        "Patron-only dispatches from our reporters, and three votes on what we cover next.",
        {"EUR": (1000, 10000), "USD": (1000, 10000), "GBP": (800, 8000)},
    ),
    (
        "co-creator",
        "Co-creator",
        "Everything Insiders get, five votes a round, and a call with the editors each quarter.",
        {"EUR": (2500, 25000), "USD": (2500, 25000), "GBP": (2000, 20000)},
    ),
]

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
@with_appcontext
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
    for position, (slug, tier_name, description, prices) in enumerate(DEMO_TIERS):
        tier = db.session.scalar(select(Tier).where(Tier.slug == slug))
        if tier is None:
            tier = Tier(slug=slug, name=tier_name, description=description, position=position)
            db.session.add(tier)
            db.session.flush()
        for currency, (monthly, yearly) in prices.items():
            if tier.listed_price(Interval.MONTH, currency) is None:
                billing.set_price(db.session, tier, Interval.MONTH, currency, monthly)
            if tier.listed_price(Interval.YEAR, currency) is None:
                billing.set_price(db.session, tier, Interval.YEAR, currency, yearly)
    db.session.commit()
    from membership.perks import demo as perks_demo
    from membership.voting import demo as voting_demo

    perks_demo.seed_demo(db.session)
    db.session.commit()
    patron = None
    if billing_enabled():
        _sync_catalog()
        if test_mode():
            patron = _demo_patron(DEMO_PATRON[0], DEMO_PATRON[1])
    voting_demo.seed_demo(db.session)
    db.session.commit()
    from membership.staff import demo as staff_demo

    if staff_demo.seed_demo(db.session):
        db.session.commit()
        click.echo(f"Added {staff_demo.PATRONS} past and present patrons for the reports.")
    click.echo("Demo accounts (for trying the app on your machine only):")
    click.echo(f"  staff (admin): {DEMO_STAFF[0]} / {DEMO_STAFF[2]}")
    for email, _, password in DEMO_READERS:
        role = " (Insider patron)" if patron is not None and email == patron else ""
        click.echo(f"  reader:        {email} / {password}{role}")


DEMO_PATRON = ("olena@example.org", "insider")


def _demo_patron(email: str, tier_slug: str) -> str | None:
    """Make a demo reader an Insider patron with Stripe's test card (test mode only)."""
    member = service.find_by_email(db.session, email)
    tier = db.session.scalar(select(Tier).where(Tier.slug == tier_slug))
    if member is None or tier is None:
        return None
    if billing.is_patron(db.session, member):
        return email
    price = tier.listed_price(Interval.MONTH, "EUR")
    if price is None:
        return None
    gateway = get_gateway()
    try:
        customer = billing.ensure_customer(db.session, gateway, member)
        gateway.use_card(customer, "pm_card_visa")
        data = gateway.create_subscription(
            customer_id=customer,
            plan_id=price.stripe_plan_id,
            member_id=member.id,
            idempotency_key=f"demo-patron-{member.id}",
        )
    except GatewayError as exc:
        raise click.ClickException(f"Stripe refused or was unreachable: {exc}") from exc
    billing_sync.apply_subscription(db.session, data, reason="demo data")
    if isinstance(data.get("latest_invoice"), dict):
        billing_sync.apply_invoice(db.session, data["latest_invoice"], reason="demo data")
    db.session.commit()
    return email


def _sync_catalog() -> None:
    try:
        changes = billing.sync_catalog(db.session, get_gateway())
    except GatewayError as exc:
        raise click.ClickException(f"Stripe refused or was unreachable: {exc}") from exc
    db.session.commit()
    click.echo(f"Catalog in sync with Stripe ({len(changes)} change(s)).")
    for change in changes:
        click.echo(f"  {change}")


@billing_cli.command("sync-catalog")
def sync_catalog() -> None:
    """Create in Stripe the products and prices that are missing, archive replaced ones."""
    _sync_catalog()


@billing_cli.command("replay-failed")
@click.option(
    "--stale-minutes", default=10, show_default=True, help="Also redo events stuck this long."
)
def replay_failed(stale_minutes: int) -> None:
    """Process again the stored webhook events that failed."""
    results = webhooks.replay_failed(db.session, get_gateway(), timedelta(minutes=stale_minutes))
    counts: dict[str, int] = {}
    for result in results:
        counts[result.value] = counts.get(result.value, 0) + 1
    summary = ", ".join(f"{n} {what}" for what, n in sorted(counts.items())) or "nothing to do"
    click.echo(f"Replayed {len(results)} event(s): {summary}.")


@billing_cli.command("reconcile")
@click.option("--events-days", default=3, show_default=True, help="Also replay recent events.")
def reconcile(events_days: int) -> None:
    """Repair local state from Stripe: every subscription and recent events. Safe to rerun."""
    try:
        report = reconciliation.reconcile(
            db.session,
            get_gateway(),
            events_since=utcnow() - timedelta(days=events_days),
            progress=_progress,
        )
    except GatewayError as exc:
        raise click.ClickException(f"Stripe refused or was unreachable: {exc}") from exc
    for line in report.changes:
        click.echo(f"  {line}")
    click.echo(
        f"Checked {report.subscriptions} subscription(s) and {report.events} event(s); "
        f"{len(report.changes)} change(s)."
    )


@voting_cli.command("close-due")
def close_due_rounds() -> None:
    """Freeze the results of rounds whose closing time has passed (safe to run again)."""
    from membership.voting import service as voting

    closed = voting.close_due_rounds(db.session, utcnow())
    db.session.commit()
    click.echo(f"Closed {len(closed)} round(s).")


def _progress(label: str, items: Iterable[Any]) -> Iterator[Any]:
    with click.progressbar(items, label=label, file=sys.stderr, show_pos=True) as bar:
        yield from bar


@api_keys_cli.command("create")
@click.argument("name")
def create_api_key(name: str) -> None:
    """Make a key called NAME for the member API and print it (the only time it is shown)."""
    try:
        made = api.create_key(db.session, name)
    except api.ApiKeyError as exc:
        raise click.BadParameter(str(exc), param_hint="NAME") from exc
    db.session.commit()
    click.echo(f"Created API key {made.api_key.name!r}. Copy it now: it is not shown again.")
    click.echo(made.secret)


@api_keys_cli.command("list")
def list_api_keys() -> None:
    """List the keys: name, prefix, created, last used, revoked."""
    keys = api.list_keys(db.session)
    if not keys:
        click.echo("No API keys yet: make one with `flask --app wsgi api-keys create NAME`.")
        return

    def when(moment: Any) -> str:
        return moment.strftime("%Y-%m-%d %H:%M UTC") if moment is not None else "-"

    rows = [("NAME", "PREFIX", "CREATED", "LAST USED", "REVOKED")] + [
        (k.name, k.prefix + "...", when(k.created_at), when(k.last_used_at), when(k.revoked_at))
        for k in keys
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        click.echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))


@api_keys_cli.command("revoke")
@click.argument("name")
def revoke_api_key(name: str) -> None:
    """Stop the key called NAME from working, at once."""
    try:
        revoked = api.revoke(db.session, name)
    except api.ApiKeyError as exc:
        raise click.BadParameter(str(exc), param_hint="NAME") from exc
    db.session.commit()
    click.echo(f"Revoked API key {revoked.name!r} ({revoked.prefix}...).")


@members_cli.command("import")
@click.argument("members_csv", type=click.Path(exists=True, dir_okay=False))
@click.option("--payments", "payments_csv", type=click.Path(exists=True, dir_okay=False))
@click.option("--dry-run", is_flag=True, help="Check and count, but write nothing.")
def import_members(members_csv: str, payments_csv: str | None, dry_run: bool) -> None:
    """Import MEMBERS_CSV (and --payments) all-or-nothing; running it again changes nothing."""
    from flask import current_app

    from membership.staff import importer

    with open(members_csv, "rb") as handle:
        members_data = handle.read()
    payments_data = None
    if payments_csv is not None:
        with open(payments_csv, "rb") as handle:
            payments_data = handle.read()
    result = importer.import_members(
        db.session,
        members_data,
        payments_data,
        now=utcnow(),
        default_currency=current_app.config["CURRENCIES"][0],
        progress=_progress,
    )
    if not result.ok:
        db.session.rollback()
        for problem in result.problems:
            click.echo(f"  {problem}", err=True)
        raise click.ClickException(
            f"Nothing imported: {len(result.problems)} problem(s) to fix first."
        )
    if dry_run:
        db.session.rollback()
    else:
        db.session.commit()
    for line in result.summary_lines():
        click.echo(f"  {line}")
    if dry_run:
        click.echo("Dry run: nothing was written.")
    elif not result.changed:
        click.echo("Everything was already imported: nothing changed.")
    else:
        click.echo("Imported.")


@members_cli.command("export")
@click.argument("members_csv", type=click.Path(dir_okay=False, writable=True))
@click.option("--payments", "payments_csv", type=click.Path(dir_okay=False, writable=True))
def export_members(members_csv: str, payments_csv: str | None) -> None:
    """Write members (and --payments) in the format `members import` reads."""
    from membership.staff import importer

    with open(members_csv, "w", encoding="utf-8", newline="") as handle:
        handle.write(importer.export_members(db.session))
    if payments_csv is not None:
        with open(payments_csv, "w", encoding="utf-8", newline="") as handle:
            handle.write(importer.export_payments(db.session))
    click.echo("Exported.")


@click.command("worker")
@click.option("--burst", is_flag=True, help="Stop once the queue is empty.")
@with_appcontext
def run_worker(burst: bool) -> None:
    """Process queued webhooks and emails (needs REDIS_URL); retries when they are due."""
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    if not queue.enabled(app.config):
        raise click.ClickException(
            "REDIS_URL is not set: without a queue, webhooks and emails are handled in the "
            "request and there is nothing for a worker to do."
        )
    try:
        # The scheduler puts retries back on the queue when they are due (one worker runs it).
        queue.make_worker(app).work(burst=burst, with_scheduler=True)
    except redis_errors.ConnectionError as exc:
        message = f"Redis is unreachable at REDIS_URL ({type(exc).__name__})."
        raise click.ClickException(message) from exc


def init_app(app: Flask) -> None:
    app.cli.add_command(staff_cli)
    app.cli.add_command(emails_cli)
    app.cli.add_command(billing_cli)
    app.cli.add_command(voting_cli)
    app.cli.add_command(api_keys_cli)
    app.cli.add_command(members_cli)
    app.cli.add_command(seed_demo)
    app.cli.add_command(run_worker)
