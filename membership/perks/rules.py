"""Which perks a member has: pure functions over tiers, staff's grants and a membership state."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import markdown
import nh3

from membership.billing.rules import MembershipState, is_patron


@dataclass(frozen=True)
class PerkDef:
    """A perk as staff defined it (``kind`` is a PerkKind value)."""

    key: str
    name: str
    kind: str
    description: str = ""
    votes: int | None = None
    reveal: str | None = None


@dataclass(frozen=True)
class Decision:
    """Staff's choice for one perk at one tier."""

    tier_id: int
    perk_key: str
    grant: bool  # False: withheld at this tier even though a lower tier has it
    votes: int | None = None


@dataclass(frozen=True)
class Unlocked:
    perk: PerkDef
    votes: int | None = None  # for a votes perk: this tier's number


@dataclass(frozen=True)
class MemberPerks:
    """What a member may do and see right now. Everything perk-related asks this."""

    state: MembershipState
    tier_slug: str | None = None
    unlocked: Mapping[str, Unlocked] = field(default_factory=dict)

    @property
    def patron(self) -> bool:
        return is_patron(self.state)

    def has(self, key: str) -> bool:
        return key in self.unlocked

    def has_kind(self, kind: str) -> bool:
        return any(u.perk.kind == kind for u in self.unlocked.values())

    @property
    def votes_per_round(self) -> int:
        return max(
            (u.votes or 0 for u in self.unlocked.values() if u.perk.kind == "votes"), default=0
        )

    @property
    def keys(self) -> list[str]:
        return sorted(self.unlocked)


def perks_by_tier(
    tier_ids_by_position: Iterable[int],
    perks: Mapping[str, PerkDef],
    decisions: Iterable[Decision],
) -> dict[int, dict[str, Unlocked]]:
    """Each tier's perks. A tier has what the tier below it has, plus its own grants, minus
    what staff withheld at this tier; a tier's own votes number replaces the one below it."""
    by_tier: dict[int, list[Decision]] = {}
    for decision in decisions:
        if decision.perk_key in perks:
            by_tier.setdefault(decision.tier_id, []).append(decision)
    result: dict[int, dict[str, Unlocked]] = {}
    carried: dict[str, Unlocked] = {}
    for tier_id in tier_ids_by_position:
        current = dict(carried)
        for decision in by_tier.get(tier_id, []):
            perk = perks[decision.perk_key]
            if decision.grant:
                votes = decision.votes if decision.votes is not None else perk.votes
                current[perk.key] = Unlocked(perk, votes if perk.kind == "votes" else None)
            else:
                current.pop(perk.key, None)
        result[tier_id] = current
        carried = current
    return result


def member_perks(
    state: MembershipState,
    tier_id: int | None,
    tier_slug: str | None,
    table: Mapping[int, Mapping[str, Unlocked]],
) -> MemberPerks:
    """The one rule: perks come with the tier only while the membership state is a patron's
    (active, trialing, past due within grace, canceling until period end, comped)."""
    if not is_patron(state) or tier_id is None:
        return MemberPerks(state=state, tier_slug=tier_slug if is_patron(state) else None)
    return MemberPerks(state=state, tier_slug=tier_slug, unlocked=dict(table.get(tier_id, {})))


# --- patron-only posts ---------------------------------------------------------------------------


def can_read_post(perks: MemberPerks, *, all_patrons: bool, tier_slugs: Iterable[str]) -> bool:
    """A post's body is for members whose tier unlocks a content perk and, unless the post is
    for all patrons, whose tier is one of the post's tiers (chosen explicitly by staff)."""
    if not perks.has_kind("content") or perks.tier_slug is None:
        return False
    return all_patrons or perks.tier_slug in set(tier_slugs)


ALLOWED_TAGS = frozenset(
    {"p", "br", "hr", "h2", "h3", "h4", "h5", "h6", "strong", "em", "b", "i", "del", "sup", "sub"}
    | {"a", "ul", "ol", "li", "blockquote", "code", "pre", "img", "abbr"}
    | {"table", "thead", "tbody", "tr", "th", "td"}
)
ALLOWED_ATTRIBUTES = {"a": {"href", "title"}, "img": {"src", "alt", "title"}, "abbr": {"title"}}
ALLOWED_URL_SCHEMES = frozenset({"http", "https", "mailto"})
MARKDOWN_EXTENSIONS = ("fenced_code", "tables", "sane_lists")


def render_markdown(text: str) -> str:
    """Markdown to HTML that is safe to show as is: only the tags and attributes above survive,
    so no script, no event handlers, no ``javascript:`` or ``data:`` links, no styles; every
    link gets ``rel="noopener noreferrer"``. A post's ``#`` heading becomes an ``h2`` (the
    page's ``h1`` is the post's title)."""
    html = markdown.markdown(text, extensions=list(MARKDOWN_EXTENSIONS), output_format="html")
    html = html.replace("<h1>", "<h2>").replace("</h1>", "</h2>")
    return nh3.clean(
        html,
        tags=set(ALLOWED_TAGS),
        attributes={tag: set(names) for tag, names in ALLOWED_ATTRIBUTES.items()},
        url_schemes=set(ALLOWED_URL_SCHEMES),
        link_rel="noopener noreferrer",
        strip_comments=True,
    )


def slugify(title: str, max_length: int = 120) -> str:
    """A readable address for a post from its title ("Our budget, 2026" -> "our-budget-2026")."""
    ascii_title = unicodedata.normalize("NFKD", title).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_title.lower()).strip("-")
    return slug[:max_length].rstrip("-") or "update"
