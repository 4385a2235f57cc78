"""The audit log: every staff write leaves an entry nobody can change, staff can read and export."""

from __future__ import annotations

import csv
import io
import json
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError

from membership.accounts.models import Member, Role
from membership.billing.models import Tier
from membership.database import utcnow
from membership.staff import service
from membership.staff.models import AuditEntry, Comp
from tests.conftest import CsrfClient


@pytest.fixture
def staff(make_member: Any, another_client: CsrfClient, login: Any) -> Member:
    member = make_member("auditor@example.org", role=Role.ADMIN, display_name="Ada Auditor")
    login(member, c=another_client)
    return member


@pytest.fixture
def tier(db_session: Any) -> Tier:
    tier = Tier(slug="insider", name="Insider", position=1)
    db_session.add(tier)
    db_session.commit()
    return tier


def entries(db_session: Any) -> list[AuditEntry]:
    db_session.expire_all()
    return list(db_session.scalars(select(AuditEntry).order_by(AuditEntry.id)))


def in_days(days: int) -> str:
    return (utcnow().date() + timedelta(days=days)).isoformat()


def test_every_staff_action_on_a_member_leaves_an_entry_with_before_after_and_ip(
    another_client: CsrfClient, staff: Member, make_member: Any, tier: Tier, db_session: Any
) -> None:
    reader = make_member("reader@example.org", confirmed=False)
    page = f"/staff/members/{reader.id}"

    def post(url: str, data: dict[str, str] | None = None) -> None:
        response = another_client.submit(url, data or {}, token_page=page)
        assert response.status_code == 302, response.get_data(as_text=True)

    post(f"{page}/comps", {"tier": str(tier.id), "ends_on": in_days(9), "reason": "Partner"})
    comp = db_session.scalar(select(Comp).where(Comp.member_id == reader.id))
    post(f"{page}/comps/{comp.id}/end")
    post(f"{page}/resend-confirmation")
    post("/staff/team", {"email": reader.email, "role": "staff"})
    post(f"/staff/team/{reader.id}/remove")
    post(f"{page}/delete", {"confirm": "y"})

    found = entries(db_session)
    assert [e.action for e in found] == [
        "comp.grant",
        "comp.end",
        "member.resend_confirmation",
        "member.role",
        "member.role",
        "member.delete",
    ]
    assert all(e.actor_id == staff.id and e.ip_address == "127.0.0.1" for e in found)
    grant, end, _, promote, demote, delete = found
    assert (grant.target_type, grant.target_id) == ("member", str(reader.id))
    assert json.loads(grant.before) == {"state": "none"}
    after = json.loads(grant.after)
    assert after["state"] == "comped" and after["reason"] == "Partner"
    assert (end.target_type, end.target_id) == ("comp", str(comp.id))
    assert json.loads(end.before)["ended_early_at"] is None
    assert json.loads(end.after)["ended_early_at"] is not None
    assert (json.loads(promote.before), json.loads(promote.after)) == (
        {"role": "reader"},
        {"role": "staff"},
    )
    assert json.loads(demote.after) == {"role": "reader"}
    assert json.loads(delete.after)["deleted_at"] is not None


def test_saving_a_tier_is_audited_with_what_changed(
    another_client: CsrfClient, staff: Member, db_session: Any
) -> None:
    response = another_client.submit(
        "/staff/tiers/new",
        {"slug": "patron", "name": "Patron", "position": "0", "trial_days": "0", "active": "y"},
        token_page="/staff/tiers/new",
    )
    assert response.status_code == 302, response.get_data(as_text=True)
    tier = db_session.scalar(select(Tier).where(Tier.slug == "patron"))
    response = another_client.submit(
        f"/staff/tiers/{tier.id}",
        {"name": "Big Patron", "position": "0", "trial_days": "7", "active": "y"},
        token_page=f"/staff/tiers/{tier.id}",
    )
    assert response.status_code == 302, response.get_data(as_text=True)

    created, updated = entries(db_session)
    assert (created.action, created.before, created.target_id) == (
        "tier.create",
        None,
        str(tier.id),
    )
    assert json.loads(created.after)["name"] == "Patron"
    assert updated.action == "tier.update"
    assert json.loads(updated.before)["name"] == "Patron"
    assert json.loads(updated.after)["name"] == "Big Patron"
    assert json.loads(updated.after)["trial_days"] == 7


def test_a_refused_action_leaves_no_entry(
    another_client: CsrfClient, staff: Member, make_member: Any, tier: Tier, db_session: Any
) -> None:
    reader = make_member("reader@example.org")
    page = f"/staff/members/{reader.id}"
    response = another_client.submit(
        f"{page}/comps",
        {"tier": str(tier.id), "ends_on": in_days(-1), "reason": "x"},
        token_page=page,
    )
    assert response.status_code == 400
    assert entries(db_session) == []


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE audit_entries SET action = 'nothing.happened'",
        "UPDATE audit_entries SET actor_id = NULL, after = NULL",
        "DELETE FROM audit_entries",
    ],
)
def test_the_database_refuses_to_change_or_delete_audit_entries(
    staff: Member, db_session: Any, statement: str
) -> None:
    service.record(db_session, staff, "test.write", "member", staff.id, None, {"a": 1}, "10.0.0.1")
    db_session.commit()
    with pytest.raises(DBAPIError, match="append-only"), db_session.begin_nested():
        db_session.execute(text(statement))
    db_session.expire_all()
    entry = db_session.scalar(select(AuditEntry))
    assert (entry.action, entry.after, entry.actor_id) == ("test.write", '{"a": 1}', staff.id)


def test_staff_filter_the_audit_log_by_action_actor_target_and_date(
    another_client: CsrfClient, staff: Member, make_member: Any, db_session: Any
) -> None:
    other = make_member("other.staff@example.org", role=Role.STAFF, display_name="Olga Other")
    service.record(db_session, staff, "comp.grant", "member", 7, None, None, None)
    service.record(db_session, other, "payment.refund", "payment", 12, None, None, None)
    db_session.commit()

    def rows(**args: str) -> str:
        response = another_client.get("/staff/audit", query_string=args)
        assert response.status_code == 200, response.get_data(as_text=True)
        return response.get_data(as_text=True)

    assert "payment.refund" in rows() and "1 entry" not in rows()
    only = rows(action="comp.grant")
    assert "1 entry" in only and "member 7" in only
    assert "1 entry" in rows(actor="OLGA") and "payment 12" in rows(actor="olga")
    assert "1 entry" in rows(target_type="payment", target_id="12")
    today = utcnow().date()
    assert "2 entries" in rows(since=today.isoformat(), until=today.isoformat())
    assert "0 entries" in rows(since=(today + timedelta(days=1)).isoformat())

    bad = another_client.get("/staff/audit", query_string={"since": "yesterday"})
    assert bad.status_code == 400 and "Enter a date like 2026-01-31." in bad.get_data(as_text=True)
    backwards = another_client.get(
        "/staff/audit", query_string={"since": "2026-02-02", "until": "2026-02-01"}
    )
    assert backwards.status_code == 400
    assert another_client.get("/staff/audit", query_string={"page": "2"}).status_code == 404


def test_the_audit_log_downloads_as_csv_with_awkward_text_quoted(
    another_client: CsrfClient, staff: Member, db_session: Any
) -> None:
    awkward = 'He said "comp them, please"\nthen left'
    service.record(db_session, staff, "comp.grant", "member", 7, None, {"reason": awkward}, "::1")
    service.record(db_session, staff, "payment.refund", "payment", 12, None, None, None)
    db_session.commit()

    response = another_client.get("/staff/audit.csv", query_string={"action": "comp.grant"})
    assert response.status_code == 200
    assert response.mimetype == "text/csv"
    assert "attachment" in response.headers["Content-Disposition"]
    table = list(csv.reader(io.StringIO(response.get_data(as_text=True))))
    assert table[0] == service.AUDIT_CSV_HEADER
    assert len(table) == 2
    row = dict(zip(table[0], table[1], strict=True))
    assert row["actor_email"] == "auditor@example.org" and row["ip_address"] == "::1"
    assert json.loads(row["after"]) == {"reason": awkward}
    assert another_client.get("/staff/audit.csv", query_string={"since": "x"}).status_code == 400


def test_perks_posts_and_voting_rounds_changed_by_staff_are_audited(
    another_client: CsrfClient, staff: Member, db_session: Any
) -> None:
    from membership.perks.models import Post
    from membership.voting.models import Round

    response = another_client.submit(
        "/staff/posts/new",
        {"title": "Field notes", "teaser": "", "body": "We crossed.", "audience": "all"},
        token_page="/staff/posts/new",
    )
    assert response.status_code == 302, response.get_data(as_text=True)
    post = db_session.scalar(select(Post))
    assert (
        another_client.submit(
            f"/staff/posts/{post.id}/publish", {}, token_page="/staff/posts/new"
        ).status_code
        == 302
    )
    now = utcnow()
    response = another_client.submit(
        "/staff/voting/rounds/new",
        {
            "title": "Winter round",
            "description": "What next?",
            "opens_at": (now - timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M"),
            "closes_at": (now + timedelta(days=14)).strftime("%Y-%m-%dT%H:%M"),
        },
        token_page="/staff/voting/rounds/new",
    )
    assert response.status_code == 302, response.get_data(as_text=True)
    round_ = db_session.scalar(select(Round))
    assert (
        another_client.submit(
            f"/staff/voting/rounds/{round_.id}/close", {}, token_page="/staff/voting/rounds/new"
        ).status_code
        == 302
    )

    response = another_client.submit(
        "/staff/perks/new",
        {"key": "ad_free", "name": "Ad-free reading", "kind": "flag", "active": "y"},
        token_page="/staff/perks/new",
    )
    assert response.status_code == 302, response.get_data(as_text=True)

    found = [(e.action, e.target_type, e.target_id) for e in entries(db_session)]
    perk_entry = found.pop()
    assert perk_entry[:2] == ("perk.save", "perk")
    assert found == [
        ("post.save", "post", str(post.id)),
        ("post.publish", "post", str(post.id)),
        ("round.create", "round", str(round_.id)),
        ("round.close", "round", str(round_.id)),
    ]
