"""A patron manages their membership on My membership: cancelling, then keeping it; a refusal."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Locator, Page, expect

from tests.browser.conftest import LiveServer, become_patron, unique_email

pytestmark = pytest.mark.usefixtures("stripe_catalog")


def fact(page: Page, term: str) -> Locator:
    """The value next to ``term`` in the membership summary (a <dt>/<dd> list)."""
    summary = page.locator("section.membership-status dl.facts")
    name = summary.locator("dt", has_text=re.compile(rf"^{re.escape(term)}$"))
    return name.locator("xpath=following-sibling::dd[1]")


@pytest.mark.browser
def test_a_patron_cancels_with_a_reason_then_keeps_their_membership(
    page: Page, live_server: LiveServer
) -> None:
    email = unique_email("canceller")
    live_server.add_member(email)
    become_patron(page, email, tier="Reader")
    status = page.locator("section.membership-status")
    state = fact(page, "Status")
    expect(state).to_have_text("Active")
    [before] = live_server.subscriptions(email)
    assert before.current_period_end is not None
    period_end = before.current_period_end.strftime("%d %B %Y")
    expect(fact(page, "Next payment")).to_have_text(f"€5 on {period_end}")

    page.get_by_label("Would you tell us why? (optional)").fill("Saving up for a bicycle")
    page.get_by_role("button", name="Cancel my membership").click()

    expect(
        page.get_by_text("Your membership will end at the end of the period you have paid for.")
    ).to_be_visible()
    expect(state).to_have_text(f"Ends on {period_end}")
    expect(status.get_by_role("heading", name="Reader patron")).to_be_visible()
    expect(fact(page, "Next payment")).to_have_count(0)
    expect(page.get_by_role("heading", name="Changed your mind?")).to_be_visible()
    expect(page.get_by_role("button", name="Cancel my membership")).to_have_count(0)
    expect(page.get_by_role("heading", name="Change tier or period")).to_have_count(0)
    [cancelled] = live_server.subscriptions(email)
    assert cancelled.live and cancelled.cancel_at_period_end
    assert cancelled.cancel_reason == "Saving up for a bicycle"

    page.reload()  # the page says the same after a fresh load (no flash)
    expect(state).to_have_text(f"Ends on {period_end}")

    page.get_by_role("button", name="Keep my membership").click()
    expect(page.get_by_text("Your membership will go on. Thank you!")).to_be_visible()
    expect(state).to_have_text("Active")
    expect(fact(page, "Next payment")).to_have_text(f"€5 on {period_end}")
    expect(page.get_by_role("button", name="Keep my membership")).to_have_count(0)
    expect(page.get_by_role("button", name="Cancel my membership")).to_be_visible()
    [kept] = live_server.subscriptions(email)
    assert kept.live and not kept.cancel_at_period_end
    assert kept.cancel_reason is None
    assert kept.status == "active"


@pytest.mark.browser
def test_when_stripe_refuses_a_pause_the_patron_is_told_and_nothing_changes(
    page: Page, live_server: LiveServer
) -> None:
    """localstripe has no ``pause_collection`` (it answers 500), like Stripe having an outage."""
    email = unique_email("pauser")
    live_server.add_member(email)
    become_patron(page, email, tier="Insider")

    page.get_by_label("Pause for").select_option(label="2 months")
    page.get_by_role("button", name="Pause payments").click()
    expect(page.get_by_role("alert")).to_have_text(
        "The payment service is unavailable right now. Nothing changed; try again soon."
    )
    expect(fact(page, "Status")).to_have_text("Active")
    expect(page.get_by_role("button", name="Pause payments")).to_be_visible()
    [subscription] = live_server.subscriptions(email)
    assert (subscription.status, subscription.live) == ("active", True)
