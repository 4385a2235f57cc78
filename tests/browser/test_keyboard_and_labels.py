"""Keyboard and screen-reader basics: labelled inputs and a skip link that comes first."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

UNLABELLED_INPUTS = """() =>
  [...document.querySelectorAll("input, select, textarea")]
    .filter((el) => el.type !== "hidden")
    .filter((el) => !el.labels || el.labels.length === 0)
    .map((el) => el.outerHTML)
"""


@pytest.mark.browser
@pytest.mark.parametrize("path", ["/account/signup", "/account/login", "/account/reset"])
def test_every_visible_input_has_a_label(page: Page, path: str) -> None:
    page.goto(path)
    assert page.evaluate(UNLABELLED_INPUTS) == []


@pytest.mark.browser
def test_the_signup_fields_are_found_by_their_labels(page: Page) -> None:
    page.goto("/account/signup")
    for label in ("Your name", "Email address", "Password"):
        expect(page.get_by_label(label, exact=True)).to_be_editable()


@pytest.mark.browser
def test_the_first_tab_on_the_signup_page_lands_on_skip_to_content(page: Page) -> None:
    page.goto("/account/signup")
    page.keyboard.press("Tab")
    skip = page.get_by_role("link", name="Skip to content")
    expect(skip).to_be_focused()
    expect(skip).to_be_in_viewport()  # hidden off-screen until focused, then shown

    # Following it moves the keyboard past the menu: the next Tab reaches the first field.
    page.keyboard.press("Enter")
    page.keyboard.press("Tab")
    expect(page.get_by_label("Your name")).to_be_focused()
