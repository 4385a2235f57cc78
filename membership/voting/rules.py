"""The rules of topic voting: pure functions and enums, no Flask, no database.

- A round is *upcoming* before ``opens_at``, *open* until ``closes_at`` and *closed* from then on
  (or from the moment staff closed it early). Nobody needs to flip a switch at ``closes_at``: the
  time alone decides, and the results freeze on the first look after it (or ``voting close-due``).
- A topic moves through one state machine (:func:`next_status`): proposals are moderated
  (pending -> approved / rejected / merged); after the round, staff follow what became of the
  winners (approved -> planned -> in_coverage -> published, or declined at any point).
- A patron's ballot holds as many votes as their perks give at the moment they vote
  (:func:`ballot_budget`): more if they moved up a tier, never fewer than they already used.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from datetime import datetime
from urllib.parse import urlsplit

TITLE_MAX = 140
WHY_MAX = 2000
REASON_MAX = 500
URL_MAX = 500
# A patron may propose this many topics in any PROPOSAL_WINDOW_HOURS (all rounds together).
PROPOSALS_PER_WINDOW = 5
PROPOSAL_WINDOW_HOURS = 24


class TopicStatus(enum.StrEnum):
    PENDING = "pending"  # proposed, waiting for moderation
    APPROVED = "approved"  # on the ballot
    REJECTED = "rejected"
    MERGED = "merged"  # folded into another topic
    PLANNED = "planned"
    IN_COVERAGE = "in_coverage"
    PUBLISHED = "published"
    DECLINED = "declined"


STATUS_LABELS = {
    TopicStatus.PENDING: "Waiting for moderation",
    TopicStatus.APPROVED: "On the ballot",
    TopicStatus.REJECTED: "Not accepted",
    TopicStatus.MERGED: "Merged into another topic",
    TopicStatus.PLANNED: "Planned",
    TopicStatus.IN_COVERAGE: "Our reporters are on it",
    TopicStatus.PUBLISHED: "Published",
    TopicStatus.DECLINED: "Not covered",
}

# Topics readers can see on the ballot and on the topic pages (the others only their proposer
# and staff see).
PUBLIC_STATUSES = frozenset(
    {
        TopicStatus.APPROVED,
        TopicStatus.MERGED,
        TopicStatus.PLANNED,
        TopicStatus.IN_COVERAGE,
        TopicStatus.PUBLISHED,
        TopicStatus.DECLINED,
    }
)
# Topics listed on a round's page (a merged topic lives on in the one it joined).
BALLOT_STATUSES = PUBLIC_STATUSES - {TopicStatus.MERGED}
# What staff may mark a topic as once its round has closed.
COVERAGE_STATUSES = (
    TopicStatus.PLANNED,
    TopicStatus.IN_COVERAGE,
    TopicStatus.PUBLISHED,
    TopicStatus.DECLINED,
)

_MODERATION = {
    TopicStatus.PENDING: {TopicStatus.APPROVED, TopicStatus.REJECTED, TopicStatus.MERGED},
}
_COVERAGE = {
    TopicStatus.APPROVED: {TopicStatus.PLANNED, TopicStatus.PUBLISHED, TopicStatus.DECLINED},
    TopicStatus.PLANNED: {TopicStatus.IN_COVERAGE, TopicStatus.PUBLISHED, TopicStatus.DECLINED},
    TopicStatus.IN_COVERAGE: {TopicStatus.PUBLISHED, TopicStatus.DECLINED},
    TopicStatus.DECLINED: {TopicStatus.PLANNED},  # the newsroom changed its mind
}


class RoundPhase(enum.StrEnum):
    UPCOMING = "upcoming"
    OPEN = "open"
    CLOSED = "closed"


class RuleError(ValueError):
    """A rule refused something; ``field`` names the form field it concerns, if any."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


def round_phase(
    opens_at: datetime, closes_at: datetime, closed_at: datetime | None, now: datetime
) -> RoundPhase:
    """Closed once ``closes_at`` has passed or staff closed it; open from ``opens_at``."""
    if closed_at is not None or now >= closes_at:
        return RoundPhase.CLOSED
    if now < opens_at:
        return RoundPhase.UPCOMING
    return RoundPhase.OPEN


def results_visible(results_live: bool, phase: RoundPhase, *, staff: bool = False) -> bool:
    """Staff always see the counts; readers see them live if the round says so, else at close."""
    return staff or phase is RoundPhase.CLOSED or (results_live and phase is RoundPhase.OPEN)


def ballot_budget(perk_votes: int, used: int) -> int:
    """A ballot's budget right now: what the perks give, never less than already used."""
    return max(perk_votes, used, 0)


def next_status(current: TopicStatus, target: TopicStatus, *, round_closed: bool) -> TopicStatus:
    """The one function that decides whether a topic may move from ``current`` to ``target``.

    Moderation happens while a round runs; coverage (planned, published ...) after it closed.
    """
    if current is target:
        raise RuleError(f"This topic is already “{STATUS_LABELS[current]}”.")
    if target in _MODERATION.get(current, set()):
        if round_closed:
            raise RuleError("This round has closed: its proposals can no longer be moderated.")
        return target
    if target in _COVERAGE.get(current, set()):
        if not round_closed:
            raise RuleError("Topics are marked planned, covered or declined after the round.")
        return target
    raise RuleError(
        f"A topic that is “{STATUS_LABELS[current]}” cannot become “{STATUS_LABELS[target]}”."
    )


def clean_title(title: str | None) -> str:
    """A topic title: one line, trimmed, 1 to TITLE_MAX characters."""
    text = " ".join((title or "").split())
    if not text:
        raise RuleError("Give the topic a title.", "title")
    if len(text) > TITLE_MAX:
        raise RuleError(f"Keep the title to {TITLE_MAX} characters or fewer.", "title")
    return text


def clean_why(why: str | None) -> str:
    text = (why or "").strip()
    if len(text) > WHY_MAX:
        raise RuleError(f"Keep this to {WHY_MAX} characters or fewer.", "why")
    return text


def clean_story_url(url: str | None) -> str:
    """The published story's address: an absolute http or https URL."""
    text = (url or "").strip()
    if not text:
        raise RuleError("Give the address of the published story.", "story_url")
    if len(text) > URL_MAX:
        raise RuleError(f"Keep the address to {URL_MAX} characters or fewer.", "story_url")
    try:
        parts = urlsplit(text)
    except ValueError as exc:
        raise RuleError("That is not a web address.", "story_url") from exc
    if (
        parts.scheme not in ("http", "https")
        or not parts.hostname
        or any(c.isspace() or ord(c) < 32 for c in text)
    ):
        raise RuleError("Give a full web address starting with https:// or http://.", "story_url")
    return text


def may_propose(recent_proposals: int) -> bool:
    return recent_proposals < PROPOSALS_PER_WINDOW


def winners(counts: Mapping[int, int]) -> list[int]:
    """The topic ids with the most votes (all of them on a tie); none if nobody voted."""
    best = max(counts.values(), default=0)
    if best <= 0:
        return []
    return sorted(topic for topic, votes in counts.items() if votes == best)
