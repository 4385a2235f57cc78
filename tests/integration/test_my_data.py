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


def _make_patron(app, db_session, stripe, member, price):
    """A live subscription for the member, made through the gateway as the card step would."""
    from membership.billing import service as billing
    from membership.billing import sync

    with app.app_context():
        subscription = _subscribe(billing, sync, db_session, stripe, member, price)
        return subscription.stripe_subscription_id, subscription.status.value


def _subscribe(billing, sync, db_session, stripe, member, price):
    customer = billing.ensure_customer(db_session, stripe, member)
    stripe.use_card(customer, "pm_card_visa")
    data = stripe.create_subscription(
        customer_id=customer,
        plan_id=price.stripe_plan_id,
        member_id=member.id,
        idempotency_key=f"test-{member.id}",
    )
    subscription = sync.apply_subscription(db_session, data, reason="test")
    db_session.commit()
    return subscription


def test_deleting_a_patrons_account_stops_the_subscription_in_stripe(
    app, client, make_member, login, db_session, stripe, catalog
):
    from membership.billing.rules import Interval

    member = make_member("patron.leaving@example.org")
    price = catalog["insider"].listed_price(Interval.MONTH, "EUR")
    stripe_id, status = _make_patron(app, db_session, stripe, member, price)
    assert status == "active"
    login(member)

    response = client.submit(
        "/account/delete", {"password": PASSWORD, "confirm": "y"}, token_page="/account/delete"
    )
    assert response.status_code == 302
    remote = stripe.get_subscription(stripe_id)
    assert remote["status"] == "canceled", "no further charge after the account is gone"
    db_session.expire_all()
    assert db_session.get(Member, member.id).deleted_at is not None


def test_my_data_includes_subscriptions_and_payments(
    app, client, make_member, login, db_session, stripe, catalog
):
    from membership.billing.rules import Interval

    member = make_member("patron.data@example.org")
    _make_patron(
        app, db_session, stripe, member, catalog["reader"].listed_price(Interval.YEAR, "GBP")
    )
    login(member)
    data = json.loads(client.get("/account/export").get_data(as_text=True))
    (subscription,) = data["membership"]["subscriptions"]
    assert subscription["tier"] == "Reader" and subscription["interval"] == "year"
    assert subscription["amount"] == 4000 and subscription["currency"] == "GBP"
