"""Which perks a member has, and what a post body may contain: pure rules, no app, no database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from membership.billing.rules import (
    MembershipState,
    SubscriptionFacts,
    SubscriptionStatus,
    membership_state,
)
from membership.perks import rules
from membership.perks.rules import Decision, PerkDef

READER, INSIDER, COCREATOR = 1, 2, 3
TIERS = [READER, INSIDER, COCREATOR]  # lowest first, as Tier.position orders them
NOW = datetime(2026, 6, 15, 12, 0, tzinfo=UTC)
GRACE = timedelta(days=7)

PERKS = {
    "patron_posts": PerkDef("patron_posts", "Patron-only updates", "content"),
    "votes": PerkDef("votes", "Votes", "votes", votes=1),
    "wall": PerkDef("wall", "Supporters wall", "wall"),
    "ad_free": PerkDef("ad_free", "Ad-free", "flag"),
    "merch": PerkDef("merch", "Merch discount", "reveal", reveal="CODE20"),
}


def table(*decisions: Decision) -> dict[int, dict[str, rules.Unlocked]]:
    return rules.perks_by_tier(TIERS, PERKS, decisions)


def grant(tier: int, key: str, votes: int | None = None) -> Decision:
    return Decision(tier_id=tier, perk_key=key, grant=True, votes=votes)


def withhold(tier: int, key: str) -> Decision:
    return Decision(tier_id=tier, perk_key=key, grant=False)


# --- inheritance -------------------------------------------------------------------------------


def test_a_perk_granted_to_the_lowest_tier_is_had_by_every_tier_above():
    result = table(grant(READER, "patron_posts"))
    assert all("patron_posts" in result[tier] for tier in TIERS)


def test_a_perk_granted_to_a_middle_tier_is_not_had_by_the_tier_below():
    result = table(grant(INSIDER, "ad_free"))
    assert "ad_free" not in result[READER]
    assert "ad_free" in result[INSIDER]
    assert "ad_free" in result[COCREATOR]


def test_a_withheld_perk_is_taken_away_from_that_tier_and_the_ones_above():
    result = table(grant(READER, "wall"), withhold(INSIDER, "wall"))
    assert "wall" in result[READER]
    assert "wall" not in result[INSIDER]
    assert "wall" not in result[COCREATOR]


def test_a_tier_above_a_withholding_tier_can_grant_the_perk_again():
    result = table(grant(READER, "wall"), withhold(INSIDER, "wall"), grant(COCREATOR, "wall"))
    assert [("wall" in result[tier]) for tier in TIERS] == [True, False, True]


def test_no_decisions_means_no_tier_has_any_perk():
    assert table() == {READER: {}, INSIDER: {}, COCREATOR: {}}


def test_a_decision_about_an_inactive_or_deleted_perk_is_ignored():
    result = table(grant(READER, "gone"))
    assert result[READER] == {}


def test_tiers_are_taken_in_the_order_given_not_by_id():
    result = rules.perks_by_tier([COCREATOR, READER], PERKS, [grant(COCREATOR, "ad_free")])
    assert "ad_free" in result[READER]


# --- votes per tier ----------------------------------------------------------------------------


def test_each_tier_gets_its_own_number_of_votes():
    result = table(
        grant(READER, "votes", 1), grant(INSIDER, "votes", 3), grant(COCREATOR, "votes", 5)
    )
    assert [result[tier]["votes"].votes for tier in TIERS] == [1, 3, 5]


def test_a_tier_without_its_own_number_keeps_the_number_of_the_tier_below():
    result = table(grant(READER, "votes", 1), grant(INSIDER, "votes", 3))
    assert result[COCREATOR]["votes"].votes == 3


def test_a_tier_granting_votes_without_a_number_gets_the_perks_default():
    result = table(grant(INSIDER, "votes"))
    assert result[INSIDER]["votes"].votes == 1
    assert "votes" not in result[READER]


def test_only_votes_perks_carry_a_number_of_votes():
    result = table(grant(READER, "wall", 4))
    assert result[READER]["wall"].votes is None


def test_votes_per_round_is_zero_without_a_votes_perk_and_the_number_with_one():
    tiers = table(grant(READER, "patron_posts"), grant(INSIDER, "votes", 3))
    reader = rules.member_perks(MembershipState.ACTIVE, READER, "reader", tiers)
    insider = rules.member_perks(MembershipState.ACTIVE, INSIDER, "insider", tiers)
    assert reader.votes_per_round == 0
    assert insider.votes_per_round == 3


def test_a_patron_whose_tier_withholds_votes_has_no_votes():
    tiers = table(grant(READER, "votes", 1), withhold(COCREATOR, "votes"))
    member = rules.member_perks(MembershipState.ACTIVE, COCREATOR, "co-creator", tiers)
    assert member.votes_per_round == 0
    assert not member.has("votes")


# --- membership states -------------------------------------------------------------------------

ALL = table(
    grant(READER, "patron_posts"),
    grant(READER, "votes", 1),
    grant(READER, "wall"),
    grant(INSIDER, "ad_free"),
)


def facts_for(case: str) -> SubscriptionFacts | None:
    """Stripe's facts for each way a membership can be, as the billing rules see them."""
    later, earlier = NOW + timedelta(days=10), NOW - timedelta(days=1)
    return {
        "active": SubscriptionFacts(SubscriptionStatus.ACTIVE, current_period_end=later),
        "trialing": SubscriptionFacts(SubscriptionStatus.TRIALING, current_period_end=later),
        "past_due within grace": SubscriptionFacts(
            SubscriptionStatus.PAST_DUE, past_due_since=NOW - timedelta(days=2)
        ),
        "canceling": SubscriptionFacts(
            SubscriptionStatus.ACTIVE, cancel_at_period_end=True, current_period_end=later
        ),
        "lapsed": SubscriptionFacts(
            SubscriptionStatus.PAST_DUE, past_due_since=NOW - timedelta(days=8)
        ),
        "unpaid": SubscriptionFacts(SubscriptionStatus.UNPAID, past_due_since=NOW),
        "paused": SubscriptionFacts(SubscriptionStatus.ACTIVE, pause_requested=True),
        "ended": SubscriptionFacts(SubscriptionStatus.CANCELED),
        "ended at period end": SubscriptionFacts(
            SubscriptionStatus.ACTIVE, cancel_at_period_end=True, current_period_end=earlier
        ),
        "incomplete": SubscriptionFacts(SubscriptionStatus.INCOMPLETE),
        "none": None,
    }[case]


@pytest.mark.parametrize("case", ["active", "trialing", "past_due within grace", "canceling"])
def test_a_patron_in_good_standing_has_the_perks_of_their_tier(case):
    state = membership_state(facts_for(case), NOW, GRACE)
    member = rules.member_perks(state, INSIDER, "insider", ALL)
    assert member.patron
    assert member.keys == ["ad_free", "patron_posts", "votes", "wall"]
    assert member.votes_per_round == 1
    assert member.has_kind("content") and member.has_kind("flag")


@pytest.mark.parametrize(
    "case",
    ["lapsed", "unpaid", "paused", "ended", "ended at period end", "incomplete", "none"],
)
def test_a_member_who_is_not_a_patron_now_has_no_perks_at_all(case):
    state = membership_state(facts_for(case), NOW, GRACE)
    member = rules.member_perks(state, INSIDER, "insider", ALL)
    assert not member.patron
    assert member.keys == []
    assert member.votes_per_round == 0
    assert not member.has_kind("content")
    assert member.tier_slug is None


def test_a_comped_member_has_the_perks_of_their_tier():
    state = membership_state(None, NOW, GRACE, comped_until=NOW + timedelta(days=30))
    assert state is MembershipState.COMPED
    assert rules.member_perks(state, READER, "reader", ALL).has("patron_posts")


# Written out here, not imported: a state moved in or out of this set should fail a test.
STATES_WITH_PERKS = {"active", "trialing", "past_due", "canceling", "comped"}


@pytest.mark.parametrize("state", list(MembershipState))
def test_every_state_either_gives_the_tiers_perks_or_none(state):
    member = rules.member_perks(state, READER, "reader", ALL)
    expected = ["patron_posts", "votes", "wall"] if state.value in STATES_WITH_PERKS else []
    assert member.keys == expected


def test_a_patron_without_a_tier_has_no_perks():
    assert rules.member_perks(MembershipState.ACTIVE, None, None, ALL).keys == []


# --- who may read a post -----------------------------------------------------------------------


def perks_of(tier: int, slug: str, state: MembershipState = MembershipState.ACTIVE):
    return rules.member_perks(state, tier, slug, ALL)


def test_a_post_for_all_patrons_is_readable_by_every_patron_with_the_content_perk():
    assert rules.can_read_post(perks_of(READER, "reader"), all_patrons=True, tier_slugs=[])


def test_a_post_for_chosen_tiers_is_readable_only_by_patrons_of_those_tiers():
    insider_only = {"all_patrons": False, "tier_slugs": ["insider", "co-creator"]}
    assert not rules.can_read_post(perks_of(READER, "reader"), **insider_only)
    assert rules.can_read_post(perks_of(INSIDER, "insider"), **insider_only)


def test_a_lapsed_patron_cannot_read_any_post():
    lapsed = perks_of(INSIDER, "insider", MembershipState.LAPSED)
    assert not rules.can_read_post(lapsed, all_patrons=True, tier_slugs=[])
    assert not rules.can_read_post(lapsed, all_patrons=False, tier_slugs=["insider"])


def test_a_patron_whose_tier_lacks_the_content_perk_cannot_read_posts():
    no_content = rules.member_perks(
        MembershipState.ACTIVE, READER, "reader", table(grant(READER, "wall"))
    )
    assert not rules.can_read_post(no_content, all_patrons=True, tier_slugs=[])


# --- Markdown, made safe -----------------------------------------------------------------------

HOSTILE = [
    "<script>alert(1)</script>",
    "<img src=x onerror=alert(1)>",
    "[x](javascript:alert(1))",
    "[x](JaVaScRiPt:alert(1))",
    "[x](  javascript:alert(1))",
    "[x](data:text/html;base64,PHNjcmlwdD4=)",
    '<a href="javascript:alert(1)">x</a>',
    '<div onclick="alert(1)" style="color:red">x</div>',
    '<iframe src="https://evil.example"></iframe>',
    "<style>body{display:none}</style>",
    '<svg onload="alert(1)"></svg>',
    '<form action="https://evil.example"><input name=q></form>',
    "<object data=evil></object><embed src=evil>",
    '<a href="https://ok.example" onmouseover="alert(1)">x</a>',
    "<!-- a comment --><p>x</p>",
    '<img src="javascript:alert(1)">',
]


@pytest.mark.parametrize("source", HOSTILE)
def test_hostile_markdown_loses_everything_that_could_run(source):
    html = rules.render_markdown(source).lower()
    for forbidden in (
        "<script",
        "onerror",
        "onclick",
        "onload",
        "onmouseover",
        "javascript:",
        "data:",
        "<iframe",
        "<style",
        "style=",
        "<svg",
        "<form",
        "<input",
        "<object",
        "<embed",
        "<!--",
    ):
        assert forbidden not in html, f"{forbidden!r} survived in {html!r}"


def test_ordinary_markdown_keeps_its_formatting_and_links_get_noopener():
    html = rules.render_markdown(
        "# Budget\n\n**Bold** and *italic*, [our site](https://example.org).\n\n- one\n- two\n"
    )
    assert "<h2>Budget</h2>" in html
    assert "<strong>Bold</strong>" in html and "<em>italic</em>" in html
    assert '<a href="https://example.org" rel="noopener noreferrer">our site</a>' in html
    assert "<li>one</li>" in html


def test_text_of_removed_tags_is_kept_as_text_not_markup():
    html = rules.render_markdown('<div onclick="x()">Kept words</div>')
    assert "Kept words" in html and "<div" not in html


@pytest.mark.parametrize(
    ("title", "slug"),
    [
        ("Our budget, 2026", "our-budget-2026"),
        ("  Café & crème  ", "cafe-creme"),
        ("Пресса", "update"),
        ("x" * 300, "x" * 120),
    ],
)
def test_a_post_address_is_made_from_its_title(title, slug):
    assert rules.slugify(title) == slug
