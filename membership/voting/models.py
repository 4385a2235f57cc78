"""Voting rounds, proposed topics, ballots and votes, and what became of each topic."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from membership.accounts.models import Member, enum_column
from membership.database import utcnow
from membership.extensions import db
from membership.voting.rules import TopicStatus

__all__ = ["Ballot", "Round", "Topic", "TopicStatus", "TopicStatusChange", "Vote"]


class Round(db.Model):
    __tablename__ = "voting_rounds"
    __table_args__ = (CheckConstraint("closes_at > opens_at", name="closes_after_opening"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    opens_at: Mapped[datetime]
    closes_at: Mapped[datetime]
    closed_at: Mapped[datetime | None]  # set when results froze (at closes_at, or by staff)
    results_live: Mapped[bool] = mapped_column(default=False)  # else shown only once closed
    staff_see_voters: Mapped[bool] = mapped_column(default=False)  # else staff see counts only
    # Policy for a patron whose membership ends while the round is open (default: votes stay).
    drop_votes_of_lapsed: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    topics: Mapped[list[Topic]] = relationship(back_populates="round", order_by="Topic.id")


class Topic(db.Model):
    __tablename__ = "topics"
    __table_args__ = (
        Index("ix_topics_round_id", "round_id"),
        CheckConstraint("length(title) > 0", name="title_not_empty"),
        CheckConstraint("final_votes IS NULL OR final_votes >= 0", name="final_votes"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    round_id: Mapped[int] = mapped_column(ForeignKey("voting_rounds.id", ondelete="CASCADE"))
    title: Mapped[str] = mapped_column(String(140))
    why: Mapped[str] = mapped_column(Text, default="")
    proposer_id: Mapped[int | None] = mapped_column(ForeignKey("members.id", ondelete="SET NULL"))
    status: Mapped[TopicStatus] = mapped_column(
        enum_column(TopicStatus, "topic_status"), default=TopicStatus.PENDING
    )
    reason: Mapped[str | None] = mapped_column(String(500))  # why rejected or declined
    merged_into_id: Mapped[int | None] = mapped_column(ForeignKey("topics.id", ondelete="SET NULL"))
    story_url: Mapped[str | None] = mapped_column(String(500))
    final_votes: Mapped[int | None]  # frozen when the round closes
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    round: Mapped[Round] = relationship(back_populates="topics")
    proposer: Mapped[Member | None] = relationship(foreign_keys=[proposer_id])
    history: Mapped[list[TopicStatusChange]] = relationship(
        order_by="TopicStatusChange.id", cascade="all, delete-orphan"
    )


class TopicStatusChange(db.Model):
    __tablename__ = "topic_status_changes"
    __table_args__ = (Index("ix_topic_status_changes_topic_id", "topic_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    topic_id: Mapped[int] = mapped_column(ForeignKey("topics.id", ondelete="CASCADE"))
    from_status: Mapped[TopicStatus | None] = mapped_column(
        enum_column(TopicStatus, "topic_change_from")
    )
    to_status: Mapped[TopicStatus] = mapped_column(enum_column(TopicStatus, "topic_change_to"))
    note: Mapped[str | None] = mapped_column(String(500))
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("members.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Ballot(db.Model):
    """A patron's votes in one round. The CHECK keeps ``used`` within ``budget`` even when
    votes arrive at once: each vote increments ``used`` in the same transaction."""

    __tablename__ = "ballots"
    __table_args__ = (
        UniqueConstraint("round_id", "member_id"),
        CheckConstraint("used >= 0 AND used <= budget", name="within_budget"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    round_id: Mapped[int] = mapped_column(ForeignKey("voting_rounds.id", ondelete="CASCADE"))
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id", ondelete="CASCADE"))
    budget: Mapped[int]
    used: Mapped[int] = mapped_column(default=0)


class Vote(db.Model):
    __tablename__ = "votes"
    __table_args__ = (
        UniqueConstraint("topic_id", "member_id"),  # one vote per topic per patron
        Index("ix_votes_ballot_id", "ballot_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    ballot_id: Mapped[int] = mapped_column(ForeignKey("ballots.id", ondelete="CASCADE"))
    topic_id: Mapped[int] = mapped_column(ForeignKey("topics.id", ondelete="CASCADE"))
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
