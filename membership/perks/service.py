"""Perk use cases. ``perks_for`` is what the dashboard, the content gate, voting and the API ask."""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.orm import Session, joinedload, selectinload

from membership.accounts.models import Member
from membership.billing import service as billing
from membership.billing import sync
from membership.billing.models import Price, Subscription, Tier
from membership.billing.rules import MembershipState
from membership.database import utcnow
from membership.memo import remembered
from membership.perks import rules
from membership.perks.models import (
    FeedToken,
    Grant,
    Perk,
    PerkKind,
    Post,
    TierPerk,
    WallEntry,
)
from membership.staff.models import Comp


def perk_table(session: Session) -> dict[int, dict[str, rules.Unlocked]]:
    """Every tier's perks: one query whatever the number of members, asked once per
    transaction (the table is the same for every member; see membership.memo)."""
    return remembered(session, "perk_table", lambda: _load_perk_table(session))


def _load_perk_table(session: Session) -> dict[int, dict[str, rules.Unlocked]]:
    # Every tier in order, each with its decisions about active perks: a tier without any
    # comes back once with NULLs, and a decision about an inactive perk is left out (as
    # rules.perks_by_tier would leave it out).
    rows = session.execute(
        select(
            Tier.id,
            TierPerk.grant,
            TierPerk.votes,
            Perk.key,
            Perk.name,
            Perk.kind,
            Perk.description,
            Perk.votes,
            Perk.reveal,
        )
        .outerjoin(TierPerk, TierPerk.tier_id == Tier.id)
        .outerjoin(Perk, (Perk.id == TierPerk.perk_id) & Perk.active)
        .order_by(Tier.position, Tier.id)
    ).all()
    tier_ids: dict[int, None] = {}
    perks: dict[str, rules.PerkDef] = {}
    decisions = []
    for tier_id, grant, tier_votes, key, name, kind, description, votes, reveal in rows:
        tier_ids[tier_id] = None
        if key is None:
            continue
        if key not in perks:
            perks[key] = rules.PerkDef(
                key=key,
                name=name,
                kind=kind.value,
                description=description,
                votes=votes,
                reveal=reveal,
            )
        decisions.append(
            rules.Decision(
                tier_id=tier_id, perk_key=key, grant=grant is Grant.GRANT, votes=tier_votes
            )
        )
    return rules.perks_by_tier(tier_ids, perks, decisions)


def _tier_of(
    subscription: Subscription | None, state: MembershipState, comp: Comp | None
) -> Tier | None:
    """The tier whose perks the member has: a comp's while comped, else the one paid for."""
    if state is MembershipState.COMPED and comp is not None:
        return comp.tier  # comped: the comp's tier, whatever they paid for before
    return subscription.price.tier if subscription is not None else None


def _from_subscription(
    subscription: Subscription | None,
    now: datetime | None,
    table: dict[int, dict[str, rules.Unlocked]],
    comp: Comp | None = None,
) -> tuple[rules.MemberPerks, Tier | None]:
    state = sync.state_of(subscription, now, comp.ends_at if comp is not None else None)
    tier = _tier_of(subscription, state, comp)
    perks = rules.member_perks(state, tier.id if tier else None, tier.slug if tier else None, table)
    return perks, tier


class _Unset:
    pass


_UNSET = _Unset()


def _perks_and_tier(
    session: Session,
    member: Member,
    now: datetime | None,
    table: dict[int, dict[str, rules.Unlocked]] | None,
    subscription: Subscription | _Unset | None,
) -> tuple[rules.MemberPerks, Tier | None]:
    if isinstance(subscription, _Unset):
        subscription = billing.current_subscription(session, member)
    comp = sync.current_comps(session, [member.id], now).get(member.id)
    return _from_subscription(
        subscription, now, table if table is not None else perk_table(session), comp
    )


def perks_for(
    session: Session,
    member: Member,
    *,
    now: datetime | None = None,
    table: dict[int, dict[str, rules.Unlocked]] | None = None,
    subscription: Subscription | _Unset | None = _UNSET,
) -> rules.MemberPerks:
    """The member's perks right now, from their membership state and tier.

    ``subscription`` is the member's ``billing.service.current_subscription`` when the caller
    has loaded it already (with its price and tier), which saves asking for it again.
    """
    return _perks_and_tier(session, member, now, table, subscription)[0]


def perks_for_members(
    session: Session,
    member_ids: Iterable[int],
    *,
    now: datetime | None = None,
    table: dict[int, dict[str, rules.Unlocked]] | None = None,
) -> dict[int, rules.MemberPerks]:
    """``perks_for`` for many members at once (one query, for the supporters wall)."""
    ids = list(dict.fromkeys(member_ids))
    if not ids:
        return {}
    table = table if table is not None else perk_table(session)
    latest: dict[int, Subscription] = {}
    rows = session.scalars(
        select(Subscription)
        .where(Subscription.member_id.in_(ids))
        .options(joinedload(Subscription.price).joinedload(Price.tier))
        .order_by(Subscription.member_id, Subscription.live.desc(), Subscription.id.desc())
    )
    for subscription in rows:
        latest.setdefault(subscription.member_id, subscription)
    comps = sync.current_comps(session, ids, now)
    return {
        member_id: _from_subscription(latest.get(member_id), now, table, comps.get(member_id))[0]
        for member_id in ids
    }


class PerkError(Exception):
    """A request the rules refuse; ``message`` is for the person, ``field`` for the form."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


# --- perks and tiers (staff) ---------------------------------------------------------------------

KEY_PATTERN = re.compile(r"^[a-z][a-z0-9_]{0,39}$")


@dataclass
class PerkFields:
    name: str
    description: str
    kind: PerkKind
    votes: int | None
    reveal: str | None
    active: bool


def all_perks(session: Session) -> list[Perk]:
    return list(session.scalars(select(Perk).order_by(Perk.active.desc(), Perk.name, Perk.id)))


def tiers_in_order(session: Session) -> list[Tier]:
    """Tiers from the lowest to the highest: a tier inherits the perks of those before it."""
    return list(session.scalars(select(Tier).order_by(Tier.position, Tier.id)))


def save_perk(
    session: Session, perk: Perk | None, fields: PerkFields, key: str | None = None
) -> Perk:
    """Create a perk (``key`` is what the API reports and cannot change later) or edit one."""
    if fields.kind is PerkKind.REVEAL and not fields.reveal:
        raise PerkError("Enter the code or link patrons will see.", "reveal")
    if perk is None:
        if not key or not KEY_PATTERN.match(key):
            raise PerkError(
                "Use lower-case letters, digits and underscores, starting with a letter, "
                "like ad_free.",
                "key",
            )
        if session.scalar(select(Perk.id).where(Perk.key == key)) is not None:
            raise PerkError("Another perk already uses that key.", "key")
        perk = Perk(key=key)
        session.add(perk)
    perk.name = fields.name
    perk.description = fields.description
    perk.kind = fields.kind
    perk.votes = fields.votes if fields.kind is PerkKind.VOTES else None
    perk.reveal = fields.reveal if fields.kind is PerkKind.REVEAL else None
    perk.active = fields.active
    session.flush()
    return perk


def tier_decisions(session: Session, perk: Perk) -> dict[int, TierPerk]:
    rows = session.scalars(select(TierPerk).where(TierPerk.perk_id == perk.id))
    return {row.tier_id: row for row in rows}


def set_tier_decisions(
    session: Session, perk: Perk, decisions: Mapping[int, tuple[Grant | None, int | None]]
) -> None:
    """Record, for each tier id, whether it grants or withholds the perk (None: it has what the
    tier below it has) and, for a votes perk, that tier's votes per round."""
    known = set(session.scalars(select(Tier.id)))
    existing = tier_decisions(session, perk)
    for tier_id, (grant, votes) in decisions.items():
        if tier_id not in known:
            raise PerkError("That tier does not exist any more. Reload the page.")
        if votes is not None and (perk.kind is not PerkKind.VOTES or grant is not Grant.GRANT):
            raise PerkError(
                "Votes can only be set where this tier grants a votes perk.", f"votes_{tier_id}"
            )
        row = existing.get(tier_id)
        if grant is None:
            if row is not None:
                session.delete(row)
            continue
        if row is None:
            row = TierPerk(tier_id=tier_id, perk_id=perk.id)
            session.add(row)
        row.grant = grant
        row.votes = votes
    session.flush()


# --- patron-only posts -------------------------------------------------------------------------

SLUG_PATTERN = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")


@dataclass
class PostFields:
    title: str
    teaser: str
    body_markdown: str
    all_patrons: bool
    tier_ids: list[int] = field(default_factory=list)


def all_posts(session: Session) -> list[Post]:
    """Every post for staff, drafts first, then the newest."""
    return list(
        session.scalars(
            select(Post).order_by(
                Post.published_at.is_not(None), Post.published_at.desc(), Post.id.desc()
            )
        )
    )


def _free_slug(session: Session, base: str, post: Post | None) -> str:
    slug, n = base, 1
    while True:
        other = session.scalar(select(Post.id).where(Post.slug == slug))
        if other is None or (post is not None and other == post.id):
            return slug
        n += 1
        slug = f"{base[: 120 - len(str(n)) - 1]}-{n}"


def save_post(
    session: Session,
    post: Post | None,
    fields: PostFields,
    *,
    author: Member | None,
    slug: str = "",
) -> Post:
    """Create or edit a post; the Markdown is rendered and sanitised here, once, when saved.

    An empty ``slug`` makes one from the title; one given by staff must be free.
    """
    if not fields.all_patrons and not fields.tier_ids:
        raise PerkError("Choose at least one tier, or make it an update for all patrons.", "tiers")
    if slug:
        if not SLUG_PATTERN.match(slug) or len(slug) > 120:
            raise PerkError("Use lower-case letters, digits and dashes, like budget-2026.", "slug")
        taken = session.scalar(select(Post.id).where(Post.slug == slug))
        if taken is not None and (post is None or taken != post.id):
            raise PerkError("Another update already uses that address.", "slug")
    elif post is None:
        slug = _free_slug(session, rules.slugify(fields.title), None)
    tiers = []
    if not fields.all_patrons:
        tiers = list(session.scalars(select(Tier).where(Tier.id.in_(fields.tier_ids))))
        if len(tiers) != len(set(fields.tier_ids)):
            raise PerkError("That tier does not exist any more. Reload the page.", "tiers")
    if post is None:
        post = Post(author_id=author.id if author is not None else None)
        session.add(post)
    if slug:
        post.slug = slug
    post.title = fields.title
    post.teaser = fields.teaser
    post.body_markdown = fields.body_markdown
    post.body_html = rules.render_markdown(fields.body_markdown)
    post.all_patrons = fields.all_patrons
    post.tiers = tiers
    session.flush()
    return post


def publish_post(session: Session, post: Post, *, now: datetime | None = None) -> Post:
    """Make a post visible on /updates and in feeds (publishing again keeps the first date)."""
    if post.published_at is None:
        post.published_at = now or utcnow()
    session.flush()
    return post


def unpublish_post(session: Session, post: Post) -> Post:
    """Take a post back to a draft: gone from /updates and from every feed at once."""
    post.published_at = None
    session.flush()
    return post


def published_posts(session: Session, *, limit: int | None = None) -> list[Post]:
    query = (
        select(Post)
        .where(Post.published_at.is_not(None))
        .options(selectinload(Post.tiers))
        .order_by(Post.published_at.desc(), Post.id.desc())
    )
    if limit is not None:
        query = query.limit(limit)
    return list(session.scalars(query))


def published_post(session: Session, slug: str) -> Post | None:
    return session.scalar(select(Post).where(Post.slug == slug, Post.published_at.is_not(None)))


def can_read(post: Post, member: Member | None, perks: rules.MemberPerks | None) -> bool:
    """Whether ``member`` (with their ``perks_for``) may read the body of ``post`` now.

    Staff may read every post, to check what patrons see.
    """
    if member is None or perks is None:
        return False
    if member.is_staff:
        return True
    return rules.can_read_post(
        perks, all_patrons=post.all_patrons, tier_slugs=(tier.slug for tier in post.tiers)
    )


# --- private feeds -----------------------------------------------------------------------------


def _hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def has_feed(session: Session, member: Member) -> bool:
    return session.scalar(select(FeedToken.id).where(FeedToken.member_id == member.id)) is not None


def create_feed_token(session: Session, member: Member) -> str:
    """A new private feed address for the member; any earlier one stops working.

    Only its hash is stored: the token is shown once, when it is made.
    """
    session.execute(delete(FeedToken).where(FeedToken.member_id == member.id))
    token = secrets.token_urlsafe(32)
    session.add(FeedToken(member_id=member.id, token_hash=_hash_token(token)))
    session.flush()
    return token


def revoke_feed_token(session: Session, member: Member) -> bool:
    """Stop the member's feed address working at once. True if there was one."""
    result = session.execute(delete(FeedToken).where(FeedToken.member_id == member.id))
    session.flush()
    return bool(getattr(result, "rowcount", 0))


def member_for_feed(session: Session, token: str) -> Member | None:
    """The member a feed token belongs to; None for an unknown, revoked or deleted one."""
    if not token or len(token) > 100:
        return None
    member = session.scalar(
        select(Member)
        .join(FeedToken, FeedToken.member_id == Member.id)
        .where(FeedToken.token_hash == _hash_token(token))
    )
    if member is None or member.deleted_at is not None:
        return None
    return member


@dataclass(frozen=True)
class FeedEntry:
    post: Post
    readable: bool


def feed_entries(session: Session, member: Member, *, limit: int = 50) -> list[FeedEntry]:
    """The newest published posts for the member's feed, each with whether the member may
    read its body right now (decided at the time of the request, not when the token was made)."""
    perks = perks_for(session, member)
    return [
        FeedEntry(post, can_read(post, member, perks))
        for post in published_posts(session, limit=limit)
    ]


# --- the supporters wall -----------------------------------------------------------------------


def wall_entry(session: Session, member: Member) -> WallEntry | None:
    return session.scalar(select(WallEntry).where(WallEntry.member_id == member.id))


def join_wall(session: Session, member: Member, *, display_name: str, show_tier: bool) -> WallEntry:
    """Put the member on the supporters wall (or change how they appear there)."""
    if not perks_for(session, member).has_kind("wall"):
        raise PerkError("The supporters wall is for patrons whose tier includes it.")
    entry = wall_entry(session, member)
    if entry is None:
        entry = WallEntry(member_id=member.id)
        session.add(entry)
    entry.display_name = display_name
    entry.show_tier = show_tier
    session.flush()
    return entry


def leave_wall(session: Session, member: Member) -> bool:
    """Take the member's name off the wall at once. True if it was there."""
    result = session.execute(delete(WallEntry).where(WallEntry.member_id == member.id))
    session.flush()
    return bool(getattr(result, "rowcount", 0))


@dataclass(frozen=True)
class WallLine:
    name: str
    tier: str | None  # the tier's name, when the supporter chose to show it


def supporters_wall(session: Session, *, now: datetime | None = None) -> list[WallLine]:
    """Who is on the public wall: members who opted in and are patrons with the wall perk
    right now. Someone whose membership ended disappears without doing anything."""
    entries = list(
        session.scalars(
            select(WallEntry)
            .join(Member, Member.id == WallEntry.member_id)
            .where(Member.deleted_at.is_(None))
            .order_by(WallEntry.created_at, WallEntry.id)
        )
    )
    perks = perks_for_members(session, (e.member_id for e in entries), now=now)
    tier_names = {slug: name for slug, name in session.execute(select(Tier.slug, Tier.name))}
    lines = []
    for entry in entries:
        member_perks = perks[entry.member_id]
        if not member_perks.has_kind("wall"):
            continue
        tier = tier_names.get(member_perks.tier_slug or "") if entry.show_tier else None
        lines.append(WallLine(entry.display_name, tier))
    return lines


# --- the patron's dashboard --------------------------------------------------------------------


@dataclass(frozen=True)
class Dashboard:
    """What My membership shows about perks."""

    perks: rules.MemberPerks
    tier_name: str | None
    wall: WallEntry | None
    has_feed: bool

    def of_kind(self, kind: str) -> list[rules.Unlocked]:
        return sorted(
            (u for u in self.perks.unlocked.values() if u.perk.kind == kind),
            key=lambda u: u.perk.name,
        )


def dashboard(session: Session, member: Member) -> Dashboard:
    perks, tier = _perks_and_tier(session, member, None, None, _UNSET)
    # The tier perks_for found (loaded with the subscription or the comp), named only while
    # its perks apply, as perks.tier_slug is.
    tier_name = tier.name if tier is not None and perks.tier_slug is not None else None
    # The wall entry and whether there is a feed in one query (at most one of each a member).
    row = session.execute(
        select(WallEntry, FeedToken.id)
        .select_from(Member)
        .outerjoin(WallEntry, WallEntry.member_id == Member.id)
        .outerjoin(FeedToken, FeedToken.member_id == Member.id)
        .where(Member.id == member.id)
    ).first()
    wall, feed_id = row if row is not None else (None, None)
    return Dashboard(perks=perks, tier_name=tier_name, wall=wall, has_feed=feed_id is not None)
