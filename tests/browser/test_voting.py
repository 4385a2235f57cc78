"""Voting in a real browser: a patron proposes, staff approve, the patron votes and moves a vote,
a reader who is not a patron is sent to the support page, and the results show at close."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from playwright.sync_api import Browser, Page, expect
from sqlalchemy import select

from membership.accounts.models import Member
from membership.billing.models import Tier
from membership.database import utcnow
from membership.extensions import db
from membership.perks.models import Grant, Perk, PerkKind, TierPerk
from membership.voting.models import Round, Topic, TopicStatus
from tests.browser.conftest import LiveServer, log_in, unique_email
from tests.voting_fixtures import subscribe


def make_patron(server: LiveServer, email: str) -> None:
    """A Reader patron (3 votes a round), as if they had joined earlier."""
    server.add_member(email)
    with server.app.app_context():
        reader = db.session.scalar(select(Tier).where(Tier.slug == "reader"))
        perk = db.session.scalar(select(Perk).where(Perk.kind == PerkKind.VOTES))
        if perk is None:
            perk = Perk(key="votes", name="Votes", kind=PerkKind.VOTES, votes=3)
            db.session.add(perk)
            db.session.flush()
        granted = db.session.scalar(
            select(TierPerk).where(TierPerk.tier_id == reader.id, TierPerk.perk_id == perk.id)
        )
        if granted is None:
            db.session.add(TierPerk(tier_id=reader.id, perk_id=perk.id, grant=Grant.GRANT))
        member = db.session.scalar(select(Member).where(Member.email == email))
        subscribe(db.session, member, reader)


def open_round(server: LiveServer, title: str, topics: list[str]) -> int:
    with server.app.app_context():
        round_ = Round(
            title=title,
            opens_at=utcnow() - timedelta(hours=1),
            closes_at=utcnow() + timedelta(days=7),
            results_live=False,
        )
        db.session.add(round_)
        db.session.flush()
        for name in topics:
            db.session.add(Topic(round_id=round_.id, title=name, status=TopicStatus.APPROVED))
        db.session.commit()
        return round_.id


def logged_in_page(browser: Browser, server: LiveServer, email: str) -> Page:
    context = browser.new_context(base_url=server.url)
    context.set_default_timeout(5_000)
    page = context.new_page()
    page.goto("/account/login")
    log_in(page, email)
    expect(page.get_by_role("heading", name="My membership", level=1)).to_be_visible()
    return page


@pytest.mark.browser
def test_a_patron_proposes_staff_approve_the_patron_votes_moves_a_vote_and_sees_the_results(
    page: Page, browser: Browser, live_server: LiveServer
) -> None:
    tag = uuid.uuid4().hex[:6]
    title = f"Winter round {tag}"
    round_id = open_round(live_server, title, [f"Trains {tag}", f"Bridges {tag}", f"Parks {tag}"])
    patron_email, staff_email = unique_email("patron"), unique_email("staff")
    make_patron(live_server, patron_email)
    live_server.add_staff(staff_email)

    page.goto("/account/login")
    log_in(page, patron_email)
    expect(page.get_by_role("heading", name="My membership", level=1)).to_be_visible()
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Vote").click()
    section = page.get_by_role("region", name=title)
    expect(section.get_by_text("You have 3 of 3 votes left in this round.")).to_be_visible()
    proposal = f"Night trams <b>{tag}</b>"
    section.get_by_label("Topic", exact=True).fill(proposal)
    section.get_by_label("Why it matters").fill("The last tram leaves at 11.")
    section.get_by_role("button", name="Propose this topic").click()
    expect(page.get_by_text("Your topic is waiting for moderation")).to_be_visible()

    staff = logged_in_page(browser, live_server, staff_email)
    staff.goto("/staff/voting")
    staff.get_by_role("link", name=title).click()
    staff.get_by_role("button", name=f"Approve “{proposal}”").click()
    expect(staff.get_by_text("Approved: the topic is on the ballot.")).to_be_visible()

    page.reload()
    section = page.get_by_role("region", name=title)
    for name in (proposal, f"Trains {tag}", f"Bridges {tag}"):
        section.get_by_role("button", name=f"Vote for “{name}”").click()
        expect(page.get_by_text("Your vote is in.")).to_be_visible()
    section = page.get_by_role("region", name=title)
    expect(section.get_by_text("You have 0 of 3 votes left in this round.")).to_be_visible()
    expect(section.get_by_text("No votes left: take one back to vote for this.")).to_be_visible()

    section.get_by_role("button", name=f"Take back my vote for “Bridges {tag}”").click()
    expect(page.get_by_text("You took back your vote")).to_be_visible()
    section = page.get_by_role("region", name=title)
    section.get_by_role("button", name=f"Vote for “Parks {tag}”").click()
    section = page.get_by_role("region", name=title)
    expect(section.get_by_text("You voted for this.")).to_have_count(3)
    expect(section.get_by_role("button", name=f"Vote for “Bridges {tag}”")).to_have_count(0)
    expect(section.get_by_text("Results are shown when the round closes.")).to_be_visible()

    staff.reload()
    staff.get_by_role("button", name="Close this round now").click()
    expect(staff.get_by_text("The round is closed and its results are final.")).to_be_visible()

    page.goto(f"/vote/rounds/{round_id}")
    expect(page.get_by_text("This round has closed.")).to_be_visible()
    topics = page.locator("li.topic")
    expect(topics).to_have_count(4)
    expect(topics.filter(has_text=f"Bridges {tag}")).to_contain_text("0 votes")
    expect(topics.filter(has_text=f"Parks {tag}")).to_contain_text("1 vote")
    expect(topics.filter(has_text="Night trams")).to_contain_text("Winner")
    expect(page.get_by_role("button", name="Vote", exact=False)).to_have_count(0)
    staff.context.close()


@pytest.mark.browser
def test_a_reader_who_is_not_a_patron_is_sent_to_the_support_page_to_vote(
    page: Page, live_server: LiveServer
) -> None:
    tag = uuid.uuid4().hex[:6]
    title = f"Spring round {tag}"
    open_round(live_server, title, [f"Housing {tag}"])
    email = unique_email("reader")
    live_server.add_member(email)
    page.goto("/account/login")
    log_in(page, email)
    expect(page.get_by_role("heading", name="My membership", level=1)).to_be_visible()
    page.goto("/vote")
    section = page.get_by_role("region", name=title)
    expect(section.get_by_text(f"Housing {tag}")).to_be_visible()
    expect(section.get_by_role("button", name=f"Vote for “Housing {tag}”")).to_have_count(0)
    expect(section.get_by_label("Topic", exact=True)).to_have_count(0)
    page.get_by_role("link", name="Become a patron to vote").click()
    expect(page).to_have_url(f"{live_server.url}/support")
