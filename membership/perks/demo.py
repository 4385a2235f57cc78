"""Demo perks and patron-only updates for the demo tiers (reader, insider, co-creator).

``seed_demo`` may run any number of times: it adds what is missing and changes nothing that
staff have since edited (a perk or post that exists is left as it is).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from membership.billing.models import Tier
from membership.perks import service
from membership.perks.models import Grant, Perk, PerkKind, Post, TierPerk


@dataclass(frozen=True)
class DemoPerk:
    key: str
    name: str
    kind: PerkKind
    description: str
    grants: dict[str, int | None]  # tier slug -> votes (None: the perk's default)
    votes: int | None = None
    reveal: str | None = None


DEMO_PERKS = [
    DemoPerk(
        "patron_posts",
        "Patron-only updates",
        PerkKind.CONTENT,
        "Dispatches from our reporters, before and beyond what we publish.",
        {"reader": None},
    ),
    DemoPerk(
        "votes",
        "Votes on our coverage",
        PerkKind.VOTES,
        "Spend your votes on the topics you want us to cover next.",
        {"reader": 1, "insider": 3, "co-creator": 5},
        votes=1,
    ),
    DemoPerk(
        "supporters_wall",
        "Your name on the supporters wall",
        PerkKind.WALL,
        "If you like, we thank you by name on our public supporters wall.",
        {"reader": None},
    ),
    DemoPerk(
        "ad_free",
        "Ad-free reading",
        PerkKind.FLAG,
        "No advertising on our website.",
        {"insider": None},
    ),
    DemoPerk(
        "newsletter",
        "The patrons' newsletter",
        PerkKind.FLAG,
        "A weekly letter from the editors, for patrons only.",
        {"reader": None},
    ),
    DemoPerk(
        "merch_discount",
        "20% off in our shop",
        PerkKind.REVEAL,
        "Enter this code at checkout in our shop.",
        {"co-creator": None},
        reveal="COCREATOR20",
    ),
]

# (slug, title, teaser, Markdown body, tier slugs or None for all patrons)
DEMO_POSTS = [
    (
        "a-note-from-the-editors",
        "A note from the editors",
        "What your support paid for this month, and what comes next.",
        "Thank you. This month your support paid for **three investigations** "
        "and a reporter in the field for two weeks.\n\n"
        "Next month we start on the story you voted for. "
        "[See the vote](/vote).",
        None,
    ),
    (
        "inside-the-newsroom-budget",
        "Inside the newsroom budget",
        "Where every euro goes, line by line.",
        "## Where the money goes\n\n"
        "- Reporting: 62%\n- Editing and fact-checking: 21%\n"
        "- Technology: 9%\n- Everything else: 8%\n\n"
        "> Insiders and Co-creators see the full spreadsheet first.",
        ["insider", "co-creator"],
    ),
]


def seed_demo(session: Session) -> None:
    """Add the demo perks (granted to the demo tiers that exist) and two published updates."""
    tiers = {tier.slug: tier for tier in session.scalars(select(Tier))}
    for demo in DEMO_PERKS:
        perk = session.scalar(select(Perk).where(Perk.key == demo.key))
        if perk is None:
            perk = service.save_perk(
                session,
                None,
                service.PerkFields(
                    name=demo.name,
                    description=demo.description,
                    kind=demo.kind,
                    votes=demo.votes,
                    reveal=demo.reveal,
                    active=True,
                ),
                key=demo.key,
            )
        decided = service.tier_decisions(session, perk)
        for slug, votes in demo.grants.items():
            tier = tiers.get(slug)
            if tier is not None and tier.id not in decided:
                session.add(
                    TierPerk(tier_id=tier.id, perk_id=perk.id, grant=Grant.GRANT, votes=votes)
                )
    session.flush()
    for slug, title, teaser, body, tier_slugs in DEMO_POSTS:
        if session.scalar(select(Post.id).where(Post.slug == slug)) is not None:
            continue
        chosen = [tiers[s].id for s in tier_slugs or [] if s in tiers]
        if tier_slugs is not None and not chosen:
            continue  # its tiers are not there: nobody could read it
        post = service.save_post(
            session,
            None,
            service.PostFields(
                title=title,
                teaser=teaser,
                body_markdown=body,
                all_patrons=tier_slugs is None,
                tier_ids=chosen,
            ),
            author=None,
            slug=slug,
        )
        service.publish_post(session, post)
    session.flush()
