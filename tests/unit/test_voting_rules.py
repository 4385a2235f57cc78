"""The rules of voting, without a database: when a round is open, who sees counts, budgets,
which status changes staff may make, and what a story address must look like."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from membership.voting import rules
from membership.voting.rules import RoundPhase, RuleError, TopicStatus

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)


@pytest.mark.parametrize(
    ("opens", "closes", "closed_at", "expected"),
    [
        (NOW + DAY, NOW + 2 * DAY, None, RoundPhase.UPCOMING),
        (NOW, NOW + DAY, None, RoundPhase.OPEN),
        (NOW - DAY, NOW + DAY, None, RoundPhase.OPEN),
        (NOW - DAY, NOW, None, RoundPhase.CLOSED),  # closes_at itself is already closed
        (NOW - 2 * DAY, NOW - DAY, None, RoundPhase.CLOSED),
        (NOW - DAY, NOW + DAY, NOW - timedelta(hours=1), RoundPhase.CLOSED),  # closed early
    ],
)
def test_a_round_is_open_between_its_times_and_closed_when_staff_close_it(
    opens, closes, closed_at, expected
):
    assert rules.round_phase(opens, closes, closed_at, NOW) is expected


def test_readers_see_counts_live_only_if_the_round_says_so_and_always_at_close():
    assert rules.results_visible(True, RoundPhase.OPEN)
    assert not rules.results_visible(False, RoundPhase.OPEN)
    assert rules.results_visible(False, RoundPhase.CLOSED)
    assert not rules.results_visible(True, RoundPhase.UPCOMING)
    assert rules.results_visible(False, RoundPhase.OPEN, staff=True)


@pytest.mark.parametrize(
    ("perk_votes", "used", "budget"),
    [(3, 0, 3), (5, 3, 5), (1, 3, 3), (0, 2, 2), (0, 0, 0)],
)
def test_a_ballot_grows_with_the_tier_but_never_below_the_votes_already_cast(
    perk_votes, used, budget
):
    assert rules.ballot_budget(perk_votes, used) == budget


def test_proposals_are_moderated_only_while_the_round_runs():
    for target in (TopicStatus.APPROVED, TopicStatus.REJECTED, TopicStatus.MERGED):
        assert rules.next_status(TopicStatus.PENDING, target, round_closed=False) is target
    with pytest.raises(RuleError, match="closed"):
        rules.next_status(TopicStatus.PENDING, TopicStatus.APPROVED, round_closed=True)


def test_what_became_of_a_topic_is_marked_after_the_round_in_order():
    closed = {"round_closed": True}
    assert rules.next_status(TopicStatus.APPROVED, TopicStatus.PLANNED, **closed)
    assert rules.next_status(TopicStatus.PLANNED, TopicStatus.IN_COVERAGE, **closed)
    assert rules.next_status(TopicStatus.IN_COVERAGE, TopicStatus.PUBLISHED, **closed)
    assert rules.next_status(TopicStatus.IN_COVERAGE, TopicStatus.DECLINED, **closed)
    with pytest.raises(RuleError, match="after the round"):
        rules.next_status(TopicStatus.APPROVED, TopicStatus.PLANNED, round_closed=False)


@pytest.mark.parametrize(
    ("current", "target"),
    [
        (TopicStatus.PUBLISHED, TopicStatus.PUBLISHED),  # a second publish
        (TopicStatus.PUBLISHED, TopicStatus.PLANNED),
        (TopicStatus.REJECTED, TopicStatus.APPROVED),
        (TopicStatus.MERGED, TopicStatus.PLANNED),
        (TopicStatus.PENDING, TopicStatus.PUBLISHED),
        (TopicStatus.IN_COVERAGE, TopicStatus.PLANNED),
    ],
)
def test_impossible_status_changes_are_refused_with_a_reason(current, target):
    with pytest.raises(RuleError) as refused:
        rules.next_status(current, target, round_closed=True)
    assert refused.value.message


@pytest.mark.parametrize(
    "url", ["https://news.example.org/2026/rivers", "http://example.org/a?b=c#d"]
)
def test_a_story_address_is_a_full_web_address(url):
    assert rules.clean_story_url(f"  {url} ") == url


@pytest.mark.parametrize(
    "url",
    [
        "",
        "   ",
        "javascript:alert(1)",
        "news.example.org/story",
        "ftp://example.org/story",
        "https://",
        "https://exa mple.org/",
        "data:text/html,<script>alert(1)</script>",
        "https://example.org/" + "a" * 500,
    ],
)
def test_anything_else_is_refused_as_a_story_address(url):
    with pytest.raises(RuleError) as refused:
        rules.clean_story_url(url)
    assert refused.value.field == "story_url"


def test_a_title_is_trimmed_to_one_line_and_must_fit():
    assert rules.clean_title("  Rents \n in   the city ") == "Rents in the city"
    assert rules.clean_title("x" * 140) == "x" * 140
    with pytest.raises(RuleError, match="title"):
        rules.clean_title(" \t\n ")
    with pytest.raises(RuleError, match="140"):
        rules.clean_title("x" * 141)
    with pytest.raises(RuleError, match="2000"):
        rules.clean_why("y" * 2001)


def test_a_patron_may_propose_a_few_topics_a_day():
    assert rules.may_propose(0)
    assert rules.may_propose(rules.PROPOSALS_PER_WINDOW - 1)
    assert not rules.may_propose(rules.PROPOSALS_PER_WINDOW)


def test_the_winners_are_the_topics_with_the_most_votes_including_ties():
    assert rules.winners({1: 4, 2: 9, 3: 9}) == [2, 3]
    assert rules.winners({1: 0, 2: 0}) == []
    assert rules.winners({}) == []
