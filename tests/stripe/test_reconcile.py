"""``flask billing reconcile`` repairs what changed in Stripe without us hearing of it."""

from __future__ import annotations

import re

from sqlalchemy import delete, select

from membership.accounts.models import Member
from membership.billing.models import Payment, PaymentStatus, Subscription
from membership.billing.rules import MembershipState, SubscriptionStatus
from tests.stripe.conftest import (
    VISA,
    StripeApi,
    apply_events,
    is_patron,
    join,
    state_of,
    subscription_of,
)


def _reconcile(runner) -> str:
    result = runner.invoke(args=["billing", "reconcile"])
    assert result.exit_code == 0, result.output
    return result.output


def _made_in_stripe(api: StripeApi, email: str, name: str, plan: str) -> tuple[str, str]:
    """A customer and subscription made outside the app (say, in the Stripe Dashboard)."""
    customer = api.v1.customers.create(params={"email": email, "name": name})
    card = {"number": VISA, "exp_month": 12, "exp_year": 2030, "cvc": "123"}
    method = api.v1.payment_methods.create(params={"type": "card", "card": card})
    api.v1.payment_methods.attach(method["id"], params={"customer": customer["id"]})
    api.v1.customers.update(
        customer["id"], params={"invoice_settings": {"default_payment_method": method["id"]}}
    )
    subscription = api.v1.subscriptions.create(
        params={"customer": customer["id"], "items": [{"plan": plan}]}
    )
    assert subscription["status"] == "active"
    return customer["id"], subscription["id"]


def _joined(app, login, make_member, api, tier_id, email) -> Member:
    member = make_member(email)
    client = app.test_client()
    login(member, c=client)
    _, outcome = join(client, api, tier_id, card=VISA)
    assert outcome["status"] == "active"
    return member


def test_reconcile_repairs_subscriptions_and_payments_changed_behind_our_back(
    app, client, runner, patron, login, make_member, catalog, stripe_api, db_session
):
    ended = _joined(app, login, make_member, stripe_api, catalog["insider"].id, "ends@example.org")
    unpaid = _joined(app, login, make_member, stripe_api, catalog["reader"].id, "lost@example.org")
    apply_events(app, stripe_api)  # every webhook so far arrived
    db_session.expire_all()
    ended_subscription = subscription_of(db_session, ended).stripe_subscription_id
    # Then, without the app hearing of it: the patron's cancellation is set in the Dashboard,
    # another subscription is canceled there (its webhook is lost), a payment row is lost.
    stripe_api.v1.subscriptions.update(
        patron.subscription_id, params={"cancel_at_period_end": True}
    )
    stripe_api.v1.subscriptions.cancel(ended_subscription)
    [lost] = db_session.scalars(select(Payment).where(Payment.member_id == unpaid.id)).all()
    lost_invoice = lost.stripe_invoice_id
    db_session.execute(delete(Payment).where(Payment.id == lost.id))
    db_session.commit()

    output = _reconcile(runner)

    assert f"repaired subscription {patron.subscription_id} (member {patron.member.id})" in output
    assert f"repaired subscription {ended_subscription} (member {ended.id}): canceled" in output
    assert f"recorded payment for invoice {lost_invoice} (member {unpaid.id}): succeeded" in output
    assert state_of(app, patron.member) is MembershipState.CANCELING
    assert subscription_of(db_session, patron.member).cancel_at_period_end
    subscription = subscription_of(db_session, ended)
    assert (subscription.status, subscription.live) == (SubscriptionStatus.CANCELED, False)
    assert state_of(app, ended) is MembershipState.ENDED
    [payment] = db_session.scalars(select(Payment).where(Payment.member_id == unpaid.id)).all()
    assert (payment.stripe_invoice_id, payment.status, payment.amount) == (
        lost_invoice,
        PaymentStatus.SUCCEEDED,
        500,
    )

    again = _reconcile(runner)

    assert again.strip().endswith("0 change(s).")


def test_reconcile_links_subscriptions_made_in_stripe_by_email_and_invites_new_readers(
    app, client, runner, make_member, catalog, stripe_api, db_session, mailbox, deliver
):
    known = make_member("known@example.org")
    taken = make_member("taken@example.org")
    other_customer = stripe_api.v1.customers.create(params={"email": "taken@example.org"})["id"]
    taken.stripe_customer_id = other_customer
    db_session.commit()
    plan = "membership-insider-month-eur-1000"
    known_customer, known_subscription = _made_in_stripe(
        stripe_api, "Known@Example.org", "Known Reader", plan
    )
    _, new_subscription = _made_in_stripe(stripe_api, "newcomer@example.org", "Nia Newcomer", plan)
    _, taken_subscription = _made_in_stripe(stripe_api, "taken@example.org", "Someone", plan)

    output = _reconcile(runner)
    deliver()

    assert f"added subscription {known_subscription} (member {known.id}): active" in output
    db_session.expire_all()
    assert known.stripe_customer_id == known_customer
    assert state_of(app, known) is MembershipState.ACTIVE
    payments = db_session.scalars(select(Payment).where(Payment.member_id == known.id)).all()
    assert [(p.status, p.amount) for p in payments] == [(PaymentStatus.SUCCEEDED, 1000)]

    newcomer = db_session.scalar(select(Member).where(Member.email == "newcomer@example.org"))
    assert newcomer is not None
    assert newcomer.display_name == "Nia Newcomer"
    assert f"added subscription {new_subscription} (member {newcomer.id}): active" in output
    assert is_patron(app, newcomer)
    [invitation] = mailbox.to("newcomer@example.org")
    link = re.search(r"http://localhost(/account/reset/\S+)", mailbox.text(invitation))
    assert link, mailbox.text(invitation)
    assert client.get(link.group(1)).status_code == 200

    # An account that already has another Stripe customer is never taken over by email.
    assert taken.stripe_customer_id == other_customer
    assert not is_patron(app, taken)
    assert taken_subscription not in output
    assert (
        db_session.scalar(
            select(Subscription).where(Subscription.stripe_subscription_id == taken_subscription)
        )
        is None
    )
    assert mailbox.to("taken@example.org") == []

    again = _reconcile(runner)
    deliver()

    assert again.strip().endswith("0 change(s).")
    assert len(mailbox.to("newcomer@example.org")) == 1
