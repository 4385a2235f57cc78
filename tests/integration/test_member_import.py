"""A newsroom moving from another platform imports its members, patrons and payments."""

from __future__ import annotations

import dataclasses
import io
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from membership.accounts.models import Member, Role
from membership.billing import sync
from membership.billing.models import MembershipEvent, Payment, Refund, Subscription
from membership.billing.rules import MembershipState
from membership.database import utcnow
from membership.extensions import db
from membership.perks.service import perks_for
from membership.staff import importer
from membership.staff.models import AuditEntry, Comp

MODELS = (Member, Subscription, Payment, Refund, MembershipEvent, Comp)


def _files(tmp_path: Path) -> tuple[Path, Path]:
    now = utcnow()
    iso = importer.iso
    soon, later = iso(now + timedelta(days=20)), iso(now + timedelta(days=200))
    members = [
        ",".join(importer.MEMBER_HEADERS),
        f'ada@example.org,"Lovelace, Ada",insider,month,EUR,1000,active,'
        f"2025-01-15T10:00:00+00:00,,{soon},cus_ada,sub_ada",
        f"Bob@Example.org,Bob,reader,year,USD,5000,past_due,"
        f"2024-03-01T00:00:00+00:00,,{iso(now - timedelta(days=2))},,",
        f"cleo@example.org,Cleo,co-creator,month,GBP,2000,canceled,"
        f"2025-06-01T00:00:00+00:00,,{soon},,sub_cleo",
        "dan@example.org,Dan,reader,month,EUR,700,ended,"
        "2023-01-01T00:00:00+00:00,2024-01-01T00:00:00+00:00,2024-01-01T00:00:00+00:00,,",
        f"eve@example.org,Eve,insider,,,,comped,2025-01-01T00:00:00+00:00,{later},,,",
    ]
    payments = [
        ",".join(importer.PAYMENT_HEADERS),
        "ada@example.org,2025-01-15T10:00:00+00:00,1000,EUR,subscription,in_ada1",
        "ada@example.org,2025-02-15T10:00:00+00:00,1000,EUR,subscription,",
        "ada@example.org,2025-02-20T10:00:00+00:00,300,EUR,refund,",
        "dan@example.org,2023-05-01T00:00:00+00:00,2500,EUR,donation,",
    ]
    members_csv, payments_csv = tmp_path / "members.csv", tmp_path / "payments.csv"
    members_csv.write_text("\n".join(members) + "\n", encoding="utf-8")
    payments_csv.write_text("\n".join(payments) + "\n", encoding="utf-8")
    return members_csv, payments_csv


def _counts(app: Any) -> dict[str, int]:
    with app.app_context():
        return {m.__name__: db.session.scalar(select(func.count()).select_from(m)) for m in MODELS}


def _import(runner: Any, members: Path, payments: Path | None = None, *extra: str) -> Any:
    args = ["members", "import", str(members)]
    if payments is not None:
        args += ["--payments", str(payments)]
    return runner.invoke(args=[*args, *extra])


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    return _files(tmp_path)


def test_import_creates_members_subscriptions_and_payments(app, runner, catalog, files):
    result = _import(runner, *files)
    assert result.exit_code == 0, result.output
    assert "members: 5 created, 0 updated, 0 unchanged" in result.output
    assert "subscriptions: 4 created" in result.output
    assert "payments: 3 created" in result.output
    assert "refunds: 1 created" in result.output
    with app.app_context():
        ada = db.session.scalar(select(Member).where(Member.email == "ada@example.org"))
        assert ada is not None
        assert ada.display_name == "Lovelace, Ada"
        assert ada.password_hash is None
        assert ada.stripe_customer_id == "cus_ada"
        assert db.session.scalar(select(Member).where(Member.email == "bob@example.org"))
        states = {s.member.email: s.state for s in db.session.scalars(select(Subscription)).all()}
        assert states == {
            "ada@example.org": MembershipState.ACTIVE,
            "bob@example.org": MembershipState.PAST_DUE,
            "cleo@example.org": MembershipState.CANCELING,
            "dan@example.org": MembershipState.ENDED,
        }
        comp = db.session.scalar(select(Comp))
        assert comp is not None and comp.member.email == "eve@example.org"
        events = db.session.scalars(
            select(MembershipEvent).where(MembershipEvent.reason == "imported")
        ).all()
        assert {e.to_state for e in events} >= {MembershipState.ACTIVE, MembershipState.ENDED}
        refunded = db.session.scalar(select(Payment).where(Payment.amount_refunded == 300))
        assert refunded is not None and refunded.stripe_invoice_id is None


def test_an_imported_active_patron_is_a_patron_until_the_period_ends(app, runner, catalog, files):
    assert _import(runner, *files).exit_code == 0
    with app.app_context():
        ada = db.session.scalar(select(Member).where(Member.email == "ada@example.org"))
        assert ada is not None
        subscription = db.session.scalar(select(Subscription).where(Subscription.member == ada))
        assert subscription is not None and subscription.current_period_end is not None
        assert perks_for(db.session, ada).patron
        assert perks_for(db.session, ada).tier_slug == "insider"
        just_before = subscription.current_period_end - timedelta(minutes=1)
        assert sync.state_of(subscription, just_before) is MembershipState.ACTIVE
        cleo = db.session.scalar(select(Member).where(Member.email == "cleo@example.org"))
        assert perks_for(db.session, cleo).patron
        after_end = subscription.current_period_end + timedelta(minutes=1)
        cleo_sub = db.session.scalar(select(Subscription).where(Subscription.member == cleo))
        assert sync.state_of(cleo_sub, after_end) is MembershipState.ENDED


def test_importing_the_same_files_again_changes_nothing(app, runner, catalog, files):
    assert _import(runner, *files).exit_code == 0
    before = _counts(app)
    again = _import(runner, *files)
    assert again.exit_code == 0, again.output
    assert _counts(app) == before
    assert "members: 0 created, 0 updated, 5 unchanged" in again.output
    assert "payments: 0 created, 0 updated, 3 unchanged" in again.output
    assert "nothing changed" in again.output


def test_a_dry_run_writes_nothing(app, runner, catalog, files):
    before = _counts(app)
    result = _import(runner, *files, "--dry-run")
    assert result.exit_code == 0, result.output
    assert "members: 5 created" in result.output
    assert "Dry run: nothing was written." in result.output
    assert _counts(app) == before


def test_one_bad_line_imports_nothing_and_every_problem_is_listed(app, runner, catalog, files):
    members, payments = files
    lines = members.read_text().splitlines()
    lines[2] = lines[2].replace(",reader,", ",platinum,")
    lines[4] = lines[4].replace(",700,", ",-700,")
    lines.append(lines[1])  # ada twice
    members.write_text("\n".join(lines) + "\n")
    before = _counts(app)
    result = _import(runner, members, payments)
    assert result.exit_code != 0
    assert "Nothing imported: 5 problem(s)" in result.output
    assert "members.csv line 3: unknown tier 'platinum'" in result.output
    assert "members.csv line 5: amount '-700'" in result.output
    assert "members.csv line 7: email ada@example.org is also on line 2." in result.output
    assert _counts(app) == before


def test_a_file_that_is_not_utf8_is_refused(app, runner, catalog, files):
    members, _ = files
    members.write_bytes(members.read_text().replace("Bob", "Björn").encode("latin-1"))
    result = _import(runner, members)
    assert result.exit_code != 0
    assert "is not UTF-8" in result.output
    assert _counts(app)["Member"] == 0


def test_export_gives_back_what_was_imported_and_reimporting_it_changes_nothing(
    app, runner, catalog, files, tmp_path
):
    members, payments = files
    assert _import(runner, members, payments).exit_code == 0
    out_members, out_payments = tmp_path / "out-members.csv", tmp_path / "out-payments.csv"
    exported = runner.invoke(
        args=["members", "export", str(out_members), "--payments", str(out_payments)]
    )
    assert exported.exit_code == 0, exported.output

    def rows(path: Path) -> list[Any]:
        parsed = importer.parse_members(path.read_bytes(), {"reader", "insider", "co-creator"})
        assert parsed.problems == []
        return sorted((dataclasses.replace(r, line=0) for r in parsed.rows), key=lambda r: r.email)

    def payment_rows(path: Path) -> list[Any]:
        emails = {r.email for r in rows(members)}
        parsed = importer.parse_payments(path.read_bytes(), emails)
        assert parsed.problems == []
        return sorted(
            (dataclasses.replace(r, line=0) for r in parsed.rows), key=dataclasses.astuple
        )

    assert rows(out_members) == rows(members)
    assert payment_rows(out_payments) == payment_rows(payments)
    before = _counts(app)
    again = _import(runner, out_members, out_payments)
    assert again.exit_code == 0, again.output
    assert "nothing changed" in again.output
    assert _counts(app) == before


# --- the upload page in the staff area ----------------------------------------------------------


def _upload(client: Any, members: bytes, payments: bytes | None = None, dry_run: bool = False):
    data: dict[str, Any] = {
        "csrf_token": client.csrf_token("/staff/import"),
        "members": (io.BytesIO(members), "members.csv"),
    }
    if payments is not None:
        data["payments"] = (io.BytesIO(payments), "payments.csv")
    if dry_run:
        data["dry_run"] = "y"
    return client.post("/staff/import", data=data, content_type="multipart/form-data")


@pytest.fixture
def staff_client(client, make_member, login):
    login(make_member("editor@example.org", role=Role.STAFF))
    return client


def test_staff_import_members_by_uploading_the_files(app, staff_client, catalog, files):
    page = staff_client.get("/staff/import")
    assert page.status_code == 200
    assert 'enctype="multipart/form-data"' in page.get_data(as_text=True)
    members, payments = files
    response = _upload(staff_client, members.read_bytes(), payments.read_bytes())
    html = response.get_data(as_text=True)
    assert response.status_code == 200, html
    assert "members: 5 created, 0 updated, 0 unchanged" in html
    with app.app_context():
        entry = db.session.scalar(select(AuditEntry).where(AuditEntry.action == "members.import"))
        assert entry is not None and entry.target_type == "import"
        assert '"created": 5' in (entry.after or "")
        assert db.session.scalar(select(Member).where(Member.email == "ada@example.org"))
    again = _upload(staff_client, members.read_bytes(), payments.read_bytes())
    assert "Nothing changed: everything was already imported" in again.get_data(as_text=True)


def test_an_upload_with_bad_lines_shows_each_problem_and_imports_nothing(
    app, staff_client, catalog, files
):
    members, _ = files
    data = members.read_text().replace(",insider,", ",gold,").encode()
    before = _counts(app)
    response = _upload(staff_client, data)
    html = response.get_data(as_text=True)
    assert response.status_code == 400
    assert "Nothing was imported: 2 problem(s) to fix" in html
    assert "members.csv line 2: unknown tier &#39;gold&#39;" in html
    assert "members.csv line 6: unknown tier &#39;gold&#39;" in html
    assert _counts(app) == before
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(AuditEntry)) == 0


def test_a_dry_run_upload_counts_but_writes_nothing(app, staff_client, catalog, files):
    members, _ = files
    before = _counts(app)
    response = _upload(staff_client, members.read_bytes(), dry_run=True)
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    assert "Dry run: nothing was written" in html
    assert "members: 5 created" in html
    assert _counts(app) == before


def test_an_upload_without_the_members_file_says_what_is_missing(staff_client, catalog):
    response = staff_client.post(
        "/staff/import",
        data={"csrf_token": staff_client.csrf_token("/staff/import")},
        content_type="multipart/form-data",
    )
    assert response.status_code == 400
    assert "Choose the members file." in response.get_data(as_text=True)


def test_a_reader_cannot_import_members(client, make_member, login, files):
    login(make_member("reader@example.org"))
    members, _ = files
    assert client.get("/staff/import").status_code == 403
    response = client.post(
        "/staff/import",
        data={"members": (io.BytesIO(members.read_bytes()), "members.csv")},
        content_type="multipart/form-data",
    )
    assert response.status_code in (400, 403)
