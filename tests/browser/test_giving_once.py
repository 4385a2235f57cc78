"""Giving once: with or without an account, a card, thanks, and one receipt by email."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import (
    CARD_CHARGES_DECLINED,
    CARD_OK,
    LiveServer,
    card_message,
    enter_card,
    log_in,
    unique_email,
    wait_until,
)
from tests.conftest import Mailbox

pytestmark = pytest.mark.usefixtures("stripe_catalog")


def receipts_to(mailbox: Mailbox, address: str) -> list[str]:
    return [m["Subject"] for m in mailbox.to(address)]


@pytest.mark.browser
def test_a_reader_without_an_account_gives_15_euros_and_gets_one_receipt(
    page: Page, live_server: LiveServer, mailbox: Mailbox
) -> None:
    email = unique_email("giver")
    page.goto("/support")
    page.get_by_role("link", name="Give once").click()
    expect(page).to_have_title("Give once · Test Newsroom")
    page.get_by_label("Amount").fill("15")
    expect(page.get_by_label("Currency")).to_have_value("EUR")
    page.get_by_label("Email address, for your receipt").fill(email)
    page.get_by_role("button", name="Continue to payment").click()

    expect(page.get_by_role("heading", name="Your gift of €15")).to_be_visible()
    card_page = page.url
    enter_card(page, CARD_OK)
    page.get_by_role("button", name="Give €15").click()

    expect(page).to_have_url(re.compile(r"/support/give/[^/]+/thanks$"))
    expect(page.get_by_role("heading", name="Thank you for your gift")).to_be_visible()
    expect(page.locator("main")).to_contain_text("We received €15.")

    [gift] = live_server.payments(email=email)
    assert (gift.kind, gift.status, gift.amount, gift.currency) == (
        "donation",
        "succeeded",
        1500,
        "EUR",
    )
    assert gift.stripe_payment_intent_id
    wait_until(lambda: mailbox.to(email), 5, "no receipt email")
    # localstripe's payment_intent.succeeded arrives about a second later: still one receipt.
    live_server.wait_for_webhook("payment_intent.succeeded", gift.stripe_payment_intent_id)
    assert receipts_to(mailbox, email) == ["Thank you for your gift: your receipt"]
    assert "€15" in Mailbox.text(mailbox.last_to(email))

    # Coming back to the card page after paying shows the thanks, not a second charge.
    page.goto(card_page)
    expect(page.get_by_role("heading", name="Thank you for your gift")).to_be_visible()
    assert len(live_server.payments(email=email)) == 1


@pytest.mark.browser
def test_a_reader_with_an_account_gives_in_pounds_and_sees_the_gift_among_their_payments(
    page: Page, live_server: LiveServer, mailbox: Mailbox
) -> None:
    email = unique_email("account-giver")
    live_server.add_member(email, display_name="Gita Giver")
    page.goto("/account/login")
    log_in(page, email)
    expect(page.get_by_role("heading", name="My membership", level=1)).to_be_visible()
    expect(page.get_by_text("No payments yet.")).to_be_visible()

    page.goto("/support/give")
    expect(page.get_by_label("Email address, for your receipt")).to_have_count(0)
    page.get_by_label("Amount").fill("7.50")
    page.get_by_label("Currency").select_option("GBP")
    page.get_by_role("button", name="Continue to payment").click()
    expect(page.get_by_role("heading", name="Your gift of £7.50")).to_be_visible()
    enter_card(page, CARD_OK)
    page.get_by_role("button", name="Give £7.50").click()
    expect(page.get_by_role("heading", name="Thank you for your gift")).to_be_visible()

    page.get_by_role("navigation", name="Main").get_by_role("link", name="My membership").click()
    payments = page.get_by_role("table", name="Your payments")
    rows = payments.locator("tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.first.locator("td")).to_have_text(
        [re.compile(r"\d\d \w{3} \d{4}"), "Gift", "£7.50", "Paid", "Receipt"]
    )
    rows.first.get_by_role("link", name="Receipt").click()
    expect(page.get_by_role("heading", name="Receipt")).to_be_visible()
    expect(page.locator("main")).to_contain_text("A gift")
    expect(page.locator("main")).to_contain_text("£7.50")

    wait_until(lambda: mailbox.to(email), 5, "no receipt email")
    assert receipts_to(mailbox, email) == ["Thank you for your gift: your receipt"]
    # Giving once does not make anyone a patron.
    assert live_server.subscriptions(email) == []


@pytest.mark.browser
def test_a_declined_gift_says_why_and_sends_no_receipt(
    page: Page, live_server: LiveServer, mailbox: Mailbox
) -> None:
    email = unique_email("declined-giver")
    page.goto("/support/give")
    page.get_by_label("Amount").fill("20")
    page.get_by_label("Email address, for your receipt").fill(email)
    page.get_by_role("button", name="Continue to payment").click()
    enter_card(page, CARD_CHARGES_DECLINED)
    page.get_by_role("button", name="Give €20").click()

    expect(card_message(page)).to_have_text("Your card was declined.")
    expect(page.get_by_role("heading", name="Your gift of €20")).to_be_visible()
    [gift] = live_server.payments(email=email)
    assert gift.status != "succeeded"
    assert mailbox.to(email) == []
