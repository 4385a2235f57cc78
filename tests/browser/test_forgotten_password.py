"""A reader who forgot their password gets a link by email that works exactly once."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import LiveServer, link_from_email, log_in, unique_email
from tests.conftest import PASSWORD, Mailbox

NEW_PASSWORD = "a fresh passphrase for the browser"


@pytest.mark.browser
def test_a_reader_resets_a_forgotten_password_and_the_link_then_stops_working(
    page: Page, live_server: LiveServer, mailbox: Mailbox
) -> None:
    email = unique_email("forgetful")
    live_server.add_member(email, display_name="Forgetful Reader")

    page.goto("/account/login")
    page.get_by_role("link", name="Forgot your password?").click()
    expect(page.get_by_role("heading", name="Forgot your password?")).to_be_visible()
    page.get_by_label("Email address").fill(email)
    page.get_by_role("button", name="Send me a reset link").click()
    expect(page).to_have_url(f"{live_server.url}/account/reset/sent")
    expect(page.get_by_role("heading", name="Check your inbox")).to_be_visible()

    reset_link = link_from_email(mailbox, email, live_server, "/account/reset/")
    page.goto(reset_link)
    expect(page.get_by_role("heading", name="Choose a new password")).to_be_visible()
    page.get_by_label("New password").fill(NEW_PASSWORD)
    page.get_by_role("button", name="Save new password").click()
    expect(page).to_have_url(f"{live_server.url}/account/login")
    expect(
        page.get_by_text("Your password is changed. Log in with your new password.")
    ).to_be_visible()

    log_in(page, email, PASSWORD)
    expect(page.get_by_text("That email and password do not match an account.")).to_be_visible()
    log_in(page, email, NEW_PASSWORD)
    expect(page.get_by_role("heading", name="My membership")).to_be_visible()
    expect(page.get_by_text("Welcome back, Forgetful Reader.")).to_be_visible()

    response = page.goto(reset_link)
    assert response is not None and response.status == 400
    expect(page.get_by_role("heading", name="This link does not work")).to_be_visible()
    expect(page.get_by_text("already been used")).to_be_visible()
    expect(page.get_by_role("link", name="Send me a new reset link")).to_be_visible()
