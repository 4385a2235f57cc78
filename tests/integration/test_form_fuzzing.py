"""Odd input in the account forms: never a server error, never half an account.

Hypothesis sends the signup, login and settings forms huge, empty, control-character, NUL, RTL,
emoji and arbitrary Unicode text, a field twice, fields left out, and bodies that are not forms at
all (JSON, a file upload in place of a text field, raw bytes). Whatever it sends, the reader gets a
page (2xx/3xx) or a refusal (4xx), never a 5xx, and the database is either fully changed or not
changed at all.

The fixtures are per test, so one database transaction and one app serve all of a test's examples:
every example resets the rate limiter, uses its own browser and, where it matters, its own
addresses, and compares the database before and after itself only.
"""

from __future__ import annotations

import io
import json
import unicodedata
import uuid
from typing import Any
from urllib.parse import parse_qs, urljoin, urlsplit

import pytest
from argon2 import PasswordHasher
from argon2.exceptions import VerificationError
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select, update

from membership.accounts import rules
from membership.accounts.models import LoginSession, Member, Role
from membership.emails import OutboundEmail
from membership.extensions import limiter
from tests.conftest import PASSWORD, CsrfClient


class _Missing:
    """A field the browser does not send at all."""

    def __repr__(self) -> str:  # reads well in Hypothesis's falsifying examples
        return "MISSING"


MISSING = _Missing()


def fuzz_settings(examples: int) -> Any:
    return settings(
        max_examples=examples,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )


# --- strategies --------------------------------------------------------------------------------


def weighted(*choices: tuple[int, st.SearchStrategy[Any]]) -> st.SearchStrategy[Any]:
    """Pick one of the strategies, ``weight`` times as often as a strategy of weight 1."""
    pool = [strategy for weight, strategy in choices for _ in range(weight)]
    return st.sampled_from(pool).flatmap(lambda strategy: strategy)


def _repeat_to(chunk: str, size: int) -> str:
    return (chunk * (size // len(chunk) + 1))[:size]


any_unicode = st.characters(codec="utf-8")  # every code point but the surrogates
huge_text = st.builds(
    _repeat_to, st.text(any_unicode, min_size=1, max_size=8), st.integers(1000, 20_000)
)
blank_text = st.sampled_from(["", " ", "\t", "\r\n", "\u00a0", "\u3000", "\u2028", "\u200b"])
control_text = st.text(st.characters(categories=["Cc"]), min_size=1, max_size=20)
nul_text = st.builds(
    lambda a, b: f"{a}\x00{b}", st.text(any_unicode, max_size=20), st.text(max_size=20)
)
RTL_AND_EMOJI = (
    "\u202e\u202d\u202a\u202b\u202c\u2066\u2067\u2069\u200f\u200e\u200d\ufe0f"  # bidi, ZWJ, VS16
    "👩‍💻🇺🇦👍🏽🏳️‍🌈🧑🏿‍🤝‍🧑🏻"
)
rtl_emoji_text = st.text(
    st.one_of(
        st.characters(min_codepoint=0x0590, max_codepoint=0x06FF),  # Hebrew and Arabic
        st.characters(min_codepoint=0x1F300, max_codepoint=0x1FAFF),  # emoji
        st.sampled_from(RTL_AND_EMOJI),
    ),
    min_size=1,
    max_size=40,
)
unicode_text = st.text(any_unicode, max_size=100)

odd_text = st.one_of(huge_text, blank_text, control_text, nul_text, rtl_emoji_text, unicode_text)


def fresh_email() -> st.SearchStrategy[str]:
    """An address no earlier example used (almost always: the test checks, and allows for it)."""
    plain = st.uuids().map(lambda u: f"reader.{u.hex[:12]}@example.org")
    shouted = st.uuids().map(lambda u: f"  Reader.{u.hex[:12].upper()}@EXAMPLE.Org\t")
    unicode_local = st.builds(
        lambda local, u: f"{local}.{u.hex[:8]}@bücher.example",
        st.text(st.characters(categories=["Lu", "Ll", "Lo"]), min_size=1, max_size=12),
        st.uuids(),
    )
    return st.one_of(plain, shouted, unicode_local)


strong_password = st.one_of(
    st.just(PASSWORD),
    st.text(st.characters(codec="utf-8", exclude_characters="\x00"), min_size=12, max_size=40),
    rtl_emoji_text.filter(lambda text: len(text) >= 8),
)
reader_name = st.one_of(st.just("New Reader"), rtl_emoji_text, st.text(any_unicode, max_size=90))


def field(good: st.SearchStrategy[str], good_weight: int = 4) -> st.SearchStrategy[Any]:
    """One field: usually a plausible value, else odd text, left out, or sent two or three times."""
    one = weighted((good_weight, good), (2, odd_text))
    return weighted((6, one), (1, st.just(MISSING)), (1, st.lists(one, min_size=2, max_size=3)))


def form_of(**fields: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(fields)


# --- helpers -----------------------------------------------------------------------------------


def first(value: Any) -> str | None:
    """What the form reads from a field: the first value sent, or None when left out."""
    if value is MISSING:
        return None
    if isinstance(value, list):
        return value[0]
    return value


def form_body(fields: dict[str, Any], token: str) -> dict[str, Any]:
    body = {name: value for name, value in fields.items() if value is not MISSING}
    body["csrf_token"] = token
    return body


def normalised(raw: str | None) -> str | None:
    try:
        return rules.normalise_email(raw) if raw is not None else None
    except rules.InvalidEmail:
        return None


def cleaned_name(raw: str | None) -> str | None:
    try:
        return rules.clean_display_name(raw) if raw is not None else None
    except ValueError:
        return None


def count(db_session: Any, model: Any, *where: Any) -> int:
    return db_session.scalar(select(func.count()).select_from(model).where(*where))


def member_row(db_session: Any, member_id: int) -> dict[str, Any]:
    """The columns a settings form may change, read from the database (never from a cache)."""
    row = db_session.execute(
        select(
            Member.email,
            Member.display_name,
            Member.password_hash,
            Member.role,
            Member.deleted_at,
        ).where(Member.id == member_id)
    ).one()
    return row._asdict()


def password_matches(password_hash: str | None, password: str) -> bool:
    try:
        return password_hash is not None and PasswordHasher().verify(password_hash, password)
    except VerificationError:
        return False


def assert_tidy(email: str, display_name: str) -> None:
    """What any stored account must look like, whatever the rules module says."""
    assert 0 < len(email) <= 254 and email == email.lower() and not any(c.isspace() for c in email)
    assert 0 < len(display_name) <= 80 and display_name == display_name.strip()
    assert not any(unicodedata.category(c) in ("Cc", "Cs") for c in display_name)


def start(client: CsrfClient) -> CsrfClient:
    """A fresh browser for one example, with the rate limits of earlier examples forgotten."""
    limiter.reset()
    return client.application.test_client()


def assert_not_a_server_error(response: Any) -> None:
    event(f"answered {response.status_code}")  # shown by --hypothesis-show-statistics
    assert response.status_code < 500, (
        f"{response.request.method} {response.request.path} answered {response.status_code}"
    )


# --- signup ------------------------------------------------------------------------------------

signup_forms = form_of(
    display_name=field(reader_name),
    email=field(fresh_email()),
    password=field(strong_password),
    next=field(st.sampled_from(["", "/account/", "//evil.example"]), good_weight=1),
)

GOOD_SIGNUP = {
    "display_name": "Nadia \u0646\u0627\u062f\u064a\u0627 👩‍💻",
    "email": "  Fuzz.Example.One@Example.ORG ",
    "password": PASSWORD,
    "next": "",
}


@fuzz_settings(examples=60)
@given(form=signup_forms)
@example(form=GOOD_SIGNUP)
@example(form={**GOOD_SIGNUP, "email": ["second.try@example.org", "other@example.org"]})
@example(form={**GOOD_SIGNUP, "email": "İstanbul.reader@bücher.example"})
@example(form={**GOOD_SIGNUP, "display_name": "x" * 20_000})
@example(form={**GOOD_SIGNUP, "password": "long enough\x00but has a NUL"})
@example(form={**GOOD_SIGNUP, "display_name": MISSING, "password": MISSING})
def test_signing_up_with_odd_input_creates_a_whole_account_or_none(client, db_session, form):
    browser = start(client)
    token = browser.csrf_token("/account/signup")
    email = normalised(first(form["email"]))
    taken = email is not None and count(db_session, Member, Member.email == email) > 0
    members_before = count(db_session, Member)
    emails_before = count(db_session, OutboundEmail)

    response = browser.post("/account/signup", data=form_body(form, token))

    assert_not_a_server_error(response)
    members_after = count(db_session, Member)
    if response.status_code != 302:
        assert response.status_code == 400
        assert members_after == members_before, "a refused signup left a member row behind"
        assert count(db_session, OutboundEmail) == emails_before, "a refused signup sent mail"
        return

    location = urlsplit(response.headers["Location"])
    assert location.path == "/account/check-email"
    kept_next = parse_qs(location.query).get("next")
    if kept_next is not None:
        assert kept_next == [first(form["next"])]
        assert rules.safe_next(kept_next[0]) == kept_next[0], f"kept an unsafe next {kept_next!r}"
    assert email is not None, f"signup accepted an address that is not valid: {form['email']!r}"
    assert count(db_session, OutboundEmail) == emails_before + 1, "one email, to the address"
    if taken:
        assert members_after == members_before, "a taken address must not get a second account"
        return
    assert members_after == members_before + 1, (
        f"signup said 'check your email' for {email!r} but created no account"
    )
    row = db_session.execute(
        select(Member.id, Member.display_name, Member.password_hash, Member.role).where(
            Member.email == email
        )
    ).one()
    assert row.password_hash.startswith("$argon2id$")
    assert password_matches(row.password_hash, first(form["password"]))
    assert row.display_name == cleaned_name(first(form["display_name"]))
    assert row.role is Role.READER
    assert_tidy(email, row.display_name)
    mail = db_session.scalar(select(OutboundEmail).where(OutboundEmail.member_id == row.id))
    assert mail is not None and mail.to_address == email
    assert mail.attempts >= 1, "the confirmation email was never tried (stuck in the outbox)"


# --- login -------------------------------------------------------------------------------------

NEXT_TARGETS = st.one_of(
    st.sampled_from(
        [
            "",
            "/account/",
            "/account/?x=1",
            "//evil.example",
            "https://evil.example",
            "/\\evil.example",
            "javascript:alert(1)",
            "http:/evil.example",
            "%2F%2Fevil.example",
            "/\n/evil.example",
            "/\u2028/evil.example",
            "/\x85/evil.example",
            "/caf\u00e9?q=\u202e",
        ]
    ),
    st.text(any_unicode, max_size=30).map(lambda text: "/" + text),
    st.text(st.sampled_from("/\\:.@ \t\nevilx%2F"), max_size=20),
)


def lands_on_this_site(location: str) -> bool:
    """Would a browser following this Location stay on this site?"""
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in location):
        return False
    as_browser_reads_it = location.replace("\\", "/")
    target = urlsplit(urljoin("http://localhost/account/login", as_browser_reads_it))
    return target.scheme == "http" and target.netloc == "localhost"


@pytest.fixture
def reader(make_member: Any) -> Member:
    return make_member("fuzz.reader@example.org", display_name="Fuzz Reader")


@fuzz_settings(examples=80)
@given(
    form=form_of(
        email=field(st.sampled_from(["fuzz.reader@example.org", " FUZZ.Reader@Example.org "])),
        password=field(st.just(PASSWORD), good_weight=6),
        next=field(NEXT_TARGETS),
    )
)
@example(form={"email": "fuzz.reader@example.org", "password": PASSWORD, "next": "/account/"})
@example(form={"email": "fuzz.reader@example.org", "password": PASSWORD + "\x00", "next": ""})
@example(form={"email": "fuzz.reader@example.org", "password": "x" * 20_000, "next": ""})
def test_logging_in_with_odd_input_either_logs_in_on_this_site_or_refuses(
    client, db_session, reader, form
):
    browser = start(client)
    token = browser.csrf_token("/account/login")
    sessions_before = count(db_session, LoginSession, LoginSession.member_id == reader.id)
    should_log_in = (
        normalised(first(form["email"])) == reader.email and first(form["password"]) == PASSWORD
    )

    response = browser.post("/account/login", data=form_body(form, token))

    assert_not_a_server_error(response)
    sessions_after = count(db_session, LoginSession, LoginSession.member_id == reader.id)
    if not should_log_in:
        assert response.status_code == 400
        assert sessions_after == sessions_before
        assert browser.get("/account/").status_code == 302, "refused, yet logged in"
        return
    assert response.status_code == 302
    assert sessions_after == sessions_before + 1
    location = response.headers["Location"]
    assert lands_on_this_site(location), (
        f"next={first(form['next'])!r} sent the reader to {location!r}"
    )
    assert browser.get("/account/").status_code == 200


# --- settings: name, email, password -----------------------------------------------------------


@pytest.fixture
def logged_in(client: CsrfClient, make_member: Any, login: Any) -> tuple[CsrfClient, Member]:
    """A reader logged in on ``client``; the settings examples share them."""
    member = make_member("settings.fuzz@example.org", display_name="Settings Fuzz")
    login(member)
    return client, member


def settings_example(logged_in: tuple[CsrfClient, Member], db_session: Any) -> Any:
    browser, member = logged_in
    limiter.reset()
    assert browser.get("/account/").status_code == 200, "the shared browser was logged out"
    return browser, member, browser.csrf_token("/account/"), member_row(db_session, member.id)


@fuzz_settings(examples=100)
@given(form=form_of(display_name=field(reader_name)))
@example(form={"display_name": "  Leïla   \u202eevil\u202c  "})
@example(form={"display_name": ["First Choice", "Second Choice"]})
@example(form={"display_name": "\x00"})
@example(form={"display_name": MISSING})
def test_changing_the_display_name_saves_a_clean_name_or_nothing(logged_in, db_session, form):
    browser, member, token, before = settings_example(logged_in, db_session)
    expected = cleaned_name(first(form["display_name"]))

    response = browser.post("/account/name", data=form_body(form, token))

    assert_not_a_server_error(response)
    after = member_row(db_session, member.id)
    if response.status_code == 302:
        assert expected is not None, f"accepted an unusable name {form['display_name']!r}"
        assert after["display_name"] == expected
        assert_tidy(after["email"], after["display_name"])
        assert {**after, "display_name": before["display_name"]} == before
    else:
        assert response.status_code == 400
        assert expected is None, f"refused a good name {form['display_name']!r}"
        assert after == before


@fuzz_settings(examples=60)
@given(
    form=form_of(
        email=field(fresh_email()),
        password=field(st.just(PASSWORD), good_weight=6),
    )
)
@example(form={"email": "  New.Address@Example.ORG", "password": PASSWORD})
@example(form={"email": "settings.fuzz@example.org", "password": PASSWORD})
@example(form={"email": "new@example.org\x00", "password": PASSWORD})
@example(form={"email": ["new.one@example.org", "new.two@example.org"], "password": PASSWORD})
def test_asking_to_change_the_email_never_changes_the_account_row(logged_in, db_session, form):
    """The address only changes when the link sent to the new one is followed."""
    browser, member, token, before = settings_example(logged_in, db_session)
    new_email = normalised(first(form["email"]))
    emails_before = count(db_session, OutboundEmail)

    response = browser.post("/account/email", data=form_body(form, token))

    assert_not_a_server_error(response)
    assert member_row(db_session, member.id) == before
    should_accept = (
        new_email is not None and new_email != member.email and first(form["password"]) == PASSWORD
    )
    if response.status_code == 302:
        assert should_accept, f"accepted {form!r}"
        mail = db_session.scalar(select(OutboundEmail).order_by(OutboundEmail.id.desc()).limit(1))
        assert count(db_session, OutboundEmail) == emails_before + 1
        assert mail.to_address == new_email
        assert mail.attempts >= 1, "the email to the new address was never tried"
    else:
        assert response.status_code == 400
        assert not should_accept, f"refused {form!r}"
        assert count(db_session, OutboundEmail) == emails_before


@fuzz_settings(examples=50)
@given(
    form=form_of(
        current_password=field(st.just(PASSWORD), good_weight=6),
        new_password=field(strong_password),
    )
)
@example(form={"current_password": PASSWORD, "new_password": "a fresh \u05e9\u05dc\u05d5\u05dd 🔑"})
@example(form={"current_password": PASSWORD, "new_password": "password"})
@example(form={"current_password": PASSWORD, "new_password": "y" * 20_000})
@example(form={"current_password": [PASSWORD, "other"], "new_password": ["new pass one", "2"]})
def test_changing_the_password_either_changes_it_completely_or_not_at_all(
    logged_in, db_session, form
):
    browser, member, token, before = settings_example(logged_in, db_session)
    new_password = first(form["new_password"])
    should_accept = (
        first(form["current_password"]) == PASSWORD
        and new_password is not None
        and rules.password_problem(new_password, member.email) is None
    )

    response = browser.post("/account/password", data=form_body(form, token))

    assert_not_a_server_error(response)
    after = member_row(db_session, member.id)
    if response.status_code != 302:
        assert response.status_code == 400
        assert not should_accept, f"refused {form!r}"
        assert after == before
        return
    assert should_accept, f"accepted {form!r}"
    assert {**after, "password_hash": before["password_hash"]} == before
    assert password_matches(after["password_hash"], new_password)
    assert browser.get("/account/").status_code == 200, "changing it logged this browser out"
    # Put the old password back, so the next example starts from the same account.
    db_session.execute(
        update(Member).where(Member.id == member.id).values(password_hash=before["password_hash"])
    )
    db_session.commit()


# --- settings: delete the account --------------------------------------------------------------


@fuzz_settings(examples=50)
@given(
    form=form_of(
        password=field(st.just(PASSWORD), good_weight=6),
        confirm=field(st.sampled_from(["y", "on", "true", "false", ""])),
    )
)
@example(form={"password": PASSWORD, "confirm": "y"})
@example(form={"password": PASSWORD, "confirm": MISSING})
@example(form={"password": PASSWORD, "confirm": ["false", "y"]})
@example(form={"password": "\x00", "confirm": "y"})
def test_deleting_the_account_anonymises_it_completely_or_leaves_it_alone(
    client, db_session, make_member, login, form
):
    browser = start(client)
    member = make_member(f"delete.{uuid.uuid4().hex[:12]}@example.org")
    login(member, c=browser)
    before = member_row(db_session, member.id)
    token = browser.csrf_token("/account/delete")
    confirm = first(form["confirm"])
    should_accept = first(form["password"]) == PASSWORD and confirm not in (None, "", "false")

    response = browser.post("/account/delete", data=form_body(form, token))

    assert_not_a_server_error(response)
    after = member_row(db_session, member.id)
    if response.status_code != 302:
        assert response.status_code == 400
        assert not should_accept, f"refused {form!r}"
        assert after == before
        assert browser.get("/account/").status_code == 200, "refused, yet logged out"
        return
    assert should_accept, f"accepted {form!r}"
    assert after["email"] == f"deleted-{member.id}@deleted.invalid"
    assert after["display_name"] == "Deleted member"
    assert after["password_hash"] is None
    assert after["role"] is Role.READER
    assert after["deleted_at"] is not None
    assert count(db_session, LoginSession, LoginSession.member_id == member.id) == 0
    assert count(db_session, OutboundEmail, OutboundEmail.member_id == member.id) == 0
    assert browser.get("/account/").status_code == 302, "deleted, yet still logged in"


# --- bodies that are not forms -----------------------------------------------------------------

FIELD_NAMES = ["display_name", "email", "password", "current_password", "new_password", "confirm"]

json_value = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=6,
)
json_body = st.one_of(
    st.dictionaries(st.sampled_from(FIELD_NAMES), json_value, max_size=6),
    json_value,
)


@st.composite
def non_form_bodies(draw: Any) -> dict[str, Any]:
    """A request description: a JSON body, a multipart form with files, or raw bytes."""
    kind = draw(st.sampled_from(["json", "multipart", "raw"]))
    token_in_header = draw(st.booleans()) if kind != "multipart" else False
    if kind == "json":
        return {"kind": kind, "token_in_header": token_in_header, "body": draw(json_body)}
    if kind == "multipart":
        names = draw(st.lists(st.sampled_from(FIELD_NAMES), min_size=1, max_size=4, unique=True))
        files = {
            name: (draw(st.binary(max_size=200)), draw(st.sampled_from(["", "a.txt", "ü\x00.bin"])))
            for name in names
        }
        text = draw(st.dictionaries(st.sampled_from(FIELD_NAMES), st.text(max_size=20)))
        return {"kind": kind, "token_in_header": False, "files": files, "text": text}
    content_type = draw(
        st.sampled_from(
            [
                "application/x-www-form-urlencoded",
                "multipart/form-data; boundary=xyz",
                "multipart/form-data",
                "text/plain",
                "application/json",
                "application/octet-stream",
            ]
        )
    )
    return {
        "kind": kind,
        "token_in_header": token_in_header,
        "content_type": content_type,
        "body": draw(st.binary(max_size=300)),
    }


def send(browser: CsrfClient, path: str, body: dict[str, Any], token: str) -> Any:
    headers = {"X-CSRFToken": token} if body["token_in_header"] else {}
    if body["kind"] == "json":
        return browser.post(
            path, data=json.dumps(body["body"]), content_type="application/json", headers=headers
        )
    if body["kind"] == "multipart":
        data: dict[str, Any] = {**body["text"], "csrf_token": token}
        for name, (content, filename) in body["files"].items():
            data[name] = (io.BytesIO(content), filename)
        return browser.post(path, data=data, content_type="multipart/form-data")
    return browser.post(path, data=body["body"], content_type=body["content_type"], headers=headers)


FORMS = {
    "signup": "/account/signup",
    "login": "/account/login",
    "display name": "/account/name",
    "change email": "/account/email",
    "change password": "/account/password",
    "delete account": "/account/delete",
}
ANONYMOUS_FORMS = {"signup", "login"}


@pytest.mark.parametrize("form_name", list(FORMS))
@fuzz_settings(examples=30)
@given(body=non_form_bodies())
@example(body={"kind": "json", "token_in_header": True, "body": [1, 2]})
@example(body={"kind": "json", "token_in_header": True, "body": {"email": 5, "password": 5}})
@example(body={"kind": "json", "token_in_header": True, "body": {"display_name": {"a": 1}}})
@example(body={"kind": "json", "token_in_header": False, "body": {"email": "a@example.org"}})
@example(
    body={
        "kind": "multipart",
        "token_in_header": False,
        "files": {name: (b"text in a file", "a.txt") for name in FIELD_NAMES},
        "text": {},
    }
)
def test_a_json_or_file_body_instead_of_a_form_is_refused_not_a_server_error(
    client, db_session, make_member, login, form_name, body
):
    browser = start(client)
    member = make_member(f"body.{uuid.uuid4().hex[:12]}@example.org")
    if form_name not in ANONYMOUS_FORMS:
        login(member, c=browser)
        token = browser.csrf_token("/account/")
    else:
        token = browser.csrf_token("/account/signup")
    before = member_row(db_session, member.id)
    members_before = count(db_session, Member)

    response = send(browser, FORMS[form_name], body, token)

    assert_not_a_server_error(response)
    if response.status_code >= 400:
        assert member_row(db_session, member.id) == before, "a refused request changed the member"
        assert count(db_session, Member) == members_before, "a refused request added a member"
