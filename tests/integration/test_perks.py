"""Staff choose each tier's perks; patrons see theirs, and how to use them, on My membership."""

from __future__ import annotations

import html
import re

import pytest
from sqlalchemy import func, select

from membership.accounts.models import Role
from membership.perks import demo
from membership.perks.models import Grant, Perk, PerkKind, Post, TierPerk
from membership.perks.service import perks_for
from tests.integration.perks_support import (
    add_demo_perks,
    add_demo_tiers,
    lapse,
    make_patron,
)

PERK_FORM = {
    "key": "community",
    "name": "Community invite",
    "description": "Join the patrons' chat.",
    "kind": "reveal",
    "votes": "",
    "reveal": "https://chat.example.org/invite/abc",
    "active": "y",
}


@pytest.fixture
def tiers(db_session):
    return add_demo_tiers(db_session)


@pytest.fixture
def staff_client(client, make_member, login):
    login(make_member("editor@example.org", role=Role.STAFF))
    return client


def save(client, url, data):
    return client.submit(url, data, token_page="/staff/perks/new")


def error_next_to(page: str, field: str) -> str:
    """The error message shown under a field (empty if none)."""
    match = re.search(rf'<p class="error" id="{field}-error">([^<]*)</p>', page)
    return html.unescape(match.group(1)) if match else ""


def perk_count(db_session) -> int:
    return db_session.scalar(select(func.count()).select_from(Perk))


# --- staff manage perks -------------------------------------------------------------------------


def test_staff_create_a_perk_and_then_choose_its_tiers(staff_client, db_session, tiers):
    created = save(staff_client, "/staff/perks/new", PERK_FORM)
    assert created.status_code == 302, created.get_data(as_text=True)
    perk = db_session.scalar(select(Perk).where(Perk.key == "community"))
    assert perk.kind is PerkKind.REVEAL and perk.reveal == "https://chat.example.org/invite/abc"
    assert created.headers["Location"] == f"/staff/perks/{perk.id}/tiers"

    decided = save(
        staff_client,
        f"/staff/perks/{perk.id}/tiers",
        {f"grant_{tiers['insider'].id}": "grant", f"grant_{tiers['co-creator'].id}": "withhold"},
    )
    assert decided.status_code == 302, decided.get_data(as_text=True)
    page = staff_client.get("/staff/perks").get_data(as_text=True)
    row = re.search(r'<th scope="row"><a [^>]*>Community invite.*?</tr>', page, re.S).group(0)
    cells = re.findall(r"<td>(.*?)</td>", row, re.S)
    assert [c.strip() for c in cells[1:4]] == ["—", "Yes", "—"], "Reader no, Insider yes, Co no"


def test_staff_edit_a_perk_and_the_key_stays_what_the_api_reports(staff_client, db_session, tiers):
    add_demo_perks(db_session)
    perk = db_session.scalar(select(Perk).where(Perk.key == "ad_free"))
    form = {**PERK_FORM, "key": "renamed", "kind": "flag", "name": "No ads", "reveal": ""}
    response = save(staff_client, f"/staff/perks/{perk.id}", form)
    assert response.status_code == 302
    db_session.expire_all()
    assert perk.name == "No ads" and perk.key == "ad_free"


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        ({"name": ""}, "name", "Give the perk a name."),
        ({"name": "x" * 81}, "name", "Use at most 80 characters."),
        ({"key": ""}, "key", "Use lower-case letters"),
        ({"key": "Ad Free!"}, "key", "Use lower-case letters"),
        ({"key": "x" * 41}, "key", "Use at most 40 characters."),
        ({"kind": "superpower"}, "kind", "Not a valid choice"),
        ({"kind": "votes", "votes": "-1"}, "votes", "Enter a number from 0 to 100."),
        ({"kind": "votes", "votes": "lots"}, "votes", "Not a valid integer"),
        ({"kind": "reveal", "reveal": ""}, "reveal", "Enter the code or link"),
        ({"reveal": "x" * 501}, "reveal", "Use at most 500 characters."),
    ],
)
def test_a_perk_with_bad_input_is_refused_with_the_reason_next_to_the_field(
    staff_client, db_session, change, field, message
):
    response = save(staff_client, "/staff/perks/new", {**PERK_FORM, **change})
    assert response.status_code == 400
    assert message in error_next_to(response.get_data(as_text=True), field)
    assert perk_count(db_session) == 0


def test_a_second_perk_with_the_same_key_is_refused(staff_client, db_session, tiers):
    add_demo_perks(db_session)
    before = perk_count(db_session)
    response = save(staff_client, "/staff/perks/new", {**PERK_FORM, "key": "ad_free"})
    assert response.status_code == 400
    assert "already uses that key" in error_next_to(response.get_data(as_text=True), "key")
    assert perk_count(db_session) == before


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"grant": "withhold", "votes": "4"}, "Votes can only be set where this tier grants"),
        ({"grant": "", "votes": "4"}, "Votes can only be set where this tier grants"),
        ({"grant": "grant", "votes": "-3"}, "Enter a number from 0 to 100."),
        ({"grant": "maybe", "votes": ""}, "Not a valid choice"),
    ],
)
def test_bad_tier_decisions_are_refused_and_nothing_changes(
    staff_client, db_session, tiers, data, message
):
    add_demo_perks(db_session)
    perk = db_session.scalar(select(Perk).where(Perk.key == "votes"))
    before = {(r.tier_id, r.grant, r.votes) for r in db_session.scalars(select(TierPerk))}
    tier_id = tiers["insider"].id
    response = save(
        staff_client,
        f"/staff/perks/{perk.id}/tiers",
        {f"grant_{tier_id}": data["grant"], f"votes_{tier_id}": data["votes"]},
    )
    assert response.status_code == 400
    assert message in response.get_data(as_text=True)
    db_session.expire_all()
    assert {(r.tier_id, r.grant, r.votes) for r in db_session.scalars(select(TierPerk))} == before


def test_staff_set_votes_per_tier_and_patrons_get_that_many(
    app, staff_client, db_session, tiers, make_member
):
    add_demo_perks(db_session)
    perk = db_session.scalar(select(Perk).where(Perk.key == "votes"))
    ids = {slug: tier.id for slug, tier in tiers.items()}
    response = save(
        staff_client,
        f"/staff/perks/{perk.id}/tiers",
        {
            f"grant_{ids['reader']}": "grant",
            f"votes_{ids['reader']}": "2",
            f"grant_{ids['insider']}": "",
            f"grant_{ids['co-creator']}": "grant",
            f"votes_{ids['co-creator']}": "9",
        },
    )
    assert response.status_code == 302, response.get_data(as_text=True)
    insider = make_member()
    make_patron(db_session, insider, tiers["insider"])
    cocreator = make_member()
    make_patron(db_session, cocreator, tiers["co-creator"])
    with app.app_context():
        assert perks_for(db_session, insider).votes_per_round == 2  # as the tier below
        assert perks_for(db_session, cocreator).votes_per_round == 9


def test_a_perk_that_does_not_exist_is_a_404(staff_client, tiers):
    assert staff_client.get("/staff/perks/987654").status_code == 404
    assert staff_client.get("/staff/perks/987654/tiers").status_code == 404


def test_readers_cannot_manage_perks_even_with_a_valid_form(
    client, db_session, make_member, login, tiers
):
    add_demo_perks(db_session)
    perk = db_session.scalar(select(Perk).where(Perk.key == "ad_free"))
    login(make_member())
    before = perk_count(db_session)
    assert client.get("/staff/perks").status_code == 403
    token = client.csrf_token("/account/")
    assert (
        client.post("/staff/perks/new", data={**PERK_FORM, "csrf_token": token}).status_code == 403
    )
    edit = client.post(
        f"/staff/perks/{perk.id}/tiers",
        data={f"grant_{tiers['reader'].id}": "grant", "csrf_token": token},
    )
    assert edit.status_code == 403
    assert perk_count(db_session) == before
    assert (
        db_session.scalar(
            select(TierPerk).where(
                TierPerk.perk_id == perk.id, TierPerk.tier_id == tiers["reader"].id
            )
        )
        is None
    )


def test_the_staff_area_links_to_perks_and_updates(staff_client):
    page = staff_client.get("/staff/").get_data(as_text=True)
    assert 'href="/staff/perks"' in page and 'href="/staff/posts"' in page


# --- the demo ----------------------------------------------------------------------------------


def test_the_demo_perks_can_be_seeded_twice_without_doubling(app, db_session, tiers, make_member):
    add_demo_perks(db_session)
    add_demo_perks(db_session)
    assert perk_count(db_session) == len(demo.DEMO_PERKS)
    assert db_session.scalar(select(func.count()).select_from(Post)) == 2
    assert db_session.scalar(select(func.count()).select_from(TierPerk)) == 8
    votes = {}
    for slug, tier in tiers.items():
        member = make_member()
        make_patron(db_session, member, tier)
        with app.app_context():
            mine = perks_for(db_session, member)
        votes[slug] = mine.votes_per_round
        assert mine.has("ad_free") == (slug != "reader")
        assert mine.has("merch_discount") == (slug == "co-creator")
        assert mine.has("patron_posts") and mine.has("supporters_wall") and mine.has("newsletter")
    assert votes == {"reader": 1, "insider": 3, "co-creator": 5}


def test_the_demo_leaves_alone_what_staff_changed(db_session, tiers):
    add_demo_perks(db_session)
    perk = db_session.scalar(select(Perk).where(Perk.key == "ad_free"))
    perk.name = "Changed by staff"
    row = db_session.scalar(
        select(TierPerk).where(TierPerk.perk_id == perk.id, TierPerk.tier_id == tiers["insider"].id)
    )
    row.grant = Grant.WITHHOLD
    db_session.commit()
    add_demo_perks(db_session)
    db_session.expire_all()
    assert perk.name == "Changed by staff" and row.grant is Grant.WITHHOLD


# --- My membership -----------------------------------------------------------------------------


@pytest.fixture
def demo_world(db_session, tiers):
    add_demo_perks(db_session)
    return tiers


def my_membership_as(client, login, member) -> str:
    login(member)
    response = client.get("/membership")
    assert response.status_code == 200
    return response.get_data(as_text=True)


def perks_section(page: str) -> str:
    match = re.search(r'<section class="card my-perks".*?<h2 id="my-perks-heading">.*', page, re.S)
    assert match, "My membership has no perks section"
    return match.group(0).split('<section class="card">\n  <h2>Payments</h2>')[0]


def test_a_reader_patron_sees_one_vote_updates_the_wall_and_the_newsletter(
    client, db_session, login, make_member, demo_world
):
    member = make_member()
    make_patron(db_session, member, demo_world["reader"])
    section = perks_section(my_membership_as(client, login, member))
    assert "<strong>1 vote</strong> in each voting round" in section
    assert 'href="/vote"' in section
    assert 'href="/updates"' in section
    assert "Put my name on the wall" in section
    assert "The patrons&#39; newsletter" in section
    assert "Make my feed address" in section
    assert "Ad-free reading" not in section
    assert "COCREATOR20" not in section


def test_an_insider_sees_three_votes_and_ad_free_reading(
    client, db_session, login, make_member, demo_world
):
    member = make_member()
    make_patron(db_session, member, demo_world["insider"])
    section = perks_section(my_membership_as(client, login, member))
    assert "<strong>3 votes</strong>" in section
    assert "Ad-free reading" in section
    assert "COCREATOR20" not in section


def test_a_co_creator_sees_five_votes_and_the_discount_code(
    client, db_session, login, make_member, demo_world
):
    member = make_member()
    make_patron(db_session, member, demo_world["co-creator"])
    section = perks_section(my_membership_as(client, login, member))
    assert "<strong>5 votes</strong>" in section
    assert '<code class="reveal-code">COCREATOR20</code>' in section


def test_a_link_perk_is_a_link_and_anything_else_is_shown_as_text(
    client, db_session, login, make_member, demo_world
):
    perk = db_session.scalar(select(Perk).where(Perk.key == "merch_discount"))
    perk.reveal = "javascript:alert(1)"
    db_session.add(
        Perk(
            key="chat",
            name="Chat",
            kind=PerkKind.REVEAL,
            reveal="https://chat.example.org/x",
            description="",
        )
    )
    db_session.flush()
    chat = db_session.scalar(select(Perk).where(Perk.key == "chat"))
    db_session.add(TierPerk(tier_id=demo_world["co-creator"].id, perk_id=chat.id))
    db_session.commit()
    member = make_member()
    make_patron(db_session, member, demo_world["co-creator"])
    section = perks_section(my_membership_as(client, login, member))
    assert 'href="javascript:' not in section
    assert '<code class="reveal-code">javascript:alert(1)</code>' in section
    assert (
        '<a href="https://chat.example.org/x" rel="noopener noreferrer">'
        "https://chat.example.org/x</a>" in section
    )


def test_a_reader_who_is_not_a_patron_is_invited_to_become_one(
    client, login, make_member, demo_world
):
    section = perks_section(my_membership_as(client, login, make_member()))
    assert "Become a patron" in section
    assert "vote" not in section.split("Patrons get")[1].split("</p>")[1]
    assert "COCREATOR20" not in section and "Put my name on the wall" not in section


def test_a_patron_whose_payment_lapsed_sees_no_perks(
    client, db_session, login, make_member, demo_world
):
    member = make_member()
    subscription = make_patron(db_session, member, demo_world["co-creator"])
    lapse(db_session, subscription)
    section = perks_section(my_membership_as(client, login, member))
    assert "COCREATOR20" not in section and "votes</strong>" not in section
    assert "Become a patron" in section


def test_a_patron_who_is_canceling_keeps_their_perks_until_the_end(
    client, db_session, login, make_member, demo_world
):
    member = make_member()
    make_patron(db_session, member, demo_world["co-creator"], cancel_at_period_end=True)
    section = perks_section(my_membership_as(client, login, member))
    assert "COCREATOR20" in section


def test_an_inactive_perk_disappears_from_every_dashboard(
    client, db_session, login, make_member, demo_world
):
    perk = db_session.scalar(select(Perk).where(Perk.key == "merch_discount"))
    perk.active = False
    db_session.commit()
    member = make_member()
    make_patron(db_session, member, demo_world["co-creator"])
    assert "COCREATOR20" not in perks_section(my_membership_as(client, login, member))
