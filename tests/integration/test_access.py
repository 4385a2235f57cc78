"""Who may open which page: every route is classified here, and the server enforces it.

A new route that nobody classified fails ``test_every_route_is_classified``: decide who may see it
and add it to ``ACCESS``.
"""

from __future__ import annotations

import html
import re
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from flask import Flask, url_for
from sqlalchemy import func, select

from membership.accounts.models import LoginSession, Member, Role
from membership.accounts.rules import safe_next
from membership.emails import OutboundEmail
from tests.conftest import PASSWORD, CsrfClient

PUBLIC = "public"  # anyone, logged in or not
MEMBER = "member"  # logged in: anonymous visitors are sent to the login page
STAFF = "staff"  # staff and admins; readers get 403
ADMIN = "admin"  # admins only; readers and staff get 403
TOKEN = "token"  # a link with a <token> (from an email): the token, not the login, decides
MEMBER_TOKEN = "member token"  # logged in, and the id or token in the link must be one's own

ACCESS: dict[str, str] = {
    "static": PUBLIC,
    "site.home": PUBLIC,
    "site.healthz": PUBLIC,
    "accounts.signup": PUBLIC,
    "accounts.check_email": PUBLIC,
    "accounts.login": PUBLIC,
    "accounts.logout": PUBLIC,
    "accounts.forgot_password": PUBLIC,
    "accounts.reset_sent": PUBLIC,
    "accounts.confirm": TOKEN,
    "accounts.reset_password": TOKEN,
    "accounts.confirm_email_change": TOKEN,
    "accounts.overview": MEMBER,
    "accounts.resend_confirmation": MEMBER,
    "accounts.change_name": MEMBER,
    "accounts.change_email": MEMBER,
    "accounts.change_password": MEMBER,
    "accounts.export": MEMBER,
    "accounts.delete": MEMBER,
    "staff.dashboard": STAFF,
    "staff.tiers": STAFF,
    "staff.tier": STAFF,
    "reports.dashboard": STAFF,
    "reports.patrons_csv": STAFF,
    "reports.mrr_csv": STAFF,
    "reports.churn_csv": STAFF,
    "reports.revenue_csv": STAFF,
    "reports.cohorts_csv": STAFF,
    "reports.recovery_csv": STAFF,
    "reports.voting_csv": STAFF,
    "staff.members": STAFF,
    "staff.member": STAFF,
    "staff.grant_comp": STAFF,
    "staff.end_comp": STAFF,
    "staff.refund": STAFF,
    "staff.resend_member_confirmation": STAFF,
    "staff.delete_member": STAFF,
    "staff.audit": STAFF,
    "staff.audit_csv": STAFF,
    "staff.team": ADMIN,
    "staff.team_grant": ADMIN,
    "staff.team_remove": ADMIN,
    "staff.import_members": STAFF,
    "billing.support": PUBLIC,
    "billing.give": PUBLIC,
    "billing.gift_card": TOKEN,
    "billing.gift_setup": TOKEN,
    "billing.gift_pay": TOKEN,
    "billing.gift_confirm": TOKEN,
    "billing.gift_thanks": TOKEN,
    "billing.stripe_webhook": PUBLIC,  # no login: Stripe's signature decides (see tests/stripe)
    # No login for the member API: the API key decides (see tests/integration/test_member_api.py).
    "api.member": PUBLIC,
    "api.openapi_document": PUBLIC,  # the API's description holds no data
    "billing.join_summary": MEMBER,
    "billing.join": MEMBER,
    "billing.join_card": MEMBER_TOKEN,
    "billing.join_setup": MEMBER_TOKEN,
    "billing.join_subscribe": MEMBER_TOKEN,
    "billing.join_confirm": MEMBER_TOKEN,
    "billing.membership": MEMBER,
    "billing.change": MEMBER,
    "billing.pause": MEMBER,
    "billing.resume": MEMBER,
    "billing.cancel": MEMBER,
    "billing.undo_cancel": MEMBER,
    "billing.card": MEMBER,
    "billing.card_setup": MEMBER,
    "billing.card_save": MEMBER,
    "billing.receipt": MEMBER_TOKEN,  # a payment id of one's own; anyone else's is a 404
    "voting.index": PUBLIC,
    "voting.round_results": PUBLIC,
    "voting.topic": PUBLIC,  # pending and rejected proposals: their proposer and staff only
    "voting.covered": PUBLIC,
    "voting.propose": MEMBER_TOKEN,  # an unknown round is a 404; the proposer is the logged-in one
    "voting.vote": MEMBER_TOKEN,  # an unknown topic is a 404; the voter is always the logged-in one
    "voting.unvote": MEMBER_TOKEN,
    "voting.staff_rounds": STAFF,
    "voting.staff_new_round": STAFF,
    "voting.staff_round": STAFF,
    "voting.staff_add_topic": STAFF,
    "voting.staff_close_round": STAFF,
    "voting.staff_approve": STAFF,
    "voting.staff_reject": STAFF,
    "voting.staff_merge": STAFF,
    "voting.staff_status": STAFF,
    "perks.staff_perks": STAFF,
    "perks.staff_perk": STAFF,
    "perks.staff_perk_tiers": STAFF,
    "perks.staff_posts": STAFF,
    "perks.staff_post": STAFF,
    "perks.staff_publish_post": STAFF,
    "perks.staff_unpublish_post": STAFF,
    "perks.updates": PUBLIC,
    "perks.update": PUBLIC,  # everyone sees the teaser; the body only patrons with access
    "perks.feed": TOKEN,  # a member's private feed: the token decides (made-up token: 404)
    "perks.supporters": PUBLIC,
    "perks.create_feed": MEMBER,
    "perks.revoke_feed": MEMBER,
    "perks.wall": MEMBER,
    "perks.leave_wall": MEMBER,
}

# Public pages that send a visitor who is already logged in on to their account page.
# Pages that send a logged-in visitor on: (status, where to).
SENDS_MEMBERS_ON = {
    "accounts.signup": (302, "/membership"),
    "accounts.login": (302, "/membership"),
    "billing.join_summary": (303, "/support"),  # without a choice of tier there is nothing to join
}

ROLES = ("anonymous", "reader", "staff", "admin")
ROLE_OF = {"reader": Role.READER, "staff": Role.STAFF, "admin": Role.ADMIN}

# What a role gets on a GET of a page of each class: a status, or "login" for the login redirect.
EXPECTED: dict[str, dict[str, int | str]] = {
    PUBLIC: {"anonymous": 200, "reader": 200, "staff": 200, "admin": 200},
    MEMBER: {"anonymous": "login", "reader": 200, "staff": 200, "admin": 200},
    STAFF: {"anonymous": "login", "reader": 403, "staff": 200, "admin": 200},
    ADMIN: {"anonymous": "login", "reader": 403, "staff": 403, "admin": 200},
}

# Every field any account form has, filled in plausibly, so that a POST would do something.
ANY_FORM = {
    "display_name": "Someone Else",
    "email": "attacker@example.org",
    "password": PASSWORD,
    "current_password": PASSWORD,
    "new_password": "a brand new passphrase",
    "confirm": "y",
}


# --- helpers -----------------------------------------------------------------------------------


def argument_free_rules(app: Flask, method: str) -> list[Any]:
    return sorted(
        (r for r in app.url_map.iter_rules() if method in r.methods and not r.arguments),
        key=lambda r: r.rule,
    )


def login_redirect_problem(response: Any, path: str | None) -> str | None:
    """None if the response sends the visitor to the login page, coming back to ``path``.

    With ``path`` None (a form's POST address, which cannot be opened again), any ``next`` that
    stays on this site will do.
    """
    if response.status_code != 302:
        return f"expected a redirect to the login page, got {response.status_code}"
    location = urlsplit(response.headers["Location"])
    back_to = parse_qs(location.query).get("next")
    if location.path != "/account/login":
        return f"expected a redirect to /account/login, got {location.geturl()}"
    if path is not None and back_to != [path]:
        return f"expected a redirect to /account/login?next={path}, got {location.geturl()}"
    if back_to is not None and safe_next(back_to[0]) is None:
        return f"the login page would send the member on to {back_to[0]!r}"
    return None


def snapshot(db_session: Any) -> tuple[Any, ...]:
    """Everything a request could change on a member's behalf."""
    db_session.expire_all()
    members = db_session.execute(
        select(
            Member.id,
            Member.email,
            Member.display_name,
            Member.password_hash,
            Member.role,
            Member.email_confirmed_at,
            Member.password_changed_at,
            Member.deleted_at,
        ).order_by(Member.id)
    ).all()
    sessions = db_session.scalar(select(func.count()).select_from(LoginSession))
    emails = db_session.scalar(select(func.count()).select_from(OutboundEmail))
    return tuple(members), sessions, emails


@pytest.fixture
def new_client(app: Flask, client: CsrfClient) -> Any:
    """A fresh browser (its own cookies); the ``client`` fixture has set the CSRF-aware class."""
    return app.test_client


@pytest.fixture
def clients(new_client: Any, make_member: Any, login: Any) -> dict[str, CsrfClient]:
    """One browser per role, each logged in as a member with that role (or not at all)."""
    browsers = {"anonymous": new_client()}
    for name, role in ROLE_OF.items():
        browsers[name] = new_client()
        login(make_member(f"{name}@example.org", role=role), c=browsers[name])
    return browsers


# --- the table is complete ---------------------------------------------------------------------


def test_every_route_is_classified(app):
    """A route nobody classified could be open to anyone; it fails here until someone decides."""
    rules = {rule.endpoint: rule.rule for rule in app.url_map.iter_rules()}
    unclassified = sorted(
        f"{endpoint} ({path})" for endpoint, path in rules.items() if endpoint not in ACCESS
    )
    stale = sorted(set(ACCESS) - set(rules))
    problems = []
    if unclassified:
        problems.append(
            "These routes are not in ACCESS in tests/integration/test_access.py; decide who may "
            f"use each ({', '.join(sorted({PUBLIC, MEMBER, STAFF, ADMIN, TOKEN, MEMBER_TOKEN}))}): "
            + ", ".join(unclassified)
        )
    if stale:
        problems.append(f"ACCESS lists endpoints the app no longer has: {', '.join(stale)}")
    assert not problems, "\n".join(problems)


def test_the_table_only_uses_known_classes_and_token_routes_take_a_token(app):
    assert set(ACCESS.values()) <= {PUBLIC, MEMBER, STAFF, ADMIN, TOKEN, MEMBER_TOKEN}
    for rule in app.url_map.iter_rules():
        if ACCESS.get(rule.endpoint) == TOKEN:
            assert "token" in rule.arguments, f"{rule.endpoint} ({rule.rule}) takes no <token>"


# --- pages: each role gets what the table says -------------------------------------------------


@pytest.mark.parametrize("role", ROLES)
def test_each_role_sees_exactly_the_pages_meant_for_it(app, clients, role):
    browser = clients[role]
    problems = []
    checked = set()
    for rule in argument_free_rules(app, "GET"):
        kind = ACCESS.get(rule.endpoint)
        path = rule.rule
        if kind is None:
            problems.append(f"GET {path} ({rule.endpoint}) is not classified in ACCESS")
            continue
        response = browser.get(path)
        expected = EXPECTED[kind][role]
        if role != "anonymous" and rule.endpoint in SENDS_MEMBERS_ON:
            expected = SENDS_MEMBERS_ON[rule.endpoint][0]
        if expected == "login":
            problem = login_redirect_problem(response, path)
        elif response.status_code != expected:
            problem = f"expected {expected}, got {response.status_code}"
        elif expected in (302, 303) and (
            response.headers["Location"] != SENDS_MEMBERS_ON[rule.endpoint][1]
        ):
            problem = f"sent to {response.headers['Location']}"
        else:
            problem = None
        if problem:
            problems.append(f"GET {path} ({rule.endpoint}, {kind}) as {role}: {problem}")
        checked.add(path)
    assert {"/", "/account/", "/staff/", "/account/login"} <= checked
    assert not problems, "\n".join(problems)


def test_static_files_are_public(client):
    response = client.get("/static/css/site.css")
    assert response.status_code == 200
    response.close()


def test_a_reader_is_refused_the_staff_area_with_a_readable_page(clients):
    response = clients["reader"].get("/staff/")
    assert response.status_code == 403
    assert "This page is not for you" in response.get_data(as_text=True)


@pytest.mark.parametrize("role", ROLES)
def test_forms_posted_without_the_right_role_are_refused_and_change_nothing(
    app, clients, db_session, role
):
    """Even with a valid CSRF token, a POST from the wrong person is stopped before the view."""
    browser = clients[role]
    token = browser.csrf_token("/account/login" if role == "anonymous" else "/account/")
    problems = []
    for rule in argument_free_rules(app, "POST"):
        kind = ACCESS.get(rule.endpoint)
        if kind not in EXPECTED or EXPECTED[kind][role] == 200:
            continue  # allowed to this role: what the form does is tested elsewhere
        before = snapshot(db_session)
        response = browser.post(rule.rule, data={**ANY_FORM, "csrf_token": token})
        expected = EXPECTED[kind][role]
        if expected == "login":
            problem = login_redirect_problem(response, None)
        else:
            problem = None if response.status_code == expected else f"got {response.status_code}"
        if problem:
            problems.append(f"POST {rule.rule} ({rule.endpoint}) as {role}: {problem}")
        if snapshot(db_session) != before:
            problems.append(f"POST {rule.rule} ({rule.endpoint}) as {role} changed the database")
    assert not problems, "\n".join(problems)


def test_anonymous_posts_to_every_member_form_go_to_login_and_change_nothing(
    app, clients, db_session
):
    """The explicit list, so that the generic test above cannot silently check nothing."""
    browser = clients["anonymous"]
    token = browser.csrf_token()
    member_posts = [
        r.rule for r in argument_free_rules(app, "POST") if ACCESS.get(r.endpoint) == MEMBER
    ]
    assert set(member_posts) >= {
        "/account/name",
        "/account/email",
        "/account/password",
        "/account/delete",
        "/account/confirm/resend",
    }
    for path in member_posts:
        before = snapshot(db_session)
        response = browser.post(path, data={**ANY_FORM, "csrf_token": token})
        assert login_redirect_problem(response, None) is None, path
        assert snapshot(db_session) == before, f"anonymous POST {path} changed the database"


def test_logging_in_after_a_form_bounced_to_login_lands_on_a_page_not_an_error(
    new_client, make_member
):
    """A member whose session ended submits the name form, logs in, and should see a page.

    The login redirect's ``next`` is the form's POST-only address, so after logging in the browser
    GETs it and gets "405 Not allowed".
    """
    member = make_member()
    browser = new_client()
    bounced = browser.submit("/account/name", {"display_name": "New Name"})
    assert bounced.status_code == 302
    login_page = bounced.headers["Location"]
    page = browser.get(login_page).get_data(as_text=True)
    next_value = html.unescape(re.search(r'name="next" type="hidden" value="([^"]*)"', page)[1])
    logged_in = browser.submit(
        "/account/login", {"email": member.email, "password": PASSWORD, "next": next_value}
    )
    assert logged_in.status_code == 302
    landing = browser.get(logged_in.headers["Location"])
    assert landing.status_code == 200, (
        f"after logging in the member is sent to {logged_in.headers['Location']} "
        f"and gets {landing.status_code}"
    )


# --- signed-link routes ------------------------------------------------------------------------


def token_rules(app: Flask) -> list[tuple[str, Any]]:
    """Each token route with a made-up token in its URL."""
    with app.test_request_context():
        links = [
            (url_for(rule.endpoint, **dict.fromkeys(rule.arguments, "not-a-real-token")), rule)
            for rule in app.url_map.iter_rules()
            if ACCESS.get(rule.endpoint) == TOKEN
        ]
    return sorted(links, key=lambda link: link[0])


@pytest.mark.parametrize("role", ["anonymous", "reader"])
def test_a_made_up_link_is_refused_and_changes_nothing(app, clients, db_session, role):
    """Without a genuine token, being logged in or not makes no difference."""
    browser = clients[role]
    links = token_rules(app)
    assert {url for url, _ in links} >= {
        "/account/confirm/not-a-real-token",
        "/account/reset/not-a-real-token",
        "/account/email/not-a-real-token",
    }
    token = browser.csrf_token("/account/login" if role == "anonymous" else "/account/")
    for url, rule in links:
        before = snapshot(db_session)
        if "GET" in rule.methods:
            page = browser.get(url)
            assert page.status_code in (400, 404), f"GET {url} as {role}: {page.status_code}"
        if "POST" in rule.methods:
            form = {**ANY_FORM, "csrf_token": token}
            posted = browser.post(url, data=form)
            assert posted.status_code in (400, 404), f"POST {url} as {role}: {posted.status_code}"
        assert snapshot(db_session) == before, f"{url} as {role} changed the database"


def test_links_to_what_belongs_to_a_member_need_a_login_and_their_own_id(app, clients, db_session):
    """Someone else's join token or receipt: a login for strangers, a 404 for other members."""
    with app.test_request_context():
        links = [
            (url_for(rule.endpoint, **dict.fromkeys(rule.arguments, 987654)), rule)
            for rule in app.url_map.iter_rules()
            if ACCESS.get(rule.endpoint) == MEMBER_TOKEN
        ]
    assert {url for url, _ in links} >= {"/support/join/987654", "/membership/receipts/987654"}
    token = clients["reader"].csrf_token("/account/")
    anonymous_token = clients["anonymous"].csrf_token()
    for url, rule in links:
        before = snapshot(db_session)
        method = "GET" if "GET" in rule.methods else "POST"
        anonymous = clients["anonymous"].open(
            url, method=method, data={"csrf_token": anonymous_token} if method == "POST" else None
        )
        assert login_redirect_problem(anonymous, None) is None, f"{method} {url} as anonymous"
        reader = clients["reader"].open(
            url, method=method, data={"csrf_token": token} if method == "POST" else None
        )
        assert reader.status_code == 404, f"{method} {url} as a reader: {reader.status_code}"
        assert snapshot(db_session) == before, f"{url} changed the database"


# --- where the login sends you: only ever to this site -----------------------------------------

HOSTILE_NEXT = [
    "//evil.example",
    "https://evil.example",
    "/\\evil.example",
    "javascript:alert(1)",
    "http:/evil.example",
    "%2F%2Fevil.example",
    "/\n/evil.example",
    "/account/\r\nSet-Cookie: stolen=1",
    "/\t/evil.example",
    " //evil.example",
    "\\\\evil.example",
    "https:evil.example",
    "",
]

HONOURED_NEXT = [("/staff/", Role.STAFF), ("/account/?x=1", Role.READER)]


def hidden_next(page_html: str) -> str:
    match = re.search(r'<input id="next" name="next" type="hidden" value="([^"]*)">', page_html)
    assert match, "the login page has no hidden next field"
    return html.unescape(match.group(1))


def follow_login_link(browser: CsrfClient, member: Member, target: str) -> Any:
    """What a browser does: open /account/login?next=..., fill in the form, send it."""
    page = browser.get("/account/login?" + urlencode({"next": target})).get_data(as_text=True)
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page)[1]
    form = {"csrf_token": token, "email": member.email, "password": PASSWORD}
    form["next"] = hidden_next(page)
    return browser.post("/account/login", data=form)


@pytest.mark.parametrize("target", HOSTILE_NEXT, ids=repr)
def test_a_login_link_cannot_send_the_reader_to_another_site(new_client, make_member, target):
    member = make_member()
    response = follow_login_link(new_client(), member, target)
    assert response.status_code == 302
    assert response.headers["Location"] == "/membership"


@pytest.mark.parametrize("target", HOSTILE_NEXT, ids=repr)
def test_a_forged_next_field_cannot_send_the_reader_to_another_site(
    new_client, make_member, target
):
    member = make_member()
    browser = new_client()
    response = browser.submit(
        "/account/login", {"email": member.email, "password": PASSWORD, "next": target}
    )
    assert response.status_code == 302
    assert response.headers["Location"] == "/membership"


@pytest.mark.parametrize("target", HOSTILE_NEXT, ids=repr)
def test_a_next_in_the_login_address_cannot_send_the_reader_to_another_site(
    new_client, make_member, login, target
):
    """Both when the form is posted to /account/login?next=... and when already logged in."""
    member = make_member()
    browser = new_client()
    query = "?" + urlencode({"next": target})
    token = browser.csrf_token()
    posted = browser.post(
        "/account/login" + query,
        data={"csrf_token": token, "email": member.email, "password": PASSWORD},
    )
    assert posted.status_code == 302
    assert posted.headers["Location"] == "/membership"
    already_in = browser.get("/account/login" + query)
    assert already_in.status_code == 302
    assert already_in.headers["Location"] == "/membership"


@pytest.mark.parametrize(("target", "role"), HONOURED_NEXT, ids=repr)
def test_a_login_link_to_a_page_on_this_site_is_followed(new_client, make_member, target, role):
    member = make_member(role=role)
    via_link = follow_login_link(new_client(), member, target)
    assert via_link.status_code == 302
    assert via_link.headers["Location"] == target

    browser = new_client()
    via_field = browser.submit(
        "/account/login", {"email": member.email, "password": PASSWORD, "next": target}
    )
    assert via_field.headers["Location"] == target
    assert browser.get(target).status_code == 200

    already_in = browser.get("/account/login?" + urlencode({"next": target}))
    assert already_in.headers["Location"] == target


def test_after_being_sent_to_login_the_member_comes_back_to_the_page_they_wanted(
    new_client, make_member
):
    staff = make_member(role=Role.STAFF)
    browser = new_client()
    bounced = browser.get("/staff/")
    assert login_redirect_problem(bounced, "/staff/") is None
    response = follow_login_link(browser, staff, "/staff/")
    assert response.headers["Location"] == "/staff/"
    assert browser.get("/staff/").status_code == 200
