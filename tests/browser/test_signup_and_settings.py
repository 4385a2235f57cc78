"""A new reader's first visit: signing up, confirming the address, settings, logging out."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import LiveServer, link_from_email, log_in, screenshot, unique_email
from tests.conftest import PASSWORD, Mailbox


def fill_signup_form(page: Page, *, name: str, email: str, password: str) -> None:
    page.get_by_label("Your name").fill(name)
    page.get_by_label("Email address").fill(email)
    page.get_by_label("Password", exact=True).fill(password)
    page.get_by_role("button", name="Create account").click()


@pytest.mark.browser
def test_a_new_reader_signs_up_confirms_logs_in_renames_and_logs_out(
    page: Page, live_server: LiveServer, mailbox: Mailbox
) -> None:
    email = unique_email("new-reader")
    page.goto("/")
    page.get_by_role("link", name="Create account").click()
    expect(page).to_have_title("Create your account · Test Newsroom")
    expect(page.get_by_role("heading", name="Create your account")).to_be_visible()

    fill_signup_form(page, name="Ada Reader", email=email, password=PASSWORD)
    expect(page).to_have_url(f"{live_server.url}/account/check-email")
    expect(page.get_by_role("heading", name="Check your inbox")).to_be_visible()

    # The link in the email shows a page with a button; only the button confirms.
    page.goto(link_from_email(mailbox, email, live_server, "/account/confirm/"))
    expect(page.get_by_text(f"Confirm {email} as the address for your account.")).to_be_visible()
    page.get_by_role("button", name="Confirm my email address").click()
    expect(page).to_have_url(f"{live_server.url}/account/login")
    expect(page.get_by_text("Thank you, your email address is confirmed.")).to_be_visible()

    log_in(page, email)
    expect(page).to_have_url(f"{live_server.url}/membership")
    expect(page).to_have_title("My membership · Test Newsroom")
    expect(page.get_by_role("heading", name="My membership", level=1)).to_be_visible()
    expect(page.get_by_text("Welcome back, Ada Reader.")).to_be_visible()
    expect(page.get_by_role("heading", name="You are not a patron yet")).to_be_visible()

    page.get_by_role("link", name="Account settings").click()
    expect(page).to_have_title("Account settings · Test Newsroom")
    email_card = page.locator("section", has=page.get_by_role("heading", name="Email address"))
    expect(email_card).to_contain_text(f"Now: {email} (confirmed)")
    expect(page.get_by_text("Please confirm your email address")).to_have_count(0)
    screenshot(page, "my-membership")

    name_card = page.locator("section", has=page.get_by_role("heading", name="Name", exact=True))
    name_card.get_by_label("Your name").fill("Ada L. Reader")
    name_card.get_by_role("button", name="Save name").click()
    expect(page.get_by_text("Your name is saved.")).to_be_visible()
    page.reload()
    expect(page.get_by_label("Your name")).to_have_value("Ada L. Reader")

    nav = page.get_by_role("navigation", name="Main")
    nav.get_by_role("button", name="Log out").click()
    expect(page).to_have_url(f"{live_server.url}/")
    expect(page.get_by_text("You are logged out.")).to_be_visible()
    expect(nav.get_by_role("link", name="My membership")).to_have_count(0)
    expect(nav.get_by_role("link", name="Log in")).to_be_visible()

    # Logged out for real: the settings page now asks to log in again.
    page.goto("/account/")
    expect(page).to_have_url(re.compile(r"/account/login\?next="))
    expect(page.get_by_text("Please log in to see that page.")).to_be_visible()


@pytest.mark.browser
def test_signup_mistakes_are_shown_next_to_their_fields_and_the_name_is_kept(
    page: Page, live_server: LiveServer, mailbox: Mailbox
) -> None:
    page.goto("/account/signup")
    fill_signup_form(page, name="Grace Typo", email="grace-at-example", password="short")

    expect(page.get_by_role("heading", name="Create your account")).to_be_visible()
    expect(page).to_have_url(f"{live_server.url}/account/signup")

    email_field = page.get_by_label("Email address")
    password_field = page.get_by_label("Password", exact=True)
    # Next to the field, and read out with it by screen readers (aria-describedby).
    expect(page.locator(".field", has=email_field)).to_contain_text("Enter a valid email address.")
    expect(email_field).to_have_accessible_description(re.compile(r"Enter a valid email address\."))
    expect(email_field).to_have_attribute("aria-invalid", "true")
    expect(page.locator(".field", has=password_field)).to_contain_text("Use at least 8 characters.")
    expect(password_field).to_have_accessible_description(
        re.compile(r"Use at least 8 characters\.")
    )

    expect(page.get_by_label("Your name")).to_have_value("Grace Typo")
    expect(email_field).to_have_value("grace-at-example")
    expect(password_field).to_have_value("")  # a password is never sent back in the page
    screenshot(page, "signup-with-errors")
    assert mailbox.messages == []
