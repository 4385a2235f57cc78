"""What staff do to a member: comp, end a comp, refund, resend confirmation, delete, team roles."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import func, select

from membership.accounts.models import Member, Role
from membership.billing import service as billing
from membership.billing.models import MembershipEvent, Payment, Refund, Tier
from membership.billing.rules import MembershipState
from membership.database import utcnow
from membership.extensions import db
from membership.perks import service as perks
from membership.perks.models import Grant, Perk, PerkKind, TierPerk
from membership.staff.models import AuditEntry, Comp
from tests.conftest import CsrfClient
from tests.stripe.conftest import StripeApi, api_for, join, start_gift


@pytest.fixture
def staff(make_member: Any, another_client: CsrfClient, login: Any) -> Member:
    """A staff member, logged in on ``another_client``."""
    member = make_member("staffer@example.org", role=Role.STAFF, display_name="Sam Staff")
    login(member, c=another_client)
    return member


@pytest.fixture
def insider(db_session: Any) -> Tier:
    tier = Tier(slug="insider", name="Insider", position=1)
    db_session.add(tier)
    db_session.flush()
    perk = Perk(key="ad_free", name="Ad-free reading", kind=PerkKind.FLAG)
    db_session.add(perk)
    db_session.flush()
    db_session.add(TierPerk(tier_id=tier.id, perk_id=perk.id, grant=Grant.GRANT))
    db_session.commit()
    return tier


def state_and_perks(app: Flask, member: Member) -> tuple[MembershipState, list[str]]:
    with app.app_context():
        db.session.expire_all()
        state = billing.membership_state(db.session, member)
        found = perks.perks_for(db.session, member)
        return state, sorted(found.unlocked)


def in_days(days: int) -> str:
    return (utcnow().date() + timedelta(days=days)).isoformat()


def page_of(member: Member) -> str:
    return f"/staff/members/{member.id}"


# --- comps -------------------------------------------------------------------------------------


def test_a_comped_reader_becomes_comped_with_the_tiers_perks_until_staff_end_it(
    app: Flask,
    another_client: CsrfClient,
    staff: Member,
    make_member: Any,
    insider: Tier,
    db_session: Any,
) -> None:
    reader = make_member("friend@example.org")
    assert state_and_perks(app, reader) == (MembershipState.NONE, [])

    response = another_client.submit(
        f"{page_of(reader)}/comps",
        {"tier": str(insider.id), "ends_on": in_days(30), "reason": "Press partner"},
        token_page=page_of(reader),
    )
    assert response.status_code == 302, response.get_data(as_text=True)
    assert state_and_perks(app, reader) == (MembershipState.COMPED, ["ad_free"])
    page = another_client.get(page_of(reader)).get_data(as_text=True)
    assert '<dd id="membership-state">comped</dd>' in page and "Press partner" in page
    with app.app_context():
        in_bulk = perks.perks_for_members(db.session, [reader.id])
    assert sorted(in_bulk[reader.id].unlocked) == ["ad_free"]

    comp = db_session.scalar(select(Comp).where(Comp.member_id == reader.id))
    response = another_client.submit(
        f"{page_of(reader)}/comps/{comp.id}/end", {}, token_page=page_of(reader)
    )
    assert response.status_code == 302
    assert state_and_perks(app, reader) == (MembershipState.NONE, [])

    events = db_session.scalars(
        select(MembershipEvent)
        .where(MembershipEvent.member_id == reader.id)
        .order_by(MembershipEvent.id)
    ).all()
    assert [(e.from_state, e.to_state, e.mrr_delta) for e in events] == [
        (MembershipState.NONE, MembershipState.COMPED, 0),
        (MembershipState.COMPED, MembershipState.NONE, 0),
    ]


@pytest.mark.parametrize(
    ("ends_on", "message"),
    [
        (0, "Choose an end date in the future."),
        (-3, "Choose an end date in the future."),
        (365 * 5 + 5, "A comp lasts at most 5 years"),
        ("next week", "Enter a date like 2026-01-31."),
        ("", "Enter a date like 2026-01-31."),
    ],
)
def test_a_comp_end_date_must_be_in_the_next_five_years(
    another_client: CsrfClient,
    staff: Member,
    make_member: Any,
    insider: Tier,
    db_session: Any,
    ends_on: Any,
    message: str,
) -> None:
    reader = make_member("friend@example.org")
    response = another_client.submit(
        f"{page_of(reader)}/comps",
        {
            "tier": str(insider.id),
            "ends_on": in_days(ends_on) if isinstance(ends_on, int) else ends_on,
            "reason": "Press partner",
        },
        token_page=page_of(reader),
    )
    assert response.status_code == 400
    assert message in response.get_data(as_text=True)
    assert db_session.scalar(select(func.count()).select_from(Comp)) == 0
    assert db_session.scalar(select(func.count()).select_from(AuditEntry)) == 0


def test_a_comp_needs_a_real_tier_and_a_reason(
    another_client: CsrfClient, staff: Member, make_member: Any, insider: Tier, db_session: Any
) -> None:
    reader = make_member("friend@example.org")
    for data, message in (
        ({"tier": "999999", "ends_on": in_days(10), "reason": "x"}, "Choose a tier."),
        ({"tier": "abc", "ends_on": in_days(10), "reason": "x"}, "Choose a tier."),
        ({"tier": str(insider.id), "ends_on": in_days(10), "reason": "  "}, "Say why"),
    ):
        response = another_client.submit(
            f"{page_of(reader)}/comps", data, token_page=page_of(reader)
        )
        assert response.status_code == 400
        assert message in response.get_data(as_text=True)
    assert db_session.scalar(select(func.count()).select_from(Comp)) == 0


# --- refunds through localstripe ---------------------------------------------------------------


@pytest.fixture
def api(stripe: Any, localstripe: Any) -> StripeApi:
    return api_for(localstripe)


@pytest.fixture
def paid(
    client: CsrfClient,
    login: Any,
    make_member: Any,
    catalog: dict[str, Any],
    api: StripeApi,
    db_session: Any,
) -> Payment:
    """A reader who joined as Reader (€5 a month) with a real card payment in localstripe."""
    member = make_member("patron@example.org", display_name="Pat Patron")
    login(member)
    _, outcome = join(client, api, catalog["reader"].id)
    assert outcome["status"] == "active", outcome
    db_session.expire_all()
    payment = db_session.scalar(select(Payment).where(Payment.member_id == member.id))
    assert payment is not None and payment.stripe_payment_intent_id and payment.amount == 500
    return payment


def refund_url(payment: Payment) -> str:
    return f"/staff/members/{payment.member_id}/payments/{payment.id}/refund"


def refund(client: CsrfClient, payment: Payment, amount: str) -> Any:
    return client.submit(
        refund_url(payment),
        {f"p{payment.id}-amount": amount},
        token_page=f"/staff/members/{payment.member_id}",
    )


def stripe_refunds(api: StripeApi) -> list[dict[str, Any]]:
    return api.all("refunds")


def test_staff_refund_part_then_the_rest_of_a_payment_through_stripe(
    another_client: CsrfClient, staff: Member, paid: Payment, api: StripeApi, db_session: Any
) -> None:
    response = refund(another_client, paid, "2")
    assert response.status_code == 302, response.get_data(as_text=True)
    db_session.expire_all()
    assert paid.amount_refunded == 200
    assert [r["amount"] for r in stripe_refunds(api)] == [200]

    response = refund(another_client, paid, "3.00")
    assert response.status_code == 302, response.get_data(as_text=True)
    db_session.expire_all()
    assert paid.amount_refunded == 500
    rows = db_session.scalars(select(Refund).where(Refund.payment_id == paid.id)).all()
    assert sorted(r.amount for r in rows) == [200, 300]
    assert sorted(r["amount"] for r in stripe_refunds(api)) == [200, 300]
    page = another_client.get(f"/staff/members/{paid.member_id}").get_data(as_text=True)
    assert "€3 on" in page and "€2 on" in page
    audit = db_session.scalars(select(AuditEntry).order_by(AuditEntry.id)).all()
    assert [(e.action, e.target_id, e.actor_id) for e in audit] == [
        ("payment.refund", str(paid.id), staff.id),
        ("payment.refund", str(paid.id), staff.id),
    ]
    assert (
        '"amount_refunded": 200' in audit[1].before and '"amount_refunded": 500' in audit[1].after
    )


@pytest.mark.parametrize(
    ("amount", "message"),
    [
        ("5.01", "At most €5 is left to refund."),
        ("0", "Enter an amount above zero."),
        ("-1", "Enter an amount above zero."),
        ("lots", "Enter the amount as a number"),
        ("", "Enter an amount."),
    ],
)
def test_a_refund_that_is_too_big_or_not_a_number_is_refused_before_stripe_is_asked(
    another_client: CsrfClient,
    staff: Member,
    paid: Payment,
    api: StripeApi,
    db_session: Any,
    amount: str,
    message: str,
) -> None:
    response = refund(another_client, paid, amount)
    assert response.status_code == 400
    assert message in response.get_data(as_text=True)
    assert stripe_refunds(api) == []
    db_session.expire_all()
    assert paid.amount_refunded == 0
    assert db_session.scalar(select(func.count()).select_from(AuditEntry)) == 0


def test_after_a_partial_refund_only_what_is_left_can_be_refunded(
    another_client: CsrfClient, staff: Member, paid: Payment, api: StripeApi
) -> None:
    assert refund(another_client, paid, "4").status_code == 302
    response = refund(another_client, paid, "2")
    assert response.status_code == 400
    assert "At most €1 is left to refund." in response.get_data(as_text=True)
    assert [r["amount"] for r in stripe_refunds(api)] == [400]


def test_when_stripe_is_unreachable_a_refund_saves_nothing_and_says_so(
    app: Flask,
    another_client: CsrfClient,
    staff: Member,
    paid: Payment,
    db_session: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from membership.billing.gateway import GatewaySettings, StripeGateway

    unreachable = StripeGateway(
        GatewaySettings(
            secret_key=app.config["STRIPE_SECRET_KEY"],
            api_version=app.config["STRIPE_API_VERSION"],
            api_base="http://127.0.0.1:1",
            webhook_secret=app.config["STRIPE_WEBHOOK_SECRET"],
            max_network_retries=0,
        )
    )
    monkeypatch.setitem(app.extensions, "stripe_gateway", unreachable)
    response = refund(another_client, paid, "5")
    assert response.status_code == 400
    assert "Stripe could not be reached" in response.get_data(as_text=True)
    db_session.expire_all()
    assert paid.amount_refunded == 0
    assert db_session.scalar(select(func.count()).select_from(Refund)) == 0
    assert db_session.scalar(select(func.count()).select_from(AuditEntry)) == 0


def test_staff_refund_a_gift(
    client: CsrfClient,
    another_client: CsrfClient,
    staff: Member,
    make_member: Any,
    login: Any,
    catalog: dict[str, Any],
    api: StripeApi,
    db_session: Any,
) -> None:
    giver = make_member("giver@example.org", display_name="Gina Giver")
    login(giver)
    step = start_gift(client, api, "12.50")
    outcome = step.pay()
    assert outcome["status"] == "active", outcome
    db_session.expire_all()
    gift = db_session.scalar(select(Payment).where(Payment.member_id == giver.id))
    assert gift is not None and gift.amount == 1250

    assert refund(another_client, gift, "12.50").status_code == 302
    db_session.expire_all()
    assert gift.amount_refunded == 1250
    assert [r["amount"] for r in stripe_refunds(api)] == [1250]
    page = another_client.get(f"/staff/members/{giver.id}").get_data(as_text=True)
    assert f'action="{refund_url(gift)}"' not in page  # nothing left to refund


# --- account actions ---------------------------------------------------------------------------


def test_staff_resend_the_confirmation_email_to_an_unconfirmed_member(
    another_client: CsrfClient, staff: Member, make_member: Any, mailbox: Any
) -> None:
    reader = make_member("unsure@example.org", confirmed=False)
    response = another_client.submit(
        f"{page_of(reader)}/resend-confirmation", {}, token_page=page_of(reader)
    )
    assert response.status_code == 302
    assert "/account/confirm/" in mailbox.text(mailbox.last_to("unsure@example.org"))
    page = another_client.get(page_of(reader)).get_data(as_text=True)
    assert "Confirm your email address" in page  # listed among the emails sent


def test_a_confirmed_member_gets_no_new_confirmation_email(
    another_client: CsrfClient, staff: Member, make_member: Any, mailbox: Any
) -> None:
    reader = make_member("sure@example.org")
    response = another_client.submit(
        f"{page_of(reader)}/resend-confirmation", {}, token_page=page_of(reader)
    )
    assert response.status_code == 302
    assert mailbox.to("sure@example.org") == []


def test_staff_delete_a_members_data_on_request_and_their_subscription_stops(
    another_client: CsrfClient, staff: Member, paid: Payment, api: StripeApi, db_session: Any
) -> None:
    member_id = paid.member_id
    response = another_client.submit(
        f"/staff/members/{member_id}/delete",
        {"confirm": "y"},
        token_page=f"/staff/members/{member_id}",
    )
    assert response.status_code == 302, response.get_data(as_text=True)
    db_session.expire_all()
    member = db_session.get(Member, member_id)
    assert member.deleted_at is not None and member.email == f"deleted-{member_id}@deleted.invalid"
    assert member.display_name == "Deleted member" and member.password_hash is None
    subscriptions = api.subscriptions_of(member.stripe_customer_id or "")
    assert [s["status"] for s in subscriptions] == ["canceled"]
    assert another_client.get(f"/staff/members/{member_id}").status_code == 404


def test_deleting_a_member_needs_the_box_ticked(
    another_client: CsrfClient, staff: Member, make_member: Any, db_session: Any
) -> None:
    reader = make_member("keep@example.org")
    response = another_client.submit(f"{page_of(reader)}/delete", {}, token_page=page_of(reader))
    assert response.status_code == 400
    assert "Tick the box to confirm." in response.get_data(as_text=True)
    db_session.expire_all()
    assert reader.deleted_at is None


# --- the team ----------------------------------------------------------------------------------


@pytest.fixture
def admin(make_member: Any, another_client: CsrfClient, login: Any) -> Member:
    member = make_member("boss@example.org", role=Role.ADMIN, display_name="Ada Admin")
    login(member, c=another_client)
    return member


def team_post(client: CsrfClient, url: str, data: dict[str, str] | None = None) -> Any:
    return client.submit(url, data or {}, token_page="/staff/team")


def test_an_admin_makes_a_reader_staff_and_removes_them_again(
    another_client: CsrfClient, admin: Member, make_member: Any, db_session: Any
) -> None:
    reader = make_member("newhire@example.org", display_name="New Hire")
    response = team_post(
        another_client, "/staff/team", {"email": "NewHire@example.org", "role": "staff"}
    )
    assert response.status_code == 302
    db_session.expire_all()
    assert reader.role is Role.STAFF
    assert "New Hire" in another_client.get("/staff/team").get_data(as_text=True)

    assert team_post(another_client, f"/staff/team/{reader.id}/remove").status_code == 302
    db_session.expire_all()
    assert reader.role is Role.READER


def test_giving_a_role_to_an_unknown_address_is_explained(
    another_client: CsrfClient, admin: Member
) -> None:
    response = team_post(another_client, "/staff/team", {"email": "ghost@example.org"})
    assert response.status_code == 400
    assert "No account has this email address" in response.get_data(as_text=True)


def test_an_admin_cannot_demote_themselves(
    another_client: CsrfClient, admin: Member, make_member: Any, db_session: Any
) -> None:
    make_member("second@example.org", role=Role.ADMIN)
    response = team_post(another_client, f"/staff/team/{admin.id}/remove")
    assert response.status_code == 302
    page = another_client.get("/staff/team").get_data(as_text=True)
    assert "You cannot change your own role" in page
    db_session.expire_all()
    assert admin.role is Role.ADMIN


def test_the_last_admin_cannot_be_removed(make_member: Any, db_session: Any) -> None:
    """Only reachable outside the team page (two admins are needed to remove one there)."""
    from membership.staff import service

    only = make_member("only@example.org", role=Role.ADMIN)
    staffer = make_member("staffer@example.org", role=Role.STAFF)
    with pytest.raises(service.StaffError, match="last admin"):
        service.set_role(db_session, staffer, only, Role.READER, ip=None)
    assert only.role is Role.ADMIN


def test_staff_who_are_not_admins_cannot_change_the_team(
    another_client: CsrfClient, staff: Member, make_member: Any, db_session: Any
) -> None:
    reader = make_member("hopeful@example.org")
    token = another_client.csrf_token(f"/staff/members/{reader.id}")
    response = another_client.post(
        "/staff/team", data={"email": reader.email, "role": "admin", "csrf_token": token}
    )
    assert response.status_code == 403
    db_session.expire_all()
    assert reader.role is Role.READER
