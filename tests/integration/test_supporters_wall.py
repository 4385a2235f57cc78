"""The supporters wall: patrons who opt in are thanked by name while they are patrons."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import func, select

from membership.perks.models import Grant, Perk, TierPerk, WallEntry
from tests.integration.perks_support import (
    add_demo_perks,
    add_demo_tiers,
    end,
    lapse,
    make_patron,
)


@pytest.fixture
def tiers(db_session):
    tiers = add_demo_tiers(db_session)
    add_demo_perks(db_session)
    return tiers


@pytest.fixture
def new_client(app, client):
    """Another browser, with its own cookies (``client`` set the CSRF-aware client class)."""
    return app.test_client


def join(client, name: str, show_tier: bool = False):
    data = {"display_name": name}
    if show_tier:
        data["show_tier"] = "y"
    return client.submit("/membership/wall", data, token_page="/membership")


def wall_names(client) -> list[str]:
    page = client.get("/supporters").get_data(as_text=True)
    return re.findall(r'<span class="supporter-name">(.*?)</span>', page)


def entries(db_session) -> int:
    return db_session.scalar(select(func.count()).select_from(WallEntry))


@pytest.fixture
def patron(client, db_session, login, make_member, tiers):
    member = make_member()
    subscription = make_patron(db_session, member, tiers["insider"])
    login(member)
    return subscription


def test_a_patron_opts_in_and_appears_on_the_wall_under_the_name_they_chose(
    client, new_client, patron
):
    response = join(client, "  Olena   K. ")
    assert response.status_code == 302
    assert response.headers["Location"] == "/membership"
    assert wall_names(new_client()) == ["Olena K."]
    assert "Update my name on the wall" in client.get("/membership").get_data(as_text=True)


def test_a_patron_may_show_their_tier_next_to_their_name(client, new_client, patron):
    join(client, "Olena", show_tier=True)
    page = new_client().get("/supporters").get_data(as_text=True)
    assert '<span class="supporter-name">Olena</span> <span class="hint">(Insider)</span>' in page


def test_the_tier_is_not_shown_unless_the_patron_asked(client, new_client, patron):
    join(client, "Olena")
    assert "(Insider)" not in new_client().get("/supporters").get_data(as_text=True)


def test_changing_the_name_on_the_wall_replaces_it(client, new_client, db_session, patron):
    join(client, "Olena")
    join(client, "O. K.")
    assert wall_names(new_client()) == ["O. K."]
    assert entries(db_session) == 1


def test_opting_out_removes_the_name_at_once(client, new_client, db_session, patron):
    join(client, "Olena")
    response = client.submit("/membership/wall/leave", {}, token_page="/membership")
    assert response.status_code == 302
    assert wall_names(new_client()) == []
    assert entries(db_session) == 0
    assert "Put my name on the wall" in client.get("/membership").get_data(as_text=True)


def test_a_name_with_markup_is_shown_as_text(client, new_client, patron):
    join(client, '<img src=x onerror="alert(1)"><script>alert(2)</script>')
    page = new_client().get("/supporters").get_data(as_text=True)
    assert "<img src=x" not in page and "<script>alert(2)" not in page
    assert "&lt;img src=x onerror=&#34;alert(1)&#34;&gt;&lt;script&gt;" in page
    mine = client.get("/membership").get_data(as_text=True)
    assert "<img src=x" not in mine and "&lt;img src=x" in mine


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("", "Enter the name you want to appear under."),
        ("   ", "Enter the name you want"),
        ("x" * 81, "Use at most 80 characters."),
        ("Olena\u202eK", "characters that cannot be shown"),
        ("Ole\x00na", "characters that cannot be shown"),
    ],
    ids=repr,
)
def test_a_bad_name_is_refused_with_the_reason_next_to_the_field(
    client, db_session, patron, name, message
):
    response = join(client, name)
    assert response.status_code == 400
    page = response.get_data(as_text=True)
    error = re.search(r'<p class="error" id="display_name-error">([^<]*)</p>', page)
    assert error and message in error.group(1)
    assert entries(db_session) == 0


def test_a_reader_who_is_not_a_patron_cannot_join_the_wall(
    client, new_client, db_session, login, make_member, tiers
):
    login(make_member())
    response = join(client, "Not a patron")
    assert response.status_code == 400
    assert "for patrons whose tier includes it" in response.get_data(as_text=True)
    assert entries(db_session) == 0
    assert wall_names(new_client()) == []


def test_a_visitor_is_asked_to_log_in_and_nothing_is_stored(client, db_session, tiers):
    token = client.csrf_token()
    response = client.post("/membership/wall", data={"display_name": "X", "csrf_token": token})
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/account/login")
    assert entries(db_session) == 0


@pytest.mark.parametrize("stop", [lapse, end], ids=["lapsed", "ended"])
def test_a_supporter_who_stops_being_a_patron_leaves_the_wall_without_doing_anything(
    client, new_client, db_session, patron, stop
):
    join(client, "Olena")
    stop(db_session, patron)
    assert wall_names(new_client()) == []
    page = client.get("/membership").get_data(as_text=True)
    assert "is not shown on the supporters wall while you are not a patron" in page
    assert "Take my name off the wall" in page


def test_a_supporter_whose_tier_withholds_the_wall_is_not_listed(
    client, new_client, db_session, patron, tiers
):
    join(client, "Olena")
    perk = db_session.scalar(select(Perk).where(Perk.key == "supporters_wall"))
    db_session.add(TierPerk(tier_id=tiers["insider"].id, perk_id=perk.id, grant=Grant.WITHHOLD))
    db_session.commit()
    assert wall_names(new_client()) == []


def test_the_wall_lists_several_supporters_and_only_current_patrons(
    new_client, db_session, login, make_member, tiers
):
    names = {}
    for name, tier in (("Ada", "reader"), ("Bo", "insider"), ("Cy", "co-creator")):
        member = make_member()
        names[name] = make_patron(db_session, member, tiers[tier])
        browser = new_client()
        login(member, c=browser)
        assert join(browser, name).status_code == 302
    end(db_session, names["Bo"])
    assert wall_names(new_client()) == ["Ada", "Cy"]
