"""Staff find a patron, comp them and refund their payment, through the pages."""

from __future__ import annotations

from datetime import timedelta

import pytest
from playwright.sync_api import BrowserContext, Page, expect

from membership.database import utcnow
from tests.browser.conftest import LiveServer, become_patron, log_in, unique_email


@pytest.mark.browser
def test_staff_search_a_patron_comp_them_and_refund_part_of_their_payment(
    page: Page, context: BrowserContext, live_server: LiveServer, stripe_catalog: None
) -> None:
    patron = unique_email("patron")
    live_server.add_member(patron, display_name="Petra Patron")
    become_patron(page, patron)
    page.get_by_role("navigation", name="Main").get_by_role("button", name="Log out").click()
    expect(page.get_by_role("button", name="Log out")).to_have_count(0)

    staff = unique_email("staff")
    live_server.add_staff(staff)
    page.goto("/account/login")
    log_in(page, staff)
    page.goto("/staff/")
    page.get_by_role("link", name="Members", exact=True).click()
    page.get_by_label("Email or name").fill(patron.split("@")[0].upper())
    page.get_by_role("button", name="Search").click()
    expect(page.get_by_text("1 member found.")).to_be_visible()
    page.get_by_role("link", name="Petra Patron").click()
    expect(page.get_by_role("heading", name="Petra Patron", level=1)).to_be_visible()
    expect(page.locator("#membership-state")).to_have_text("active")

    # A refund larger than the payment is refused, and nothing reaches Stripe.
    page.get_by_label("Amount to refund").fill("50")
    page.get_by_role("button", name="Refund €5 payment").click()
    expect(page.get_by_text("At most €5 is left to refund.")).to_be_visible()
    page.get_by_label("Amount to refund").fill("2")
    page.get_by_role("button", name="Refund €5 payment").click()
    expect(page.get_by_text("Refund made.")).to_be_visible()
    expect(page.get_by_role("cell", name="€2").first).to_be_visible()
    expect(page.get_by_label("Amount to refund")).to_have_value("3")

    page.get_by_label("Tier").select_option(label="Insider")
    page.get_by_label("Comped until (included)").fill(
        (utcnow().date() + timedelta(days=60)).isoformat()
    )
    page.get_by_label("Reason").fill("Helped with the flood investigation")
    page.get_by_role("button", name="Grant comp").click()
    expect(page.get_by_text("Comp granted.")).to_be_visible()
    expect(page.get_by_role("cell", name="Helped with the flood investigation")).to_be_visible()
    # A paid membership wins over a comp: the patron stays active.
    expect(page.locator("#membership-state")).to_have_text("active")

    page.goto("/staff/audit")
    expect(page.get_by_role("cell", name="payment.refund")).to_be_visible()
    expect(page.get_by_role("cell", name="comp.grant")).to_be_visible()
