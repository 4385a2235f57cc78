"""Staff define tiers and their prices; Stripe gets a new price for every new amount."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from membership.accounts.models import Role
from membership.billing.models import Price, Tier
from membership.billing.rules import Interval

TIER_FORM = {
    "slug": "supporter",
    "name": "Supporter",
    "description": "Keeps the lights on.",
    "position": "0",
    "trial_days": "0",
    "active": "y",
    "price_month_eur": "6",
    "price_year_eur": "60",
    "price_month_usd": "6.50",
}


@pytest.fixture
def staff_client(client, make_member, login):
    login(make_member("editor@example.org", role=Role.STAFF))
    return client


def save(client, url, data):
    return client.submit(url, data, token_page="/staff/tiers/new")


def test_staff_create_a_tier_and_its_prices_appear_in_stripe(staff_client, db_session, stripe):
    response = save(staff_client, "/staff/tiers/new", TIER_FORM)
    assert response.status_code == 302, response.get_data(as_text=True)
    tier = db_session.scalar(select(Tier).where(Tier.slug == "supporter"))
    assert tier.name == "Supporter" and tier.active
    amounts = {(p.interval, p.currency): p.amount for p in tier.prices if p.listed}
    assert amounts == {
        (Interval.MONTH, "EUR"): 600,
        (Interval.YEAR, "EUR"): 6000,
        (Interval.MONTH, "USD"): 650,
    }
    plan = stripe.ensure_plan(
        "membership-supporter-month-usd-650",
        product_id="unused",
        amount=1,
        currency="usd",
        interval="month",
    )
    assert plan["amount"] == 650 and plan["currency"] == "usd", "the plan existed already"
    page = staff_client.get("/staff/tiers").get_data(as_text=True)
    assert "Supporter" in page and "€6" in page and "$6.50" in page


def test_changing_an_amount_makes_a_new_price_and_archives_the_old(
    staff_client, db_session, stripe
):
    save(staff_client, "/staff/tiers/new", TIER_FORM)
    tier = db_session.scalar(select(Tier).where(Tier.slug == "supporter"))
    form = staff_client.get(f"/staff/tiers/{tier.id}").get_data(as_text=True)
    assert 'value="6"' in form and 'value="6.50"' in form, "the form shows the current prices"

    response = save(staff_client, f"/staff/tiers/{tier.id}", {**TIER_FORM, "price_month_eur": "7"})
    assert response.status_code == 302
    db_session.expire_all()
    prices = db_session.scalars(
        select(Price).where(
            Price.tier_id == tier.id, Price.interval == Interval.MONTH, Price.currency == "EUR"
        )
    ).all()
    assert sorted((p.amount, p.listed) for p in prices) == [(600, False), (700, True)]
    old = stripe.ensure_plan(
        "membership-supporter-month-eur-600",
        product_id="x",
        amount=1,
        currency="eur",
        interval="month",
    )
    assert old["active"] in (False, "false")  # localstripe echoes the form value back


def test_a_tier_form_with_bad_input_says_what_is_wrong_and_saves_nothing(staff_client, db_session):
    bad = {
        **TIER_FORM,
        "slug": "Not A Slug!",
        "price_month_eur": "abc",
        "price_year_eur": "-5",
        "trial_days": "500",
    }
    response = save(staff_client, "/staff/tiers/new", bad)
    assert response.status_code == 400
    page = response.get_data(as_text=True)
    assert "Enter the amount as a number" in page
    assert "Enter an amount above zero." in page
    assert db_session.scalar(select(func.count()).select_from(Tier)) == 0


def test_a_short_name_is_used_once(staff_client, db_session, stripe):
    save(staff_client, "/staff/tiers/new", TIER_FORM)
    again = save(staff_client, "/staff/tiers/new", {**TIER_FORM, "name": "Other"})
    assert again.status_code == 400
    assert "already uses that short name" in again.get_data(as_text=True)
    assert db_session.scalar(select(func.count()).select_from(Tier)) == 1


def test_an_archived_tier_leaves_the_support_page(staff_client, db_session, stripe):
    save(staff_client, "/staff/tiers/new", TIER_FORM)
    tier = db_session.scalar(select(Tier).where(Tier.slug == "supporter"))
    assert "Join as Supporter" in staff_client.get("/support").get_data(as_text=True)
    archived = {k: v for k, v in TIER_FORM.items() if k != "active"}
    save(staff_client, f"/staff/tiers/{tier.id}", archived)
    assert "Join as Supporter" not in staff_client.get("/support").get_data(as_text=True)


def test_catalog_sync_leaves_pay_what_you_want_prices_on_sale(
    staff_client, db_session, stripe, app
):
    from membership.billing import service as billing

    save(staff_client, "/staff/tiers/new", TIER_FORM)
    with app.app_context():
        custom = billing.choose_price(
            db_session,
            tier_id=db_session.scalar(select(Tier.id).where(Tier.slug == "supporter")),
            interval="month",
            currency="EUR",
            amount_text="9",
            currencies=["EUR"],
        )
        billing._ensure_plan(db_session, stripe, custom)
        db_session.commit()
        assert "membership-supporter-month-eur-900" not in " ".join(
            billing.sync_catalog(db_session, stripe)
        )
    plan = stripe.ensure_plan(
        "membership-supporter-month-eur-900",
        product_id="x",
        amount=1,
        currency="eur",
        interval="month",
    )
    assert plan["active"] in (True, "true")


def test_an_amount_offered_again_is_reactivated_in_stripe(staff_client, db_session, stripe):
    save(staff_client, "/staff/tiers/new", TIER_FORM)
    tier_id = db_session.scalar(select(Tier.id).where(Tier.slug == "supporter"))
    save(staff_client, f"/staff/tiers/{tier_id}", {**TIER_FORM, "price_month_eur": "7"})
    save(staff_client, f"/staff/tiers/{tier_id}", {**TIER_FORM, "price_month_eur": "6"})
    plan = stripe.ensure_plan(
        "membership-supporter-month-eur-600",
        product_id="x",
        amount=1,
        currency="eur",
        interval="month",
    )
    assert plan["active"] in (True, "true")
    db_session.expire_all()
    listed = db_session.scalar(
        select(Price).where(Price.stripe_plan_id == "membership-supporter-month-eur-600")
    )
    assert listed.listed and listed.retired_at is None and listed.archived_at is None
