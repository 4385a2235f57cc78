"""Perks and what unlocks them, patron-only posts and their feeds, and the supporters wall."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from membership.accounts.models import Member, enum_column
from membership.billing.models import Tier
from membership.database import utcnow
from membership.extensions import db


class PerkKind(enum.StrEnum):
    CONTENT = "content"  # patron-only posts
    VOTES = "votes"  # a number of votes per voting round
    WALL = "wall"  # a place on the supporters wall
    FLAG = "flag"  # read by the newsroom's main site through the API (ad_free, newsletter)
    REVEAL = "reveal"  # a code or link shown on the dashboard (merch discount, community invite)


class Perk(db.Model):
    __tablename__ = "perks"
    __table_args__ = (
        CheckConstraint("votes IS NULL OR votes >= 0", name="votes_not_negative"),
        CheckConstraint("key <> ''", name="key_not_empty"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(String(40), unique=True)  # what the API reports
    name: Mapped[str] = mapped_column(String(80))
    description: Mapped[str] = mapped_column(Text, default="")
    kind: Mapped[PerkKind] = mapped_column(enum_column(PerkKind, "perk_kind"))
    votes: Mapped[int | None]  # default votes per round, for kind "votes"
    reveal: Mapped[str | None] = mapped_column(String(500))  # the code or link, for "reveal"
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Grant(enum.StrEnum):
    GRANT = "grant"  # this tier (and, by default, every tier above it) gets the perk
    WITHHOLD = "withhold"  # this tier does not, even if a tier below it does


class TierPerk(db.Model):
    """Staff's decision about one perk for one tier. Tiers above inherit a grant (by position)."""

    __tablename__ = "tier_perks"
    __table_args__ = (
        UniqueConstraint("tier_id", "perk_id"),
        CheckConstraint("votes IS NULL OR votes >= 0", name="votes_not_negative"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    tier_id: Mapped[int] = mapped_column(ForeignKey("tiers.id", ondelete="CASCADE"))
    perk_id: Mapped[int] = mapped_column(ForeignKey("perks.id", ondelete="CASCADE"))
    grant: Mapped[Grant] = mapped_column(enum_column(Grant, "perk_grant"), default=Grant.GRANT)
    votes: Mapped[int | None]  # this tier's votes per round, overriding the perk's default

    tier: Mapped[Tier] = relationship()
    perk: Mapped[Perk] = relationship()


class Post(db.Model):
    """A patron-only update. Others see the title, the teaser and an invitation to join."""

    __tablename__ = "posts"
    __table_args__ = (Index("ix_posts_published_at", "published_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    slug: Mapped[str] = mapped_column(String(120), unique=True)
    title: Mapped[str] = mapped_column(String(200))
    teaser: Mapped[str] = mapped_column(Text, default="")
    body_markdown: Mapped[str] = mapped_column(Text)
    body_html: Mapped[str] = mapped_column(Text)  # rendered and sanitised when saved
    all_patrons: Mapped[bool] = mapped_column(default=True)  # else only the tiers in post_tiers
    author_id: Mapped[int | None] = mapped_column(ForeignKey("members.id", ondelete="SET NULL"))
    published_at: Mapped[datetime | None]  # None: a draft
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    tiers: Mapped[list[Tier]] = relationship(secondary="post_tiers")


class PostTier(db.Model):
    __tablename__ = "post_tiers"

    post_id: Mapped[int] = mapped_column(
        ForeignKey("posts.id", ondelete="CASCADE"), primary_key=True
    )
    tier_id: Mapped[int] = mapped_column(
        ForeignKey("tiers.id", ondelete="CASCADE"), primary_key=True
    )


class FeedToken(db.Model):
    """A member's private feed address. Revoking deletes it; a new one can be made."""

    __tablename__ = "feed_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    member_id: Mapped[int] = mapped_column(
        ForeignKey("members.id", ondelete="CASCADE"), unique=True
    )
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class WallEntry(db.Model):
    """A supporter who chose to appear on the public wall, under the name they chose."""

    __tablename__ = "wall_entries"
    __table_args__ = (CheckConstraint("length(display_name) > 0", name="name_not_empty"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    member_id: Mapped[int] = mapped_column(
        ForeignKey("members.id", ondelete="CASCADE"), unique=True
    )
    display_name: Mapped[str] = mapped_column(String(80))
    show_tier: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    member: Mapped[Member] = relationship()
