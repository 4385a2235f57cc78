"""Who gets into the staff area: staff do, readers are told it is not for them."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import LiveServer, log_in, unique_email


@pytest.mark.browser
def test_a_reader_who_opens_the_staff_area_is_told_it_is_not_for_them(
    page: Page, live_server: LiveServer
) -> None:
    email = unique_email("reader")
    live_server.add_member(email)
    page.goto("/account/login")
    log_in(page, email)
    expect(page.get_by_role("heading", name="My membership")).to_be_visible()
    nav = page.get_by_role("navigation", name="Main")
    expect(nav.get_by_role("link", name="Staff", exact=True)).to_have_count(0)

    response = page.goto("/staff/")
    assert response is not None and response.status == 403
    expect(page.get_by_role("heading", name="This page is not for you")).to_be_visible()
    expect(page.get_by_text("Your account does not give access to this page.")).to_be_visible()
    expect(page.get_by_role("heading", name="Staff area")).to_have_count(0)


@pytest.mark.browser
def test_a_staff_member_finds_the_staff_area_in_the_menu(
    page: Page, live_server: LiveServer
) -> None:
    email = unique_email("staff")
    live_server.add_staff(email)
    page.goto("/account/login")
    log_in(page, email)

    page.get_by_role("navigation", name="Main").get_by_role("link", name="Staff").click()
    expect(page).to_have_url(f"{live_server.url}/staff/")
    expect(page.get_by_role("heading", name="Staff area")).to_be_visible()
    expect(page.get_by_text("(staff)")).to_be_visible()


@pytest.mark.browser
def test_a_visitor_is_asked_to_log_in_and_then_taken_back_to_the_staff_area(
    page: Page, live_server: LiveServer
) -> None:
    email = unique_email("staff")
    live_server.add_staff(email)

    page.goto("/staff/")
    expect(page).to_have_url(f"{live_server.url}/account/login?next=/staff/")
    expect(page.get_by_role("heading", name="Log in")).to_be_visible()
    expect(page.get_by_text("Please log in to see that page.")).to_be_visible()

    log_in(page, email)
    expect(page).to_have_url(f"{live_server.url}/staff/")
    expect(page.get_by_role("heading", name="Staff area")).to_be_visible()
