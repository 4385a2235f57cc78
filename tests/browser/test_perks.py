"""Perks as a person meets them: reading a patron-only update, being invited to join, and
putting one's name on the supporters wall."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from playwright.sync_api import Page, expect
from sqlalchemy import select

from membership.accounts.models import Member
from membership.billing.models import Subscription, Tier
from membership.billing.rules import Interval, SubscriptionStatus
from membership.database import utcnow
from membership.extensions import db
from membership.perks import demo, service
from membership.perks.models import Grant, Perk, PerkKind, Post
from tests.browser.conftest import LiveServer, log_in, unique_email

UPDATE_TITLE = "A note from the editors"  # a demo update for all patrons
UPDATE_BODY = "This month your support paid for"


@pytest.fixture
def demo_perks(live_server: LiveServer) -> None:
    """Patron-only updates and the wall for every tier, and the demo updates (idempotent).

    Not the whole demo: the live server is shared with other browser tests, and a votes perk
    with the demo's numbers would change what their patrons get.
    """
    with live_server.app.app_context():
        reader = db.session.scalar(select(Tier).where(Tier.slug == "reader"))
        for item in demo.DEMO_PERKS:
            if item.kind not in (PerkKind.CONTENT, PerkKind.WALL):
                continue
            if db.session.scalar(select(Perk.id).where(Perk.key == item.key)) is not None:
                continue
            perk = service.save_perk(
                db.session,
                None,
                service.PerkFields(item.name, item.description, item.kind, None, None, True),
                key=item.key,
            )
            service.set_tier_decisions(db.session, perk, {reader.id: (Grant.GRANT, None)})
        for slug, title, teaser, body, tier_slugs in demo.DEMO_POSTS:
            if tier_slugs is not None:
                continue
            if db.session.scalar(select(Post.id).where(Post.slug == slug)) is None:
                fields = service.PostFields(title, teaser, body, all_patrons=True)
                post = service.save_post(db.session, None, fields, author=None, slug=slug)
                service.publish_post(db.session, post)
        db.session.commit()


def make_patron(live_server: LiveServer, email: str, tier_slug: str = "reader") -> None:
    """A member with an active subscription, as the webhooks would have recorded it."""
    live_server.add_member(email)
    with live_server.app.app_context():
        member = db.session.scalar(select(Member).where(Member.email == email))
        tier = db.session.scalar(select(Tier).where(Tier.slug == tier_slug))
        db.session.add(
            Subscription(
                member=member,
                price=tier.listed_price(Interval.MONTH, "EUR"),
                stripe_subscription_id=f"sub_browser_{uuid.uuid4().hex}",
                status=SubscriptionStatus.ACTIVE,
                live=True,
                current_period_end=utcnow() + timedelta(days=20),
            )
        )
        db.session.commit()


@pytest.mark.browser
def test_a_patron_reads_a_patron_only_update(
    page: Page, live_server: LiveServer, demo_perks: None
) -> None:
    email = unique_email("patron")
    make_patron(live_server, email)
    page.goto("/account/login")
    log_in(page, email)
    expect(page.get_by_role("heading", name="Your perks")).to_be_visible()

    page.get_by_role("link", name="Read the patron-only updates").click()
    page.get_by_role("link", name=UPDATE_TITLE).click()
    expect(page.get_by_role("heading", name=UPDATE_TITLE, level=1)).to_be_visible()
    expect(page.get_by_text(UPDATE_BODY)).to_be_visible()
    expect(page.get_by_role("link", name="Become a patron")).to_have_count(0)


@pytest.mark.browser
def test_a_visitor_sees_the_teaser_and_is_invited_to_become_a_patron(
    page: Page, live_server: LiveServer, demo_perks: None
) -> None:
    page.goto("/updates")
    page.get_by_role("link", name=UPDATE_TITLE).click()
    expect(page.get_by_role("heading", name=UPDATE_TITLE, level=1)).to_be_visible()
    expect(page.get_by_text("What your support paid for this month")).to_be_visible()
    expect(page.get_by_text(UPDATE_BODY)).to_have_count(0)
    expect(page.get_by_role("heading", name="This update is for patrons")).to_be_visible()

    page.get_by_role("link", name="Become a patron").click()
    expect(page).to_have_url(f"{live_server.url}/support")


@pytest.mark.browser
def test_a_reader_who_is_not_a_patron_is_asked_to_join_after_logging_in(
    page: Page, live_server: LiveServer, demo_perks: None
) -> None:
    email = unique_email("reader")
    live_server.add_member(email)
    page.goto("/updates/a-note-from-the-editors")
    page.get_by_role("link", name="Log in").last.click()
    log_in(page, email)
    expect(page.get_by_role("heading", name=UPDATE_TITLE, level=1)).to_be_visible()
    expect(page.get_by_text(UPDATE_BODY)).to_have_count(0)
    expect(page.get_by_role("link", name="Become a patron")).to_be_visible()


@pytest.mark.browser
def test_a_patron_puts_their_name_on_the_supporters_wall_and_can_take_it_off(
    page: Page, live_server: LiveServer, demo_perks: None
) -> None:
    email = unique_email("patron")
    make_patron(live_server, email, "insider")
    name = f"Olena {uuid.uuid4().hex[:6]}"
    page.goto("/account/login")
    log_in(page, email)

    page.get_by_label("Your name on the wall").fill(name)
    page.get_by_label("Show my tier next to my name").check()
    page.get_by_role("button", name="Put my name on the wall").click()
    expect(page.get_by_text("Thank you! Your name is on the supporters wall.")).to_be_visible()

    page.goto("/supporters")
    expect(page.get_by_role("listitem").filter(has_text=name)).to_contain_text("(Insider)")

    page.goto("/membership")
    page.get_by_role("button", name="Take my name off the wall").click()
    expect(page.get_by_text("Your name is off the supporters wall.")).to_be_visible()
    page.goto("/supporters")
    expect(page.get_by_text(name)).to_have_count(0)
