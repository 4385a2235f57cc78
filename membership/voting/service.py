"""Voting use cases: rounds, proposals, moderation, votes, results and what became of topics.

Each function takes the session (and the acting member) and flushes; the view or command commits
once. Limits that matter under concurrency live in the database:

- one ballot per patron and round (unique), whose ``used`` may never exceed ``budget`` (CHECK):
  casting a vote is ``UPDATE ballots SET used = used + 1``, which the CHECK refuses when the
  patron has no votes left, however many votes arrive at once;
- one vote per patron and topic (unique);
- status changes are compare-and-set (``UPDATE ... WHERE status = <what staff saw>``), so two
  staff publishing one topic at once record it, and email its voters, once.

A round is closed as soon as ``closes_at`` passes (the rules decide from the clock): no vote is
taken after it, so its counts cannot change. They are stored in ``topics.final_votes`` when
``flask --app wsgi voting close-due`` runs (from cron), when staff close it early, or when a
vote or proposal first meets the closed round; until then pages count them as at the closing
time. Reading a page never writes. Freezing is idempotent
(``UPDATE voting_rounds SET closed_at = ... WHERE closed_at IS NULL``).

Patrons who stop being patrons while a round is open keep their votes unless the round says
``drop_votes_of_lapsed``. For such rounds the votes are not deleted: they are simply not
counted while (and once, at close) their author is no longer a patron. That is the simplest rule
that is always right: a patron who lapses and comes back before the close counts again, and
nothing has to react to a subscription ending.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import case, delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload

from membership.accounts.models import Member
from membership.emails import queue_email
from membership.perks.service import perks_for, perks_for_members
from membership.voting import rules
from membership.voting.models import Ballot, Round, Topic, TopicStatusChange, Vote
from membership.voting.rules import RoundPhase, TopicStatus


class VotingError(Exception):
    """Something a reader or staff asked for that cannot be done; ``status`` is the HTTP one."""

    def __init__(self, message: str, status: int = 400, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.field = field


def _refused(error: rules.RuleError, status: int = 400) -> VotingError:
    return VotingError(error.message, status, error.field)


# --- rounds ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RoundFields:
    title: str
    description: str
    opens_at: datetime
    closes_at: datetime
    results_live: bool = False
    staff_see_voters: bool = False
    drop_votes_of_lapsed: bool = False


def phase(round_: Round, now: datetime) -> RoundPhase:
    return rules.round_phase(round_.opens_at, round_.closes_at, round_.closed_at, now)


def get_round(session: Session, round_id: int) -> Round:
    round_ = session.get(Round, round_id)
    if round_ is None:
        raise VotingError("There is no such voting round.", 404)
    return round_


def get_topic(session: Session, topic_id: int) -> Topic:
    topic = session.get(Topic, topic_id)
    if topic is None:
        raise VotingError("There is no such topic.", 404)
    return topic


def create_round(session: Session, actor: Member, fields: RoundFields, now: datetime) -> Round:
    """Staff open a round (it may start now or later)."""
    title = " ".join(fields.title.split())
    if not title:
        raise VotingError("Give the round a title.", 400, "title")
    if fields.closes_at <= fields.opens_at:
        raise VotingError("The round must close after it opens.", 400, "closes_at")
    if fields.closes_at <= now:
        raise VotingError("The closing time has already passed.", 400, "closes_at")
    round_ = Round(
        title=title[:200],
        description=fields.description.strip(),
        opens_at=fields.opens_at,
        closes_at=fields.closes_at,
        results_live=fields.results_live,
        staff_see_voters=fields.staff_see_voters,
        drop_votes_of_lapsed=fields.drop_votes_of_lapsed,
    )
    session.add(round_)
    session.flush()
    return round_


def rounds_in_phase(session: Session, wanted: RoundPhase, now: datetime) -> list[Round]:
    return rounds_by_phase(session, now)[wanted]


def rounds_by_phase(session: Session, now: datetime) -> dict[RoundPhase, list[Round]]:
    """Every round, by its phase now (one query for a page that lists several phases)."""
    found: dict[RoundPhase, list[Round]] = {wanted: [] for wanted in RoundPhase}
    for round_ in session.scalars(select(Round).order_by(Round.closes_at, Round.id)):
        found[phase(round_, now)].append(round_)
    return found


def close_round(session: Session, actor: Member, round_id: int, now: datetime) -> Round:
    """Staff close a round now: votes stop and the results freeze."""
    round_ = get_round(session, round_id)
    if round_.closed_at is not None:
        raise VotingError("This round is already closed.", 409)
    closed_at = min(now, round_.closes_at)
    if not _freeze(session, round_, closed_at):
        raise VotingError("This round is already closed.", 409)
    return round_


def ensure_frozen(session: Session, round_: Round, now: datetime) -> bool:
    """Freeze the results of a round whose closing time has passed; True if it happened now."""
    if round_.closed_at is None and phase(round_, now) is RoundPhase.CLOSED:
        return _freeze(session, round_, round_.closes_at)
    return False


def close_due_rounds(session: Session, now: datetime) -> list[Round]:
    """Freeze every round whose closing time has passed (``voting close-due``; safe to rerun)."""
    due = session.scalars(
        select(Round).where(Round.closed_at.is_(None), Round.closes_at <= now).order_by(Round.id)
    ).all()
    return [r for r in due if _freeze(session, r, r.closes_at)]


def _freeze(session: Session, round_: Round, closed_at: datetime) -> bool:
    # Compare-and-set: of two requests freezing one round at once, one does it.
    claimed = session.execute(
        update(Round)
        .where(Round.id == round_.id, Round.closed_at.is_(None))
        .values(closed_at=closed_at)
        .execution_options(synchronize_session=False)
    )
    session.refresh(round_)
    if claimed.rowcount != 1:
        return False
    counts = _live_counts(session, round_, closed_at)
    for topic in round_.topics:
        if topic.status in rules.BALLOT_STATUSES:
            topic.final_votes = counts.get(topic.id, 0)
    session.flush()
    return True


# --- counting ----------------------------------------------------------------------------------


def _still_patrons(session: Session, round_id: int, at: datetime) -> list[int]:
    """The voters of a round whose perks still include votes at ``at``."""
    voter_ids = (
        select(Vote.member_id)
        .join(Topic, Topic.id == Vote.topic_id)
        .where(Topic.round_id == round_id)
        .distinct()
    )
    perks = perks_for_members(session, session.scalars(voter_ids).all(), now=at)
    return [member_id for member_id, p in perks.items() if p.has_kind("votes")]


def _live_counts(session: Session, round_: Round, at: datetime) -> dict[int, int]:
    query = (
        select(Vote.topic_id, func.count(Vote.id))
        .join(Topic, Topic.id == Vote.topic_id)
        .where(Topic.round_id == round_.id)
        .group_by(Vote.topic_id)
    )
    if round_.drop_votes_of_lapsed:
        query = query.where(Vote.member_id.in_(_still_patrons(session, round_.id, at)))
    return {topic_id: votes for topic_id, votes in session.execute(query).all()}


def vote_counts(session: Session, round_: Round, now: datetime) -> dict[int, int]:
    """Votes per topic: as frozen at close, or counted (one GROUP BY) as at the closing time
    if nothing froze them yet, or as of now while the round is open. Never writes."""
    if round_.closed_at is not None:
        return {t.id: t.final_votes for t in round_.topics if t.final_votes is not None}
    if phase(round_, now) is RoundPhase.CLOSED:
        return _live_counts(session, round_, round_.closes_at)
    return _live_counts(session, round_, now)


def voters_by_topic(session: Session, round_: Round) -> dict[int, list[str]]:
    """Who voted for what, for staff, only when the round allows it."""
    if not round_.staff_see_voters:
        return {}
    rows = session.execute(
        select(Vote.topic_id, Member.display_name)
        .join(Topic, Topic.id == Vote.topic_id)
        .join(Member, Member.id == Vote.member_id)
        .where(Topic.round_id == round_.id)
        .order_by(Vote.topic_id, Member.display_name, Member.id)
    ).all()
    result: dict[int, list[str]] = {}
    for topic_id, name in rows:
        result.setdefault(topic_id, []).append(name)
    return result


# --- proposals and moderation ------------------------------------------------------------------


def _record(
    session: Session,
    topic: Topic,
    from_status: TopicStatus | None,
    actor: Member | None,
    note: str | None = None,
) -> None:
    session.add(
        TopicStatusChange(
            topic_id=topic.id,
            from_status=from_status,
            to_status=topic.status,
            note=note,
            actor_id=actor.id if actor else None,
        )
    )


def _clean(title: str | None, why: str | None) -> tuple[str, str]:
    try:
        return rules.clean_title(title), rules.clean_why(why)
    except rules.RuleError as error:
        raise _refused(error) from error


def add_topic(
    session: Session,
    actor: Member,
    round_id: int,
    title: str | None,
    why: str | None,
    now: datetime,
) -> Topic:
    """Staff put a topic on the ballot directly (no moderation)."""
    round_ = get_round(session, round_id)
    if phase(round_, now) is RoundPhase.CLOSED:
        raise VotingError("This round has closed: no more topics can be added.", 409)
    clean_title, clean_why = _clean(title, why)
    topic = Topic(round=round_, title=clean_title, why=clean_why, status=TopicStatus.APPROVED)
    session.add(topic)
    session.flush()
    _record(session, topic, None, actor, "Added by the newsroom")
    session.flush()
    return topic


def voting_perks(session: Session, member: Member, now: datetime) -> int:
    """How many votes a round gives this member right now (0: they may not vote or propose)."""
    perks = perks_for(session, member, now=now)
    return perks.votes_per_round if perks.has_kind("votes") else 0


def propose_topic(
    session: Session,
    member: Member,
    round_id: int,
    title: str | None,
    why: str | None,
    now: datetime,
) -> Topic:
    """A patron proposes a topic for an open round; it waits for moderation."""
    round_ = get_round(session, round_id)
    if phase(round_, now) is not RoundPhase.OPEN:
        raise VotingError("This round is not open for proposals.", 409)
    if not perks_for(session, member, now=now).has_kind("votes"):
        raise VotingError("Proposing topics is a patron perk: become a patron to propose.", 403)
    clean_title, clean_why = _clean(title, why)
    since = now - timedelta(hours=rules.PROPOSAL_WINDOW_HOURS)
    recent = session.scalar(
        select(func.count(Topic.id)).where(
            Topic.proposer_id == member.id, Topic.created_at >= since
        )
    )
    if not rules.may_propose(recent or 0):
        raise VotingError(
            f"You have proposed {rules.PROPOSALS_PER_WINDOW} topics in the last day. "
            "Thank you! Please wait a little before proposing more.",
            429,
        )
    topic = Topic(round=round_, title=clean_title, why=clean_why, proposer_id=member.id)
    session.add(topic)
    session.flush()
    _record(session, topic, None, member)
    session.flush()
    return topic


def _move(
    session: Session,
    topic: Topic,
    target: TopicStatus,
    actor: Member,
    now: datetime,
    *,
    note: str | None = None,
    **values: object,
) -> TopicStatus:
    """Change a topic's status if the rules allow it and nobody changed it meanwhile."""
    round_ = topic.round
    ensure_frozen(session, round_, now)
    current = topic.status
    try:
        rules.next_status(current, target, round_closed=phase(round_, now) is RoundPhase.CLOSED)
    except rules.RuleError as error:
        raise _refused(error, 409) from error
    changed = session.execute(
        update(Topic)
        .where(Topic.id == topic.id, Topic.status == current)
        .values(status=target, **values)
        .execution_options(synchronize_session=False)
    )
    if changed.rowcount != 1:
        raise VotingError("Someone changed this topic meanwhile. Reload the page.", 409)
    session.refresh(topic)
    _record(session, topic, current, actor, note)
    session.flush()
    return current


def _link(path: str) -> str:
    return current_app.config["BASE_URL"] + path


def _tell_proposer(
    session: Session, topic: Topic, template: str, subject: str, **extra: object
) -> None:
    proposer = topic.proposer
    if proposer is None or proposer.deleted_at is not None:
        return
    queue_email(
        session,
        to=proposer.email,
        member_id=proposer.id,
        template=template,
        subject=subject,
        member=proposer,
        topic=topic,
        topic_url=_link(f"/vote/topics/{topic.id}"),
        vote_url=_link("/vote"),
        **extra,
    )


def approve_topic(session: Session, actor: Member, topic_id: int, now: datetime) -> Topic:
    """Staff put a proposal on the ballot; the proposer is told."""
    topic = get_topic(session, topic_id)
    _move(session, topic, TopicStatus.APPROVED, actor, now)
    _tell_proposer(session, topic, "topic_approved", "Your topic is on the ballot")
    return topic


def reject_topic(
    session: Session, actor: Member, topic_id: int, reason: str | None, now: datetime
) -> Topic:
    """Staff turn a proposal down with a reason the proposer sees."""
    topic = get_topic(session, topic_id)
    text = (reason or "").strip()
    if not text:
        raise VotingError("Tell the proposer why.", 400, "reason")
    if len(text) > rules.REASON_MAX:
        raise VotingError(f"Keep the reason to {rules.REASON_MAX} characters.", 400, "reason")
    _move(session, topic, TopicStatus.REJECTED, actor, now, note=text, reason=text)
    _tell_proposer(session, topic, "topic_rejected", "About the topic you proposed")
    return topic


def merge_topic(
    session: Session, actor: Member, topic_id: int, into_id: int | None, now: datetime
) -> Topic:
    """Staff fold a proposal into a topic already on the same round's ballot."""
    topic = get_topic(session, topic_id)
    target = session.get(Topic, into_id) if into_id is not None else None
    if (
        target is None
        or target.id == topic.id
        or target.round_id != topic.round_id
        or target.status is not TopicStatus.APPROVED
    ):
        raise VotingError("Choose a topic on this round's ballot to merge into.", 400, "into")
    _move(
        session,
        topic,
        TopicStatus.MERGED,
        actor,
        now,
        note=f"Merged into “{target.title}”",
        merged_into_id=target.id,
    )
    _tell_proposer(
        session,
        topic,
        "topic_merged",
        "Your topic joined a similar one on the ballot",
        target=target,
        target_url=_link(f"/vote/topics/{target.id}"),
    )
    return topic


def set_coverage(
    session: Session,
    actor: Member,
    topic_id: int,
    target: str | None,
    *,
    story_url: str | None,
    note: str | None,
    now: datetime,
) -> Topic:
    """After the round: planned, in coverage, published (with the story) or declined (why).

    Publishing emails everyone who voted for the topic, once: the status change is a
    compare-and-set, so a second publish (even at the same moment) is refused before any mail.
    """
    topic = get_topic(session, topic_id)
    try:
        status = TopicStatus(target or "")
    except ValueError:
        status = None
    if status not in rules.COVERAGE_STATUSES:
        raise VotingError("Choose what became of this topic.", 400, "status")
    text = (note or "").strip()
    if len(text) > rules.REASON_MAX:
        raise VotingError(f"Keep the note to {rules.REASON_MAX} characters.", 400, "note")
    values: dict[str, object] = {}
    if status is TopicStatus.PUBLISHED:
        try:
            values["story_url"] = rules.clean_story_url(story_url)
        except rules.RuleError as error:
            raise _refused(error) from error
    if status is TopicStatus.DECLINED:
        if not text:
            raise VotingError("Say why the newsroom will not cover it.", 400, "note")
        values["reason"] = text
    _move(session, topic, status, actor, now, note=text or None, **values)
    if status is TopicStatus.PUBLISHED:
        _tell_voters(session, topic)
    return topic


def _tell_voters(session: Session, topic: Topic) -> None:
    voters = session.scalars(
        select(Member)
        .join(Vote, Vote.member_id == Member.id)
        .where(Vote.topic_id == topic.id, Member.deleted_at.is_(None))
        .order_by(Member.id)
    ).all()
    for member in voters:
        queue_email(
            session,
            to=member.email,
            member_id=member.id,
            template="topic_published",
            subject=f"You asked, we covered: {topic.title}"[:200],
            member=member,
            topic=topic,
            topic_url=_link(f"/vote/topics/{topic.id}"),
        )


# --- votes -------------------------------------------------------------------------------------


def _open_topic(session: Session, topic_id: int, now: datetime) -> Topic:
    topic = get_topic(session, topic_id)
    current = phase(topic.round, now)
    if current is RoundPhase.CLOSED:
        raise VotingError("This round has closed: votes can no longer change.", 409)
    if current is RoundPhase.UPCOMING:
        raise VotingError("This round has not opened yet.", 409)
    return topic


def _ballot_id(session: Session, round_id: int, member_id: int, perk_votes: int) -> int:
    """The patron's ballot for the round, made if needed, its budget brought up to date."""
    find = select(Ballot.id).where(Ballot.round_id == round_id, Ballot.member_id == member_id)
    ballot_id = session.scalar(find)
    if ballot_id is None:
        try:
            with session.begin_nested():
                ballot = Ballot(round_id=round_id, member_id=member_id, budget=perk_votes, used=0)
                session.add(ballot)
                session.flush()
                ballot_id = ballot.id
        except IntegrityError:  # another of the patron's requests made it just now
            ballot_id = session.scalar(find)
            if ballot_id is None:  # pragma: no cover - the unique key says it exists
                raise
    # More votes if the patron moved up a tier; fewer if down, but never below what is used.
    session.execute(
        update(Ballot)
        .where(Ballot.id == ballot_id)
        .values(budget=case((Ballot.used > perk_votes, Ballot.used), else_=perk_votes))
        .execution_options(synchronize_session=False)
    )
    return ballot_id


def cast_vote(session: Session, member: Member, topic_id: int, now: datetime) -> Vote:
    """A patron gives one of their votes to a topic on an open round's ballot."""
    topic = _open_topic(session, topic_id, now)
    if topic.status is not TopicStatus.APPROVED:
        raise VotingError("This topic is not on the ballot.", 409)
    perk_votes = voting_perks(session, member, now)
    if perk_votes <= 0:
        raise VotingError("Voting is a patron perk: become a patron to vote.", 403)
    mine = select(Vote.id).where(Vote.topic_id == topic.id, Vote.member_id == member.id)
    if session.scalar(mine) is not None:
        raise VotingError("You already voted for this topic.", 409)
    ballot_id = _ballot_id(session, topic.round_id, member.id, perk_votes)
    try:
        with session.begin_nested():
            session.execute(
                update(Ballot)
                .where(Ballot.id == ballot_id)
                .values(used=Ballot.used + 1)
                .execution_options(synchronize_session=False)
            )
    except IntegrityError as exc:  # the CHECK used <= budget
        raise VotingError(
            "You have no votes left in this round. Take one back to vote for this topic.", 409
        ) from exc
    vote = Vote(ballot_id=ballot_id, topic_id=topic.id, member_id=member.id)
    try:
        with session.begin_nested():
            session.add(vote)
            session.flush()
    except IntegrityError as exc:  # the unique (topic, member), if two clicks raced
        raise VotingError("You already voted for this topic.", 409) from exc
    return vote


def withdraw_vote(session: Session, member: Member, topic_id: int, now: datetime) -> None:
    """A member takes back their vote for a topic while the round is open."""
    topic = _open_topic(session, topic_id, now)
    row = session.execute(
        select(Vote.id, Vote.ballot_id).where(
            Vote.topic_id == topic.id, Vote.member_id == member.id
        )
    ).first()
    if row is None:
        raise VotingError("You have not voted for this topic.", 409)
    vote_id, ballot_id = row
    deleted = session.execute(
        delete(Vote).where(Vote.id == vote_id).execution_options(synchronize_session=False)
    )
    if deleted.rowcount != 1:  # another request (a double click) took it back just now
        raise VotingError("You have not voted for this topic.", 409)
    session.execute(
        update(Ballot)
        .where(Ballot.id == ballot_id)
        .values(used=Ballot.used - 1)
        .execution_options(synchronize_session=False)
    )
    session.expire_all()


# --- what pages show ---------------------------------------------------------------------------


@dataclass(frozen=True)
class TopicLine:
    topic: Topic
    votes: int | None  # None: not shown (results only at close)
    mine: bool = False


@dataclass
class RoundPage:
    round: Round
    phase: RoundPhase
    show_counts: bool
    topics: list[TopicLine]
    pending: list[Topic] = field(default_factory=list)  # staff only
    perk_votes: int = 0  # 0: not a patron with votes
    used: int = 0
    voters: dict[int, list[str]] = field(default_factory=dict)
    winners: list[int] = field(default_factory=list)

    @property
    def remaining(self) -> int:
        return max(rules.ballot_budget(self.perk_votes, self.used) - self.used, 0)

    @property
    def can_vote(self) -> bool:
        return self.phase is RoundPhase.OPEN and self.perk_votes > 0


def round_page(
    session: Session,
    round_: Round,
    now: datetime,
    *,
    member: Member | None = None,
    staff: bool = False,
    votes_per_round: int | None = None,
) -> RoundPage:
    """A round as a reader (or staff) sees it: the ballot, the counts if shown, their votes.

    ``votes_per_round`` is the member's :func:`voting_perks` if the caller already knows it
    (a page listing several rounds asks once, not once per round).
    """
    counts = vote_counts(session, round_, now)
    current = phase(round_, now)
    show = rules.results_visible(round_.results_live, current, staff=staff)
    mine: set[int] = set()
    used = perk_votes = 0
    if member is not None:
        mine = set(
            session.scalars(
                select(Vote.topic_id)
                .join(Topic, Topic.id == Vote.topic_id)
                .where(Vote.member_id == member.id, Topic.round_id == round_.id)
            )
        )
        used = (
            session.scalar(
                select(Ballot.used).where(
                    Ballot.round_id == round_.id, Ballot.member_id == member.id
                )
            )
            or 0
        )
        if current is RoundPhase.OPEN:
            perk_votes = (
                voting_perks(session, member, now) if votes_per_round is None else votes_per_round
            )
    on_ballot = [t for t in round_.topics if t.status in rules.BALLOT_STATUSES]
    if show:
        on_ballot.sort(key=lambda t: (-counts.get(t.id, 0), t.id))
    lines = [TopicLine(t, counts.get(t.id, 0) if show else None, t.id in mine) for t in on_ballot]
    page = RoundPage(
        round=round_,
        phase=current,
        show_counts=show,
        topics=lines,
        perk_votes=perk_votes,
        used=used,
        winners=rules.winners(counts) if current is RoundPhase.CLOSED else [],
    )
    if staff:
        # Staff see who proposed each topic waiting for moderation: every proposer in one
        # query, not one per proposal.
        page.pending = list(
            session.scalars(
                select(Topic)
                .where(Topic.round_id == round_.id, Topic.status == TopicStatus.PENDING)
                .options(selectinload(Topic.proposer))
                .order_by(Topic.id)
            )
        )
        page.voters = voters_by_topic(session, round_)
    return page


def my_proposals(session: Session, member: Member) -> Sequence[Topic]:
    return session.scalars(
        select(Topic).where(Topic.proposer_id == member.id).order_by(Topic.id.desc()).limit(20)
    ).all()


def topic_visible_to(topic: Topic, member: Member | None) -> bool:
    """Pending and rejected proposals are seen only by their proposer and staff."""
    if topic.status in rules.PUBLIC_STATUSES:
        return True
    return member is not None and (member.is_staff or topic.proposer_id == member.id)


@dataclass(frozen=True)
class CoveredRound:
    round: Round
    winners: list[Topic]
    covered: list[Topic]  # planned, in coverage or published
    votes: dict[int, int]  # topic id -> votes (frozen, or counted as at the close)


def covered(session: Session, now: datetime) -> list[CoveredRound]:
    """Closed rounds, newest first: their winners and what the newsroom made of the topics."""
    # Topics of every round in one more query, not one per round. Counts of frozen rounds are
    # on their topics; only a round closed but not yet frozen (``voting close-due`` runs every
    # few minutes) is counted live, by its own query.
    closed = session.scalars(
        select(Round)
        .where((Round.closed_at.is_not(None)) | (Round.closes_at <= now))
        .order_by(func.coalesce(Round.closed_at, Round.closes_at).desc())
        .options(selectinload(Round.topics))
    ).all()
    result = []
    followed = {TopicStatus.PLANNED, TopicStatus.IN_COVERAGE, TopicStatus.PUBLISHED}
    for round_ in closed:
        counts = vote_counts(session, round_, now)
        top = set(rules.winners(counts))
        result.append(
            CoveredRound(
                round=round_,
                winners=[t for t in round_.topics if t.id in top],
                covered=[t for t in round_.topics if t.status in followed],
                votes=counts,
            )
        )
    return result
