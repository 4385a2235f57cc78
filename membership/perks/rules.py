"""Which perks a member has: pure functions over tiers, staff's grants and a membership state."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

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
