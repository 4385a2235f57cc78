"""Topic voting through the pages: proposing, moderation, votes, results, the story at the end."""

# ruff: noqa: F811 - pytest fixtures imported from tests.voting_fixtures are used as arguments

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from membership.accounts.models import Role
from membership.database import utcnow
from membership.emails import OutboundEmail
from membership.extensions import db
from membership.voting import demo
from membership.voting.models import Ballot, Round, Topic, TopicStatus, TopicStatusChange, Vote
from tests.voting_fixtures import (  # noqa: F401 - make_patron, open_round, votes_perk: fixtures
    READER_VOTES,
    add_round,
    add_topic,
    lapse,
    make_patron,
    open_round,
    subscribe,
    votes_perk,
)


@pytest.fixture
def staff(make_member, login, another_client):
    """A staff member, logged in in their own browser (``another_client``)."""
    member = make_member("editor@example.org", role=Role.STAFF, display_name="Edith Editor")
    login(member, c=another_client)
    return another_client


def post(client, url, data=None):
    return client.submit(url, data or {}, token_page="/vote")


def vote(client, topic):
    return post(client, f"/vote/topics/{topic.id}/vote")


def unvote(client, topic):
    return post(client, f"/vote/topics/{topic.id}/unvote")


def count(db_session, model, *where):
    db_session.expire_all()
    return db_session.scalar(select(func.count()).select_from(model).where(*where))


def ballot_used(db_session, member):
    db_session.expire_all()
    return db_session.scalar(select(Ballot.used).where(Ballot.member_id == member.id))


def text(response):
    return response.get_data(as_text=True)


# --- proposing ---------------------------------------------------------------------------------


def test_a_patron_proposes_a_topic_and_it_waits_for_moderation(
    client, login, make_patron, open_round, db_session
):
    login(make_patron("olena@example.org"))
    response = post(
        client,
        f"/vote/rounds/{open_round.id}/propose",
        {"title": "  Who owns the city's empty flats? ", "why": "Rents doubled."},
    )
    assert response.status_code == 302
    topic = db_session.scalar(select(Topic).where(Topic.status == TopicStatus.PENDING))
    assert topic.title == "Who owns the city's empty flats?"
    assert topic.why == "Rents doubled."
    page = text(client.get(response.headers["Location"]))
    assert "Your topic is waiting for moderation" in page
    assert "Waiting for moderation" in page  # in "Your proposals"


@pytest.mark.parametrize(
    ("title", "why", "message"),
    [
        ("", "", "Give the topic a title."),
        ("   ", "", "Give the topic a title."),
        ("x" * 141, "", "Keep the title to 140 characters or fewer."),
        ("Fine title", "y" * 2001, "Keep this to 2000 characters or fewer."),
    ],
)
def test_an_empty_or_too_long_proposal_is_refused_next_to_the_field(
    client, login, make_patron, open_round, db_session, title, why, message
):
    login(make_patron())
    response = post(client, f"/vote/rounds/{open_round.id}/propose", {"title": title, "why": why})
    assert response.status_code == 400
    page = text(response)
    field = "title" if "title" in message else "why"
    assert f'id="{field}-{open_round.id}-error">{message}</p>' in page
    assert count(db_session, Topic, Topic.status == TopicStatus.PENDING) == 0


def test_html_in_a_proposal_is_shown_as_text_everywhere(
    client, login, make_patron, open_round, db_session, staff
):
    login(make_patron())
    script = "<script>alert('x')</script>"
    post(client, f"/vote/rounds/{open_round.id}/propose", {"title": script, "why": script})
    topic = db_session.scalar(select(Topic).where(Topic.status == TopicStatus.PENDING))
    pages = [
        text(client.get("/vote")),
        text(client.get(f"/vote/topics/{topic.id}")),
        text(staff.get(f"/staff/voting/rounds/{open_round.id}")),
    ]
    for page in pages:
        assert script not in page
        assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in page


def test_a_reader_who_is_not_a_patron_cannot_propose(
    client, login, make_member, open_round, db_session, votes_perk
):
    login(make_member())
    response = post(client, f"/vote/rounds/{open_round.id}/propose", {"title": "Trains"})
    assert response.status_code == 403
    assert "become a patron to propose" in text(response)
    assert count(db_session, Topic, Topic.title == "Trains") == 0


def test_a_patron_proposing_too_often_is_asked_to_wait(
    client, login, make_patron, open_round, db_session
):
    login(make_patron())
    url = f"/vote/rounds/{open_round.id}/propose"
    for n in range(5):
        assert post(client, url, {"title": f"Idea {n}"}).status_code == 302
    response = post(client, url, {"title": "Idea 6"})
    assert response.status_code == 429
    assert "Please wait a little" in text(response)
    assert count(db_session, Topic, Topic.status == TopicStatus.PENDING) == 5


def test_proposing_to_a_closed_or_unknown_round_is_refused(client, login, make_patron, db_session):
    login(make_patron())
    closed = add_round(
        db_session, opens_at=utcnow() - timedelta(days=3), closes_at=utcnow() - timedelta(days=1)
    )
    assert post(client, f"/vote/rounds/{closed.id}/propose", {"title": "Late"}).status_code == 409
    assert post(client, "/vote/rounds/987654/propose", {"title": "Nowhere"}).status_code == 404
    assert count(db_session, Topic) == 0


# --- moderation --------------------------------------------------------------------------------


@pytest.fixture
def proposal(client, login, make_patron, open_round, db_session):
    proposer = make_patron("proposer@example.org", display_name="Priya Proposer")
    login(proposer)
    post(client, f"/vote/rounds/{open_round.id}/propose", {"title": "Bus lanes", "why": "Slow"})
    return db_session.scalar(select(Topic).where(Topic.title == "Bus lanes"))


def test_staff_approve_a_proposal_and_the_proposer_is_emailed(
    staff, proposal, mailbox, db_session, client
):
    response = staff.submit(
        f"/staff/voting/topics/{proposal.id}/approve", token_page="/staff/voting"
    )
    assert response.status_code == 302
    db_session.expire_all()
    assert proposal.status is TopicStatus.APPROVED
    mail = mailbox.last_to("proposer@example.org")
    assert mail["Subject"] == "Your topic is on the ballot"
    assert "Bus lanes" in mailbox.text(mail)
    assert "Bus lanes" in text(client.get("/vote"))


def test_staff_reject_a_proposal_with_a_reason_the_proposer_sees(
    staff, proposal, mailbox, db_session, client, another_client
):
    url = f"/staff/voting/topics/{proposal.id}/reject"
    empty = staff.submit(url, {"reason": " "}, token_page="/staff/voting")
    assert empty.status_code == 400
    assert "Tell the proposer why." in text(empty)
    assert not mailbox.to("proposer@example.org")

    response = staff.submit(url, {"reason": "We covered it in May."}, token_page="/staff/voting")
    assert response.status_code == 302
    db_session.expire_all()
    assert proposal.status is TopicStatus.REJECTED and proposal.reason == "We covered it in May."
    assert "We covered it in May." in mailbox.text(mailbox.last_to("proposer@example.org"))
    assert "We covered it in May." in text(client.get("/vote"))  # "Your proposals"
    assert "We covered it in May." in text(client.get(f"/vote/topics/{proposal.id}"))
    # Nobody else sees a rejected proposal.
    staff.submit("/account/logout", token_page="/vote")
    assert another_client.get(f"/vote/topics/{proposal.id}").status_code == 404


def test_staff_merge_a_proposal_into_a_topic_on_the_ballot(
    staff, proposal, open_round, mailbox, db_session, client
):
    target = db_session.scalar(select(Topic).where(Topic.title == "Housing costs"))
    response = staff.submit(
        f"/staff/voting/topics/{proposal.id}/merge", {"into": target.id}, token_page="/staff/voting"
    )
    assert response.status_code == 302
    db_session.expire_all()
    assert proposal.status is TopicStatus.MERGED and proposal.merged_into_id == target.id
    mail = mailbox.text(mailbox.last_to("proposer@example.org"))
    assert "Housing costs" in mail and f"/vote/topics/{target.id}" in mail
    page = text(client.get(f"/vote/topics/{proposal.id}"))
    assert f"/vote/topics/{target.id}" in page


def test_a_proposal_cannot_be_merged_into_itself_or_another_rounds_topic(
    staff, proposal, db_session, mailbox
):
    other = add_round(db_session, title="Another round")
    elsewhere = add_topic(db_session, other, "Elsewhere")
    for into in (proposal.id, elsewhere.id, 987654, "nonsense"):
        response = staff.submit(
            f"/staff/voting/topics/{proposal.id}/merge", {"into": into}, token_page="/staff/voting"
        )
        assert response.status_code == 400, into
        assert "Choose a topic on this round" in text(response)
    db_session.expire_all()
    assert proposal.status is TopicStatus.PENDING
    assert not mailbox.to("proposer@example.org")


def test_a_decided_proposal_cannot_be_decided_again(staff, proposal, db_session, mailbox):
    staff.submit(f"/staff/voting/topics/{proposal.id}/approve", token_page="/staff/voting")
    again = staff.submit(
        f"/staff/voting/topics/{proposal.id}/reject", {"reason": "No"}, token_page="/staff/voting"
    )
    assert again.status_code == 409
    db_session.expire_all()
    assert proposal.status is TopicStatus.APPROVED
    assert len(mailbox.to("proposer@example.org")) == 1


def test_staff_open_a_round_and_seed_topics_that_are_approved_directly(staff, db_session):
    now = utcnow()
    form = {
        "title": "Winter round",
        "description": "What should we investigate this winter?",
        "opens_at": (now - timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M"),
        "closes_at": (now + timedelta(days=14)).strftime("%Y-%m-%dT%H:%M"),
        "results_live": "y",
    }
    bad = staff.submit(
        "/staff/voting/rounds/new",
        {**form, "closes_at": form["opens_at"]},
        token_page="/staff/voting/rounds/new",
    )
    assert bad.status_code == 400 and "The round must close after it opens." in text(bad)
    response = staff.submit("/staff/voting/rounds/new", form, token_page="/staff/voting/rounds/new")
    assert response.status_code == 302
    round_ = db_session.scalar(select(Round).where(Round.title == "Winter round"))
    assert round_.results_live and not round_.staff_see_voters
    assert not round_.drop_votes_of_lapsed, "by default a lapsed patron's votes stay"

    added = staff.submit(
        f"/staff/voting/rounds/{round_.id}/topics",
        {"title": "Heating bills", "why": ""},
        token_page="/staff/voting",
    )
    assert added.status_code == 302
    empty = staff.submit(
        f"/staff/voting/rounds/{round_.id}/topics", {"title": ""}, token_page="/staff/voting"
    )
    assert empty.status_code == 400 and "Give the topic a title." in text(empty)
    topic = db_session.scalar(select(Topic).where(Topic.round_id == round_.id))
    assert topic.status is TopicStatus.APPROVED
    assert [c.to_status for c in topic.history] == [TopicStatus.APPROVED]


# --- voting ------------------------------------------------------------------------------------


def topics_of(db_session, round_):
    return db_session.scalars(
        select(Topic).where(Topic.round_id == round_.id).order_by(Topic.id)
    ).all()


def test_a_patron_votes_within_their_budget_and_sees_what_is_left(
    client, login, make_patron, open_round, db_session
):
    patron = make_patron()
    login(patron)
    housing, river, _ = topics_of(db_session, open_round)
    assert f"You have {READER_VOTES} of {READER_VOTES} votes left" in text(client.get("/vote"))
    assert vote(client, housing).status_code == 302
    assert vote(client, river).status_code == 302
    page = text(client.get("/vote"))
    assert "You have 1 of 3 votes left" in page
    assert page.count("You voted for this.") == 2
    assert ballot_used(db_session, patron) == 2
    assert count(db_session, Vote, Vote.member_id == patron.id) == 2


def test_a_patron_cannot_vote_twice_for_one_topic(
    client, login, make_patron, open_round, db_session
):
    patron = make_patron()
    login(patron)
    housing = topics_of(db_session, open_round)[0]
    vote(client, housing)
    again = vote(client, housing)
    assert again.status_code == 409
    assert "You already voted for this topic." in text(again)
    assert ballot_used(db_session, patron) == 1
    assert count(db_session, Vote, Vote.topic_id == housing.id) == 1


def test_a_patron_with_no_votes_left_is_told_so_and_nothing_changes(
    client, login, make_patron, open_round, db_session
):
    patron = make_patron()
    login(patron)
    extra = add_topic(db_session, open_round, "Fourth topic")
    for topic in topics_of(db_session, open_round)[:3]:
        assert vote(client, topic).status_code == 302
    refused = vote(client, extra)
    assert refused.status_code == 409
    assert "You have no votes left in this round." in text(refused)
    assert ballot_used(db_session, patron) == 3
    assert count(db_session, Vote, Vote.member_id == patron.id) == 3
    assert "No votes left: take one back" in text(client.get("/vote"))


def test_a_patron_moves_a_vote_by_taking_it_back_and_giving_it_again(
    client, login, make_patron, open_round, db_session
):
    patron = make_patron()
    login(patron)
    extra = add_topic(db_session, open_round, "Fourth topic")
    housing, river, meals = topics_of(db_session, open_round)[:3]
    for topic in (housing, river, meals):
        vote(client, topic)
    assert unvote(client, housing).status_code == 302
    assert ballot_used(db_session, patron) == 2
    assert vote(client, extra).status_code == 302
    voted_for = set(db_session.scalars(select(Vote.topic_id).where(Vote.member_id == patron.id)))
    assert voted_for == {river.id, meals.id, extra.id}
    assert ballot_used(db_session, patron) == 3
    again = unvote(client, housing)
    assert again.status_code == 409 and "You have not voted for this topic." in text(again)
    assert ballot_used(db_session, patron) == 3


def test_a_patron_who_moves_up_a_tier_gets_the_bigger_budget(
    client, login, make_patron, open_round, db_session, catalog
):
    patron = make_patron()
    login(patron)
    for topic in topics_of(db_session, open_round):
        vote(client, topic)
    fourth = add_topic(db_session, open_round, "Fourth topic")
    assert vote(client, fourth).status_code == 409
    lapse(db_session, patron)
    subscribe(db_session, patron, catalog["co-creator"])
    assert vote(client, fourth).status_code == 302
    db_session.expire_all()
    assert db_session.scalar(select(Ballot.budget).where(Ballot.member_id == patron.id)) == 5


def test_votes_in_a_closed_round_are_refused(client, login, make_patron, db_session):
    patron = make_patron()
    login(patron)
    round_ = add_round(
        db_session, opens_at=utcnow() - timedelta(days=3), closes_at=utcnow() - timedelta(seconds=1)
    )
    topic = add_topic(db_session, round_, "Too late")
    refused = vote(client, topic)
    assert refused.status_code == 409
    assert "This round has closed" in text(refused)
    assert count(db_session, Vote) == 0 and count(db_session, Ballot) == 0


def test_staff_closing_a_round_early_stops_the_votes_and_freezes_the_results(
    client, login, make_patron, open_round, db_session, staff
):
    login(make_patron())
    housing, river, _ = topics_of(db_session, open_round)
    vote(client, housing)
    response = staff.submit(
        f"/staff/voting/rounds/{open_round.id}/close", token_page="/staff/voting"
    )
    assert response.status_code == 302
    db_session.expire_all()
    assert open_round.closed_at is not None
    assert housing.final_votes == 1 and river.final_votes == 0
    assert vote(client, river).status_code == 409
    assert unvote(client, housing).status_code == 409
    again = staff.submit(f"/staff/voting/rounds/{open_round.id}/close", token_page="/staff/voting")
    assert again.status_code == 409


def test_a_topic_that_is_not_on_the_ballot_cannot_be_voted_for(
    client, login, make_patron, open_round, db_session
):
    login(make_patron())
    pending = add_topic(db_session, open_round, "Pending", TopicStatus.PENDING)
    rejected = add_topic(db_session, open_round, "Rejected", TopicStatus.REJECTED, reason="No")
    for topic in (pending, rejected):
        refused = vote(client, topic)
        assert refused.status_code == 409
        assert "This topic is not on the ballot." in text(refused)
    assert count(db_session, Vote) == 0


def test_a_vote_always_goes_to_the_round_of_its_topic(
    client, login, make_patron, open_round, db_session
):
    """The ballot charged is the one of the topic's own round, not of another round."""
    patron = make_patron()
    login(patron)
    other = add_round(
        db_session,
        title="Other round",
        opens_at=utcnow() + timedelta(days=1),
        closes_at=utcnow() + timedelta(days=5),
    )
    upcoming_topic = add_topic(db_session, other, "Not yet")
    refused = vote(client, upcoming_topic)
    assert refused.status_code == 409 and "has not opened yet" in text(refused)
    housing = topics_of(db_session, open_round)[0]
    vote(client, housing)
    db_session.expire_all()
    ballot = db_session.scalar(select(Ballot).where(Ballot.member_id == patron.id))
    assert ballot.round_id == open_round.id
    assert count(db_session, Ballot) == 1


def test_a_reader_who_is_not_a_patron_is_invited_to_become_one_and_cannot_vote(
    client, login, make_member, open_round, db_session, votes_perk
):
    login(make_member())
    page = text(client.get("/vote"))
    assert "Housing costs" in page
    assert "Become a patron to vote" in page and 'href="/support"' in page
    assert "Propose a topic" not in page
    refused = vote(client, topics_of(db_session, open_round)[0])
    assert refused.status_code == 403
    assert "Voting is a patron perk" in text(refused)
    assert count(db_session, Vote) == 0 and count(db_session, Ballot) == 0


def test_a_visitor_who_is_not_logged_in_sees_the_ballot_and_is_sent_to_log_in_to_vote(
    client, open_round, db_session
):
    page = text(client.get("/vote"))
    assert "Housing costs" in page and "Become a patron to vote" in page
    topic = topics_of(db_session, open_round)[0]
    response = client.submit(f"/vote/topics/{topic.id}/vote")  # a token from the login page
    assert response.status_code == 302 and "/account/login" in response.headers["Location"]
    assert count(db_session, Vote) == 0


def test_unknown_topics_and_rounds_are_404_with_a_message(client, login, make_patron):
    login(make_patron())
    for response in (
        vote(client, type("T", (), {"id": 987654})),
        unvote(client, type("T", (), {"id": 987654})),
        client.get("/vote/topics/987654"),
        client.get("/vote/rounds/987654"),
    ):
        assert response.status_code == 404
        assert "There is no such" in text(response)


# --- results -----------------------------------------------------------------------------------


def test_counts_are_shown_live_only_when_the_round_says_so(
    client, login, make_patron, db_session, another_client
):
    hidden = add_round(db_session, title="Hidden counts", results_live=False)
    topic = add_topic(db_session, hidden, "Secret count")
    login(make_patron())
    vote(client, topic)
    for browser in (client, another_client):
        page = text(browser.get(f"/vote/rounds/{hidden.id}"))
        assert "Results are shown when the round closes." in page
        assert "1 vote" not in page
    hidden.results_live = True
    db_session.commit()
    assert "1 vote" in text(another_client.get(f"/vote/rounds/{hidden.id}"))


def test_results_appear_at_close_and_reading_them_writes_nothing(
    client, login, make_patron, db_session, another_client, new_browser
):
    round_ = add_round(db_session, results_live=False)
    first, second = add_topic(db_session, round_, "First"), add_topic(db_session, round_, "Second")
    for _ in range(2):
        browser = new_browser()
        login(make_patron(), c=browser)
        vote(browser, first)
    vote(browser, second)
    round_.closes_at = utcnow() - timedelta(seconds=1)
    round_.opens_at = utcnow() - timedelta(days=2)
    db_session.commit()
    page = text(another_client.get(f"/vote/rounds/{round_.id}"))
    assert "This round has closed" in page
    assert "2 votes" in page and "1 vote" in page and "Winner" in page
    assert page.index("First") < page.index("Second")
    db_session.expire_all()
    assert (first.final_votes, second.final_votes) == (None, None), "a GET changes nothing"
    assert round_.closed_at is None


def test_close_due_command_freezes_rounds_whose_time_has_passed(
    runner, db_session, make_patron, client, login
):
    round_ = add_round(db_session)
    topic = add_topic(db_session, round_, "Counted")
    login(make_patron())
    vote(client, topic)
    round_.closes_at = utcnow() - timedelta(minutes=1)
    db_session.commit()
    result = runner.invoke(args=["voting", "close-due"])
    assert result.exit_code == 0, result.output
    assert "Closed 1 round(s)." in result.output
    db_session.expire_all()
    assert topic.final_votes == 1 and round_.closed_at is not None
    assert "Closed 0 round(s)." in runner.invoke(args=["voting", "close-due"]).output


def test_votes_are_anonymous_and_staff_see_names_only_if_the_round_allows(
    client, login, make_patron, db_session, staff, new_browser
):
    named = add_round(db_session, title="Named", staff_see_voters=True, results_live=True)
    counted = add_round(db_session, title="Counted", staff_see_voters=False, results_live=True)
    a, b = add_topic(db_session, named, "Topic A"), add_topic(db_session, counted, "Topic B")
    login(make_patron(display_name="Valentina Voter"))
    vote(client, a)
    vote(client, b)
    assert "Valentina Voter" in text(staff.get(f"/staff/voting/rounds/{named.id}"))
    page = text(staff.get(f"/staff/voting/rounds/{counted.id}"))
    assert "Valentina Voter" not in page and "<td>1</td>" in page
    other_patron = new_browser()
    login(make_patron(), c=other_patron)
    assert "Valentina Voter" not in text(other_patron.get(f"/vote/rounds/{named.id}"))


def test_a_lapsed_patrons_votes_stay_unless_the_round_drops_them(
    client, login, make_patron, db_session, runner
):
    keep = add_round(db_session, title="Keep", results_live=True)
    drop = add_round(db_session, title="Drop", results_live=True, drop_votes_of_lapsed=True)
    kept, dropped = add_topic(db_session, keep, "Kept vote"), add_topic(db_session, drop, "Dropped")
    patron = make_patron()
    login(patron)
    vote(client, kept)
    vote(client, dropped)
    lapse(db_session, patron)
    assert "1 vote" in text(client.get(f"/vote/rounds/{keep.id}"))
    assert "0 votes" in text(client.get(f"/vote/rounds/{drop.id}"))
    for round_ in (keep, drop):
        round_.closes_at = utcnow() - timedelta(seconds=1)
    db_session.commit()
    assert runner.invoke(args=["voting", "close-due"]).exit_code == 0
    db_session.expire_all()
    assert (kept.final_votes, dropped.final_votes) == (1, 0)


# --- after the round: the loop closes ----------------------------------------------------------


@pytest.fixture
def closed_round_with_voters(client, login, make_patron, db_session, new_browser):
    round_ = add_round(db_session, title="Autumn round")
    winner = add_topic(db_session, round_, "Water prices")
    other = add_topic(db_session, round_, "Parking")
    voters = []
    for n in range(3):
        patron = make_patron(f"voter{n}@example.org")
        browser = new_browser()
        login(patron, c=browser)
        vote(browser, winner)
        voters.append(patron)
    browser = new_browser()
    login(make_patron("other@example.org"), c=browser)
    vote(browser, other)
    round_.closes_at = utcnow() - timedelta(seconds=1)
    db_session.commit()
    return round_, winner, other


@pytest.fixture
def new_browser(app, client):
    return app.test_client


def set_status(staff, topic, status, **data):
    return staff.submit(
        f"/staff/voting/topics/{topic.id}/status",
        {"status": status, **data},
        token_page="/staff/voting",
    )


def test_staff_follow_a_winner_to_publication_and_its_voters_are_emailed_once(
    staff, closed_round_with_voters, mailbox, db_session, client
):
    _, winner, _ = closed_round_with_voters
    assert set_status(staff, winner, "planned").status_code == 302
    assert set_status(staff, winner, "in_coverage", note="Two reporters on it").status_code == 302
    bad = set_status(staff, winner, "published", story_url="javascript:alert(1)")
    assert bad.status_code == 400
    assert "Give a full web address starting with https://" in text(bad)
    assert not mailbox.to("voter0@example.org")

    url = "https://news.example.org/2026/water-prices"
    assert set_status(staff, winner, "published", story_url=url).status_code == 302
    voters = {f"voter{n}@example.org" for n in range(3)}
    assert {m["To"] for m in mailbox.messages if "You asked, we covered" in m["Subject"]} == voters
    assert url in mailbox.text(mailbox.last_to("voter0@example.org"))
    assert not mailbox.to("other@example.org")

    again = set_status(staff, winner, "published", story_url=url + "-2")
    assert again.status_code == 409
    assert len(mailbox.to("voter1@example.org")) == 1
    assert count(db_session, OutboundEmail, OutboundEmail.template == "topic_published") == 3
    db_session.expire_all()
    assert winner.story_url == url

    page = text(client.get(f"/vote/topics/{winner.id}"))
    assert url in page and "Two reporters on it" in page
    history = [c.to_status for c in winner.history]
    assert history == [TopicStatus.PLANNED, TopicStatus.IN_COVERAGE, TopicStatus.PUBLISHED]
    shown = page.split("<h2>History</h2>")[1]
    assert (
        shown.index("Planned") < shown.index("Our reporters are on it") < shown.index("Published")
    )


def test_staff_decline_a_topic_with_a_reason_readers_see(
    staff, closed_round_with_voters, db_session, client, mailbox
):
    _, _, other = closed_round_with_voters
    no_reason = set_status(staff, other, "declined")
    assert no_reason.status_code == 400 and "Say why the newsroom will not cover it." in text(
        no_reason
    )
    assert set_status(staff, other, "declined", note="A colleague covered it.").status_code == 302
    assert "A colleague covered it." in text(client.get(f"/vote/topics/{other.id}"))
    assert not mailbox.to("other@example.org")
    assert count(db_session, TopicStatusChange, TopicStatusChange.topic_id == other.id) == 1


def test_topics_are_not_marked_planned_while_the_round_is_open(staff, open_round, db_session):
    topic = topics_of(db_session, open_round)[0]
    refused = set_status(staff, topic, "planned")
    assert refused.status_code == 409 and "after the round" in text(refused)
    db_session.expire_all()
    assert topic.status is TopicStatus.APPROVED


def test_you_asked_we_covered_lists_closed_rounds_winners_and_stories(
    staff, closed_round_with_voters, client, db_session
):
    _, winner, _ = closed_round_with_voters
    url = "https://news.example.org/2026/water-prices"
    set_status(staff, winner, "published", story_url=url)
    page = text(client.get("/vote/covered"))
    assert "Autumn round" in page and "Water prices" in page and "(3 votes)" in page
    assert f'href="{url}"' in page
    assert "Parking" not in page  # neither a winner nor followed up
    assert "What should we cover next?" not in page  # no open rounds


def test_you_asked_shows_counts_of_a_round_past_its_close_before_they_are_stored(
    closed_round_with_voters, client
):
    round_, _, _ = closed_round_with_voters
    assert round_.closed_at is None  # ``voting close-due`` has not run yet
    page = re.sub(r"<[^>]+>", "", text(client.get("/vote/covered")))
    assert "Water prices (3 votes)" in page and "None" not in page
    assert f"Closed {round_.closes_at:%-d %B %Y, %H:%M} UTC" in page


def test_staff_pages_list_rounds_and_pending_proposals(staff, proposal, open_round):
    rounds = text(staff.get("/staff/voting"))
    assert open_round.title in rounds
    page = text(staff.get(f"/staff/voting/rounds/{open_round.id}"))
    assert "Bus lanes" in page and "Priya Proposer" in page
    assert 'for="reason-' in page and "Merge into" in page
    assert staff.get("/staff/voting/rounds/987654").status_code == 404


def test_the_demo_rounds_can_be_added_twice_and_show_a_published_story(app, client, db_session):
    for _ in range(2):
        with app.app_context():
            demo.seed_demo(db.session)
            db.session.commit()
    assert count(db_session, Round) == 2
    assert count(db_session, Topic, Topic.status == TopicStatus.PENDING) == 1
    vote_page = text(client.get("/vote"))
    assert demo.OPEN_TITLE in vote_page and "What happened to the library" not in vote_page
    covered = text(client.get("/vote/covered"))
    assert "Who pays for the water?" in covered and demo.STORY_URL in covered
    winner = db_session.scalar(select(Topic).where(Topic.title == "Who pays for the water?"))
    assert len(winner.history) == 4


def test_a_script_voting_and_unvoting_in_a_loop_is_slowed_down(
    client, login, make_patron, db_session
):
    round_ = add_round(db_session, results_live=True)
    topic = add_topic(db_session, round_, "Looped")
    login(make_patron())
    token = client.csrf_token("/vote")
    statuses = []
    for i in range(61):
        action = "vote" if i % 2 == 0 else "unvote"
        statuses.append(
            client.post(f"/vote/topics/{topic.id}/{action}", data={"csrf_token": token}).status_code
        )
    assert 429 not in statuses[:60]
    assert statuses[60] == 429
    assert count(db_session, Vote, Vote.topic_id == topic.id) <= 1
