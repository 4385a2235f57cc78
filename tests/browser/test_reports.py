"""Staff read the numbers: charts drawn on the server, with text alternatives and CSV."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import LiveServer, become_patron, log_in, unique_email


@pytest.mark.browser
def test_staff_see_the_report_charts_change_the_range_and_download_a_table(
    page: Page, live_server: LiveServer, stripe_catalog: None
) -> None:
    patron = unique_email("patron")
    live_server.add_member(patron, display_name="Rita Reports")
    become_patron(page, patron)
    page.get_by_role("navigation", name="Main").get_by_role("button", name="Log out").click()
    expect(page.get_by_role("button", name="Log out")).to_have_count(0)

    staff = unique_email("staff")
    live_server.add_staff(staff)
    page.goto("/account/login")
    log_in(page, staff)
    page.goto("/staff/")
    page.get_by_role("link", name="Reports").first.click()
    expect(page.get_by_role("heading", name="Reports", level=1)).to_be_visible()

    charts = page.locator("svg.chart[role=img]")
    expect(charts.first).to_be_visible()
    assert charts.count() >= 6, "one chart per report"
    titles = charts.locator("title").all_text_contents()
    assert any("patrons" in title.lower() for title in titles)
    assert all(chart.get_attribute("aria-labelledby") for chart in charts.all())

    # A range that ends before it starts is refused with a message, on the page.
    page.get_by_role("textbox", name="From").fill("2026-06-01")
    page.get_by_role("textbox", name="To").fill("2026-01-01")
    page.get_by_role("button", name="Show").click()
    expect(page.get_by_role("alert")).to_be_visible()
    expect(page.locator("svg.chart")).to_have_count(0)

    page.get_by_role("textbox", name="From").fill("2026-01-01")
    page.get_by_role("textbox", name="To").fill("2026-12-31")
    page.get_by_role("button", name="Show").click()
    expect(page.locator("svg.chart").first).to_be_visible()
    with page.expect_download() as download:
        page.get_by_role("link", name="Download as CSV").first.click()
    assert download.value.suggested_filename.endswith(".csv")
