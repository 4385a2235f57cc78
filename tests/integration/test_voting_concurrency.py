"""Votes arriving at once, with real commits on a fresh database (SQLite and PostgreSQL).

The rolled-back test transaction of ``db_session`` would serialise everything on one connection,
so these tests get their own database and app, and each request commits for real. On SQLite,
``BEGIN IMMEDIATE`` makes writers take turns; on PostgreSQL they truly overlap, and the ballot's
CHECK and the votes' unique key are what keep the numbers right.
"""

from __future__ import annotations

import contextlib
import threading
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import flask_migrate
import pytest
from aiosmtpd.controller import Controller
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from membership import create_app
from membership.accounts import service as accounts
from membership.accounts.models import Member
from membership.accounts.views import AUTH_TOKEN_KEY
from membership.billing.models import Price, Tier
from membership.billing.rules import Interval
from membership.database import utcnow
from membership.extensions import db
from membership.voting.models import Ballot, Round, Topic, TopicStatus, Vote
from tests.conftest import Mailbox, settings_for_tests
from tests.voting_fixtures import grant_votes, subscribe


@pytest.fixture
def live_app(fresh_database: str, smtp_server: tuple[Controller, Mailbox]) -> Iterator[Flask]:
    """The app on the fresh database with a Reader tier whose patrons get 5 votes a round.

    CSRF is off: these tests are about the database, and every form's token is tested elsewhere.
    """
    app = create_app(
        {
            **settings_for_tests(fresh_database, smtp_server[0].port),
            "WTF_CSRF_ENABLED": False,
            "SQLALCHEMY_ENGINE_OPTIONS": {"pool_size": 10, "max_overflow": 20},
        }
    )
    try:
        with app.app_context():
            flask_migrate.upgrade()
            tier = Tier(slug="reader", name="Reader", position=0)
            db.session.add(tier)
            db.session.flush()
            db.session.add(
                Price(
                    tier_id=tier.id,
                    interval=Interval.MONTH,
                    currency="EUR",
                    amount=500,
                    stripe_plan_id="membership-reader-month-eur-500",
                )
            )
            db.session.commit()
            grant_votes(db.session, tier, votes=5)
        yield app
    finally:
        with app.app_context():
            db.engine.dispose()


def in_app(app: Flask, work: Callable[[Any], Any]) -> Any:
    with app.app_context():
        result = work(db.session)
        db.session.commit()
        return result


PASSWORD_HASH: list[str] = []


def patrons(app: Flask, how_many: int) -> list[FlaskClient]:
    """``how_many`` patrons, each logged in in their own browser (without the login form)."""
    if not PASSWORD_HASH:
        PASSWORD_HASH.append(accounts.hash_password("not used to log in"))

    def make(session: Any) -> list[tuple[int, str]]:
        tier = session.scalar(select(Tier))
        made = []
        for _ in range(how_many):
            member = Member(
                email=f"patron-{uuid.uuid4().hex[:12]}@example.org",
                display_name="Racing Patron",
                email_confirmed_at=utcnow(),
                password_hash=PASSWORD_HASH[0],
            )
            session.add(member)
            session.flush()
            subscribe(session, member, tier, commit=False)
            made.append((member.id, accounts.start_login_session(session, member)))
        return made

    browsers = []
    for member_id, token in in_app(app, make):
        browser = app.test_client()
        with browser.session_transaction() as cookie:
            cookie["_user_id"] = str(member_id)
            cookie["_fresh"] = True
            cookie[AUTH_TOKEN_KEY] = token
        browsers.append(browser)
    return browsers


def same_browser(app: Flask, browser: FlaskClient) -> FlaskClient:
    """Another tab of the same browser: a new client with the same cookies."""
    tab = app.test_client()
    name = app.config["SESSION_COOKIE_NAME"]
    cookie = browser.get_cookie(name)
    assert cookie is not None
    tab.set_cookie(name, cookie.value, domain=cookie.domain, path=cookie.path)
    return tab


def open_round(app: Flask, topics: int) -> list[int]:
    def make(session: Any) -> list[int]:
        round_ = Round(
            title="Racing round",
            opens_at=utcnow() - timedelta(hours=1),
            closes_at=utcnow() + timedelta(days=1),
            results_live=True,
        )
        session.add(round_)
        session.flush()
        made = [
            Topic(round_id=round_.id, title=f"Topic {n}", status=TopicStatus.APPROVED)
            for n in range(topics)
        ]
        session.add_all(made)
        session.flush()
        return [t.id for t in made]

    return in_app(app, make)


def at_once(requests: list[Callable[[], Any]], workers: int) -> list[Any]:
    """Run the requests from ``workers`` threads, all starting together."""
    barrier = threading.Barrier(min(workers, len(requests)))

    def run(request: Callable[[], Any]) -> Any:
        # Only the first request of each thread waits: the others start as soon as they can.
        with contextlib.suppress(threading.BrokenBarrierError):
            barrier.wait(timeout=5)
        return request()

    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(run, requests, timeout=120))


def count(app: Flask, model: Any, *where: Any) -> int:
    return in_app(app, lambda s: s.scalar(select(func.count()).select_from(model).where(*where)))


def test_fifty_votes_at_once_by_one_patron_give_exactly_their_five_votes(live_app):
    topics = open_round(live_app, 50)
    (browser,) = patrons(live_app, 1)
    tabs = [same_browser(live_app, browser) for _ in topics]

    def voter(i: int) -> Callable[[], int]:
        return lambda: tabs[i].post(f"/vote/topics/{topics[i]}/vote").status_code

    statuses = at_once([voter(i) for i in range(len(topics))], workers=25)

    assert sorted(statuses) == [302] * 5 + [409] * 45, statuses
    assert count(live_app, Vote) == 5
    assert in_app(live_app, lambda s: s.scalar(select(Ballot.used))) == 5
    assert count(live_app, Ballot) == 1


def test_two_hundred_patrons_voting_at_once_are_all_counted_exactly(live_app):
    topics = open_round(live_app, 4)
    browsers = patrons(live_app, 200)

    def voter(i: int) -> Callable[[], int]:
        topic = topics[i % len(topics)]
        return lambda: browsers[i].post(f"/vote/topics/{topic}/vote").status_code

    statuses = at_once([voter(i) for i in range(len(browsers))], workers=10)

    assert statuses == [302] * 200, [s for s in statuses if s != 302]
    counts = in_app(
        live_app,
        lambda s: {
            topic: votes
            for topic, votes in s.execute(
                select(Vote.topic_id, func.count()).group_by(Vote.topic_id)
            ).all()
        },
    )
    assert counts == dict.fromkeys(topics, 50)
    assert in_app(live_app, lambda s: s.scalar(select(func.sum(Ballot.used)))) == 200
    page = browsers[0].get(f"/vote/rounds/{in_app(live_app, lambda s: s.scalar(select(Round.id)))}")
    assert page.get_data(as_text=True).count("50 votes") == 4


def test_a_double_click_on_take_back_returns_the_vote_once(live_app):
    topics = open_round(live_app, 2)
    (browser,) = patrons(live_app, 1)
    assert browser.post(f"/vote/topics/{topics[0]}/vote").status_code == 302
    tabs = [same_browser(live_app, browser) for _ in range(10)]

    statuses = at_once(
        [lambda tab=tab: tab.post(f"/vote/topics/{topics[0]}/unvote").status_code for tab in tabs],
        workers=10,
    )

    assert sorted(statuses) == [302] + [409] * 9, statuses
    assert count(live_app, Vote) == 0
    assert in_app(live_app, lambda s: s.scalar(select(Ballot.used))) == 0
