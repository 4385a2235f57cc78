"""``flask billing sync-catalog``: our tiers and prices become Stripe products and plans."""

from __future__ import annotations

from sqlalchemy import select

from membership.billing import service
from membership.billing.models import Price, Tier
from membership.billing.rules import Interval
from membership.cli import DEMO_TIERS
from tests.stripe.conftest import choose, subscription_of


def _sync(runner) -> str:
    result = runner.invoke(args=["billing", "sync-catalog"])
    assert result.exit_code == 0, result.output
    return result.output


def test_syncing_the_catalog_creates_every_price_once_and_then_changes_nothing(
    runner, stripe, stripe_api, db_session
):
    for position, (slug, name, description, prices) in enumerate(DEMO_TIERS):
        tier = Tier(slug=slug, name=name, description=description, position=position)
        db_session.add(tier)
        db_session.flush()
        for currency, (monthly, yearly) in prices.items():
            service.set_price(db_session, tier, Interval.MONTH, currency, monthly)
            service.set_price(db_session, tier, Interval.YEAR, currency, yearly)
    db_session.commit()

    first = _sync(runner)
    second = _sync(runner)

    assert "Catalog in sync with Stripe (18 change(s))." in first
    assert "created membership-co-creator-year-gbp-20000" in first
    assert second.strip() == "Catalog in sync with Stripe (0 change(s))."
    products = {p["id"]: p["name"] for p in stripe_api.all("products")}
    assert products == {
        "membership-tier-reader": "Reader",
        "membership-tier-insider": "Insider",
        "membership-tier-co-creator": "Co-creator",
    }
    plans = {
        p["id"]: (p["product"], p["amount"], p["currency"], p["interval"], p["active"])
        for p in stripe_api.all("plans")
    }
    db_session.expire_all()
    ours = {
        p.stripe_plan_id: (
            f"membership-tier-{p.tier.slug}",
            p.amount,
            p.currency.lower(),
            p.interval.value,
            True,
        )
        for p in db_session.scalars(select(Price))
    }
    assert plans == ours
    assert len(plans) == 18


def test_a_new_price_replaces_the_old_in_stripe_while_patrons_keep_paying_the_old_one(
    client, another_client, make_member, login, runner, patron, catalog, stripe_api, db_session
):
    reader = catalog["reader"]
    service.set_price(db_session, reader, Interval.MONTH, "EUR", 600)
    db_session.commit()

    first = _sync(runner)
    second = _sync(runner)

    assert "(2 change(s))" in first
    assert "created membership-reader-month-eur-600" in first
    assert "archived membership-reader-month-eur-500" in first
    assert "(0 change(s))" in second
    old = stripe_api.v1.plans.retrieve("membership-reader-month-eur-500")
    new = stripe_api.v1.plans.retrieve("membership-reader-month-eur-600")
    # localstripe keeps the form value of an update as it came: "false", where Stripe says false.
    assert (str(old["active"]).lower(), new["active"], new["amount"]) == ("false", True, 600)

    remote = stripe_api.subscription(patron.subscription_id)
    assert remote["items"]["data"][0]["plan"]["id"] == "membership-reader-month-eur-500"
    subscription = subscription_of(db_session, patron.member)
    assert (subscription.price.amount, subscription.price.listed) == (500, False)
    assert "€5 a month" in client.get("/membership").get_data(as_text=True)
    # A reader joining now is asked for the new amount.
    login(make_member("newcomer@example.org"), c=another_client)
    summary = choose(another_client, reader.id).get_data(as_text=True)
    assert "€6 a month" in summary
