"""Demo voting data: an open round to vote in, and a closed one whose winner was published.

``seed_demo`` is idempotent (rounds are found by title) and flushes; the caller commits. The
pending proposal is by the demo reader ``reader@example.org`` when that account exists.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from membership.accounts.models import Member
from membership.database import utcnow
from membership.voting.models import Round, Topic, TopicStatusChange
from membership.voting.rules import TopicStatus

OPEN_TITLE = "What should we investigate this winter?"
CLOSED_TITLE = "Autumn round: your questions for the city"
STORY_URL = "https://news.example.org/2026/10/who-pays-for-the-water"

OPEN_TOPICS = [
    ("Who owns the city's empty flats?", "Rents rose by a third in two years."),
    ("Where does the river pollution come from?", "Fishermen report dead fish every summer."),
    ("Why are school meals getting smaller?", "Parents say portions shrank since spring."),
    ("How safe are the night buses?", ""),
]
CLOSED_TOPICS = [
    ("Who pays for the water?", "Bills doubled while the utility paid record dividends.", 41),
    ("The new stadium's hidden costs", "", 23),
    ("Cycling lanes that end nowhere", "", 12),
]


def seed_demo(session: Session) -> None:
    """Add the demo rounds if they are missing."""
    now = utcnow()
    staff = session.scalar(select(Member).where(Member.email == "staff@example.org"))
    reader = session.scalar(select(Member).where(Member.email == "reader@example.org"))
    actor_id = staff.id if staff else None

    if session.scalar(select(Round.id).where(Round.title == OPEN_TITLE)) is None:
        open_round = Round(
            title=OPEN_TITLE,
            description="Patrons: give your votes to the stories you want us to dig into.",
            opens_at=now - timedelta(days=2),
            closes_at=now + timedelta(days=12),
            results_live=True,
        )
        session.add(open_round)
        session.flush()
        for title, why in OPEN_TOPICS:
            topic = Topic(round_id=open_round.id, title=title, why=why, status=TopicStatus.APPROVED)
            session.add(topic)
            session.flush()
            session.add(
                TopicStatusChange(
                    topic_id=topic.id,
                    to_status=TopicStatus.APPROVED,
                    note="Added by the newsroom",
                    actor_id=actor_id,
                )
            )
        pending = Topic(
            round_id=open_round.id,
            title="What happened to the library renovation money?",
            why="The works stopped a year ago and nobody says why.",
            proposer_id=reader.id if reader else None,
        )
        session.add(pending)
        session.flush()
        session.add(
            TopicStatusChange(
                topic_id=pending.id,
                to_status=TopicStatus.PENDING,
                actor_id=reader.id if reader else None,
            )
        )

    if session.scalar(select(Round.id).where(Round.title == CLOSED_TITLE)) is None:
        closes_at = now - timedelta(days=40)
        closed_round = Round(
            title=CLOSED_TITLE,
            description="Our first round of votes.",
            opens_at=closes_at - timedelta(days=14),
            closes_at=closes_at,
            closed_at=closes_at,
            results_live=False,
        )
        session.add(closed_round)
        session.flush()
        for index, (title, why, votes) in enumerate(CLOSED_TOPICS):
            topic = Topic(
                round_id=closed_round.id,
                title=title,
                why=why,
                status=TopicStatus.APPROVED,
                final_votes=votes,
                created_at=closed_round.opens_at,
            )
            session.add(topic)
            session.flush()
            steps: list[tuple[TopicStatus, TopicStatus | None, str | None, int]] = [
                (TopicStatus.APPROVED, None, "Added by the newsroom", 54),
            ]
            if index == 0:
                steps += [
                    (TopicStatus.PLANNED, TopicStatus.APPROVED, None, 38),
                    (TopicStatus.IN_COVERAGE, TopicStatus.PLANNED, "Two reporters on it", 30),
                    (TopicStatus.PUBLISHED, TopicStatus.IN_COVERAGE, None, 3),
                ]
                topic.status = TopicStatus.PUBLISHED
                topic.story_url = STORY_URL
            elif index == 1:
                steps.append(
                    (TopicStatus.PLANNED, TopicStatus.APPROVED, "After the winter round", 37)
                )
                topic.status = TopicStatus.PLANNED
            for to_status, from_status, note, days_ago in steps:
                session.add(
                    TopicStatusChange(
                        topic_id=topic.id,
                        from_status=from_status,
                        to_status=to_status,
                        note=note,
                        actor_id=actor_id,
                        created_at=now - timedelta(days=days_ago),
                    )
                )
    session.flush()
