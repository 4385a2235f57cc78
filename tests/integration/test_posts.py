"""Patron-only updates: staff write and publish them; patrons with access read them, others see
the teaser and an invitation; each patron can follow them in a private feed."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import pytest
from sqlalchemy import func, select

from membership.accounts.models import Role
from membership.database import utcnow
from membership.perks.models import FeedToken, Post
from tests.integration.perks_support import (
    add_demo_perks,
    add_demo_tiers,
    end,
    lapse,
    make_patron,
    post_by_slug,
)

ATOM = "{http://www.w3.org/2005/Atom}"
ALL_PATRONS = "a-note-from-the-editors"  # demo post for every patron
INSIDERS = "inside-the-newsroom-budget"  # demo post for Insider and Co-creator
ALL_BODY = "three investigations"
INSIDER_BODY = "Where the money goes"

POST_FORM = {
    "title": "Field notes from the border",
    "slug": "",
    "teaser": "What we saw this week.",
    "body": "We **crossed** at dawn.",
    "audience": "all",
}


@pytest.fixture
def tiers(db_session):
    tiers = add_demo_tiers(db_session)
    add_demo_perks(db_session)
    return tiers


@pytest.fixture
def staff_client(client, make_member, login):
    login(make_member("editor@example.org", role=Role.STAFF))
    return client


@pytest.fixture
def new_client(app, client):
    """Another browser, with its own cookies (``client`` set the CSRF-aware client class)."""
    return app.test_client


@pytest.fixture
def staff_client_factory(new_client, make_member, login):
    def make():
        browser = new_client()
        login(make_member(role=Role.STAFF), c=browser)
        return browser

    return make


def save(client, url, data):
    return client.submit(url, data, token_page="/staff/posts/new")


def patron_client(client, db_session, login, make_member, tier):
    member = make_member()
    make_patron(db_session, member, tier)
    login(member)
    return member


def text(response) -> str:
    return response.get_data(as_text=True)


# --- staff write, publish, unpublish ------------------------------------------------------------


def test_staff_write_a_draft_that_nobody_sees_until_it_is_published(
    staff_client, new_client, db_session, tiers
):
    response = save(staff_client, "/staff/posts/new", POST_FORM)
    assert response.status_code == 302, text(response)
    post = post_by_slug(db_session, "field-notes-from-the-border")
    assert post is not None and post.published_at is None
    assert post.body_html == "<p>We <strong>crossed</strong> at dawn.</p>"
    visitor = new_client()
    assert "Field notes" not in text(visitor.get("/updates"))
    assert visitor.get("/updates/field-notes-from-the-border").status_code == 404

    published = save(staff_client, f"/staff/posts/{post.id}/publish", {})
    assert published.status_code == 302
    assert "Field notes from the border" in text(visitor.get("/updates"))
    assert visitor.get("/updates/field-notes-from-the-border").status_code == 200

    save(staff_client, f"/staff/posts/{post.id}/unpublish", {})
    assert "Field notes" not in text(visitor.get("/updates"))
    assert visitor.get("/updates/field-notes-from-the-border").status_code == 404


def test_staff_edit_a_post_and_the_page_shows_the_new_text(staff_client, db_session, tiers):
    post = post_by_slug(db_session, ALL_PATRONS)
    response = save(
        staff_client,
        f"/staff/posts/{post.id}",
        {**POST_FORM, "title": "A new title", "slug": ALL_PATRONS, "body": "New *words*."},
    )
    assert response.status_code == 302, text(response)
    page = text(staff_client.get(f"/updates/{ALL_PATRONS}"))
    assert "A new title" in page and "New <em>words</em>." in page


def test_two_posts_with_the_same_title_get_different_addresses(staff_client, db_session, tiers):
    save(staff_client, "/staff/posts/new", POST_FORM)
    save(staff_client, "/staff/posts/new", POST_FORM)
    slugs = set(db_session.scalars(select(Post.slug).where(Post.title == POST_FORM["title"])))
    assert slugs == {"field-notes-from-the-border", "field-notes-from-the-border-2"}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"title": ""}, "Give the update a title."),
        ({"title": "x" * 201}, "Use at most 200 characters."),
        ({"body": ""}, "Write the update."),
        ({"slug": "Not A Slug"}, "Use lower-case letters, digits and dashes"),
        ({"slug": ALL_PATRONS}, "Another update already uses that address."),
        ({"audience": "tiers"}, "Choose at least one tier"),
        ({"audience": "everyone"}, "Not a valid choice"),
        ({"audience": "tiers", "tiers": "not-a-number"}, "could not be coerced"),
        ({"audience": "tiers", "tiers": "987654"}, "not a valid choice"),
    ],
)
def test_a_post_with_bad_input_is_refused_with_a_reason_and_nothing_is_saved(
    staff_client, db_session, tiers, change, message
):
    before = db_session.scalar(select(func.count()).select_from(Post))
    response = save(staff_client, "/staff/posts/new", {**POST_FORM, **change})
    assert response.status_code == 400
    assert message.lower() in text(response).lower()
    assert db_session.scalar(select(func.count()).select_from(Post)) == before


def test_readers_cannot_write_or_publish_posts(client, db_session, make_member, login, tiers):
    login(make_member())
    token = client.csrf_token("/account/")
    assert client.get("/staff/posts").status_code == 403
    created = client.post("/staff/posts/new", data={**POST_FORM, "csrf_token": token})
    assert created.status_code == 403
    save(client, "/staff/posts/new", POST_FORM)
    post = post_by_slug(db_session, ALL_PATRONS)
    assert (
        client.post(f"/staff/posts/{post.id}/unpublish", data={"csrf_token": token}).status_code
        == 403
    )
    assert post_by_slug(db_session, ALL_PATRONS).published_at is not None
    assert db_session.scalar(select(func.count()).select_from(Post)) == 2


def test_a_post_that_does_not_exist_is_a_404_for_staff_and_readers(staff_client, tiers):
    assert staff_client.get("/staff/posts/987654").status_code == 404
    assert save(staff_client, "/staff/posts/987654/publish", {}).status_code == 404
    assert staff_client.get("/updates/no-such-update").status_code == 404


# --- who reads what ----------------------------------------------------------------------------


def test_a_patron_reads_an_update_for_all_patrons(client, db_session, login, make_member, tiers):
    patron_client(client, db_session, login, make_member, tiers["reader"])
    page = text(client.get(f"/updates/{ALL_PATRONS}"))
    assert ALL_BODY in page
    assert "Become a patron" not in page


def test_a_reader_patron_sees_only_the_teaser_of_an_update_for_insiders(
    client, db_session, login, make_member, tiers
):
    patron_client(client, db_session, login, make_member, tiers["reader"])
    page = text(client.get(f"/updates/{INSIDERS}"))
    assert "Where every euro goes, line by line." in page  # the teaser
    assert INSIDER_BODY not in page
    assert "This update is for Insider and Co-creator patrons" in page
    assert 'href="/membership">Change your tier</a>' in page


@pytest.mark.parametrize("tier", ["insider", "co-creator"])
def test_insiders_and_co_creators_read_the_update_for_insiders(
    client, db_session, login, make_member, tiers, tier
):
    patron_client(client, db_session, login, make_member, tiers[tier])
    assert INSIDER_BODY in text(client.get(f"/updates/{INSIDERS}"))


def test_a_reader_who_is_not_a_patron_sees_the_teaser_and_an_invitation(
    client, login, make_member, tiers
):
    login(make_member())
    page = text(client.get(f"/updates/{ALL_PATRONS}"))
    assert "What your support paid for this month" in page
    assert ALL_BODY not in page
    assert '<a class="button" href="/support">Become a patron</a>' in page
    assert "Log in</a> to read it" not in page


def test_a_visitor_sees_the_teaser_an_invitation_and_a_way_to_log_in(client, tiers):
    page = text(client.get(f"/updates/{ALL_PATRONS}"))
    assert ALL_BODY not in page
    assert 'href="/support">Become a patron</a>' in page
    assert f'href="/account/login?next=/updates/{ALL_PATRONS}">Log in</a>' in page


def test_a_patron_whose_payment_lapsed_sees_only_teasers(
    client, db_session, login, make_member, tiers
):
    member = make_member()
    subscription = make_patron(db_session, member, tiers["co-creator"])
    login(member)
    assert ALL_BODY in text(client.get(f"/updates/{ALL_PATRONS}"))
    lapse(db_session, subscription)
    page = text(client.get(f"/updates/{ALL_PATRONS}"))
    assert ALL_BODY not in page and "Become a patron" in page


def test_the_list_of_updates_shows_titles_and_teasers_to_everyone(client, tiers):
    page = text(client.get("/updates"))
    assert "A note from the editors" in page and "Inside the newsroom budget" in page
    assert "Where every euro goes" in page
    assert "for Insider, Co-creator patrons" in page
    assert INSIDER_BODY not in page and ALL_BODY not in page


def test_staff_can_read_every_update_to_check_it(staff_client, tiers):
    assert INSIDER_BODY in text(staff_client.get(f"/updates/{INSIDERS}"))


# --- sanitising --------------------------------------------------------------------------------

HOSTILE_BODY = """Hello **patrons**.

<script>alert('script')</script>

<img src="x" onerror="alert('img')">

[click me](javascript:alert('link'))

<a href="javascript:alert('raw')" onclick="alert('click')">raw link</a>

<iframe src="https://evil.example/"></iframe>

<div style="position:fixed" onmouseover="alert('over')">raw html text</div>

[a real link](https://example.org/story)
"""


def test_hostile_markdown_is_cleaned_when_saved_and_the_page_runs_nothing(
    staff_client, new_client, db_session, tiers, make_member, login
):
    response = save(
        staff_client,
        "/staff/posts/new",
        {**POST_FORM, "title": "Hostile", "slug": "hostile", "body": HOSTILE_BODY},
    )
    assert response.status_code == 302, text(response)
    post = post_by_slug(db_session, "hostile")
    save(staff_client, f"/staff/posts/{post.id}/publish", {})
    reader = new_client()
    member = make_member()
    make_patron(db_session, member, tiers["reader"])
    login(member, c=reader)
    page = text(reader.get("/updates/hostile"))
    body = re.search(r'<div class="update-body">(.*?)</div>\s*</article>', page, re.S).group(1)
    stored = post_by_slug(db_session, "hostile").body_html
    for html in (stored, body):
        lowered = html.lower()
        for forbidden in ("<script", "onerror", "onclick", "onmouseover", "javascript:"):
            assert forbidden not in lowered, f"{forbidden} survived"
        assert "<iframe" not in lowered and "style=" not in lowered
        assert "Hello <strong>patrons</strong>." in html
        assert "raw html text" in html
        assert (
            '<a href="https://example.org/story" rel="noopener noreferrer">a real link</a>' in html
        )
    assert post_by_slug(db_session, "hostile").body_markdown == HOSTILE_BODY  # kept for editing


def test_a_title_and_teaser_with_markup_are_shown_as_text(
    staff_client, new_client, db_session, tiers
):
    save(
        staff_client,
        "/staff/posts/new",
        {
            **POST_FORM,
            "slug": "markup",
            "title": "<script>alert('title')</script>",
            "teaser": '<img src=x onerror="alert(1)">',
        },
    )
    post = post_by_slug(db_session, "markup")
    save(staff_client, f"/staff/posts/{post.id}/publish", {})
    visitor = new_client()
    for page in (text(visitor.get("/updates")), text(visitor.get("/updates/markup"))):
        assert "<script>alert" not in page and "<img src=x" not in page
        assert "&lt;script&gt;alert(&#39;title&#39;)&lt;/script&gt;" in page


# --- the private feed --------------------------------------------------------------------------


def make_feed(client) -> str:
    response = client.submit("/membership/feed", {}, token_page="/membership")
    assert response.status_code == 200, text(response)
    match = re.search(r'value="http://localhost(/updates/feed/[^"]+\.atom)"', text(response))
    assert match, "the new feed address is not shown"
    return match.group(1)


def feed_entries(response) -> dict[str, ET.Element]:
    assert response.status_code == 200
    assert response.mimetype == "application/atom+xml"
    root = ET.fromstring(response.get_data())  # noqa: S314 - our own output, in a test
    return {e.findtext(f"{ATOM}title"): e for e in root.findall(f"{ATOM}entry")}


def content(entry: ET.Element) -> str:
    return entry.findtext(f"{ATOM}content") or ""


def test_a_patron_follows_the_updates_in_a_private_feed(
    client, new_client, db_session, login, make_member, tiers
):
    member = patron_client(client, db_session, login, make_member, tiers["reader"])
    url = make_feed(client)
    stored = db_session.scalar(select(FeedToken).where(FeedToken.member_id == member.id))
    assert url.split("/")[-1].removesuffix(".atom") not in stored.token_hash  # only a hash
    entries = feed_entries(new_client().get(url))  # a feed reader has no cookies
    assert ALL_BODY in content(entries["A note from the editors"])
    budget = entries["Inside the newsroom budget"]
    assert INSIDER_BODY not in content(budget) and "for patrons of Insider" in content(budget)
    assert budget.findtext(f"{ATOM}summary") == "Where every euro goes, line by line."


def test_the_feed_follows_the_membership_at_the_time_of_each_request(
    client, new_client, db_session, login, make_member, tiers
):
    member = make_member()
    subscription = make_patron(db_session, member, tiers["insider"])
    login(member)
    url = make_feed(client)
    reader = new_client()
    assert INSIDER_BODY in content(feed_entries(reader.get(url))["Inside the newsroom budget"])
    end(db_session, subscription)
    entries = feed_entries(reader.get(url))
    assert all(
        ALL_BODY not in content(e) and INSIDER_BODY not in content(e) for e in entries.values()
    )
    assert entries["A note from the editors"].findtext(f"{ATOM}summary").startswith("What your")


def test_an_unpublished_update_leaves_the_feed(
    client, new_client, staff_client_factory, db_session, login, make_member, tiers
):
    patron_client(client, db_session, login, make_member, tiers["co-creator"])
    url = make_feed(client)
    staff = staff_client_factory()
    post = post_by_slug(db_session, INSIDERS)
    save(staff, f"/staff/posts/{post.id}/unpublish", {})
    assert "Inside the newsroom budget" not in feed_entries(new_client().get(url))


def test_a_revoked_feed_address_stops_working_at_once(
    client, new_client, db_session, login, make_member, tiers
):
    patron_client(client, db_session, login, make_member, tiers["reader"])
    url = make_feed(client)
    revoked = client.submit("/membership/feed/revoke", {}, token_page="/membership")
    assert revoked.status_code == 302
    assert new_client().get(url).status_code == 404
    assert "Make my feed address" in text(client.get("/membership"))


def test_a_new_feed_address_replaces_the_old_one(
    client, new_client, db_session, login, make_member, tiers
):
    patron_client(client, db_session, login, make_member, tiers["reader"])
    first = make_feed(client)
    second = make_feed(client)
    assert first != second
    assert new_client().get(first).status_code == 404
    assert new_client().get(second).status_code == 200


@pytest.mark.parametrize("token", ["not-a-real-token", "x" * 200, "%00", "..%2F..%2Fetc"], ids=repr)
def test_a_made_up_feed_address_is_not_found(client, tiers, token):
    assert client.get(f"/updates/feed/{token}.atom").status_code == 404


def test_a_deleted_account_s_feed_stops_working(
    client, new_client, db_session, login, make_member, tiers
):
    member = patron_client(client, db_session, login, make_member, tiers["reader"])
    url = make_feed(client)
    member.deleted_at = utcnow()
    db_session.commit()
    assert new_client().get(url).status_code == 404


def test_a_hostile_title_cannot_break_the_feed(
    client, new_client, staff_client_factory, db_session, login, make_member, tiers
):
    staff = staff_client_factory()
    save(
        staff,
        "/staff/posts/new",
        {**POST_FORM, "slug": "xml", "title": "]]></title><entry>&amp;", "body": "<b>x</b> & y"},
    )
    save(staff, f"/staff/posts/{post_by_slug(db_session, 'xml').id}/publish", {})
    patron_client(client, db_session, login, make_member, tiers["reader"])
    entries = feed_entries(new_client().get(make_feed(client)))
    assert content(entries["]]></title><entry>&amp;"]) == "<p><b>x</b> &amp; y</p>"
