"""Forms of the perks area: perks and their tiers (staff), posts (staff), the wall (patrons)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from wtforms import (
    BooleanField,
    IntegerField,
    RadioField,
    SelectChoice,
    SelectField,
    SelectMultipleField,
    StringField,
    TextAreaField,
)
from wtforms.validators import InputRequired, Length, NumberRange, Optional
from wtforms.widgets import CheckboxInput, ListWidget

from membership.accounts.forms import DisplayName
from membership.billing.models import Tier
from membership.forms import Form
from membership.perks.models import Grant, PerkKind

KIND_LABELS = {
    PerkKind.CONTENT: "Patron-only updates",
    PerkKind.VOTES: "Votes on our coverage (a number per round)",
    PerkKind.WALL: "A place on the supporters wall",
    PerkKind.FLAG: "A flag the main website reads (ad-free, newsletter)",
    PerkKind.REVEAL: "A code or link shown to the patron",
}
MAX_VOTES = 100


def _votes_field(label: str, description: str = "") -> IntegerField:
    return IntegerField(
        label,
        validators=[
            Optional(),
            NumberRange(min=0, max=MAX_VOTES, message=f"Enter a number from 0 to {MAX_VOTES}."),
        ],
        description=description,
        render_kw={"inputmode": "numeric"},
    )


class PerkForm(Form):
    key = StringField(
        "Key (what the API reports; cannot change later)",
        validators=[Optional(), Length(max=40, message="Use at most 40 characters.")],
        description="Lower-case letters, digits and underscores, like ad_free.",
    )
    name = StringField(
        "Name",
        validators=[
            InputRequired("Give the perk a name."),
            Length(max=80, message="Use at most 80 characters."),
        ],
    )
    description = TextAreaField(
        "Description (shown to patrons)",
        validators=[Optional(), Length(max=2000, message="Use at most 2000 characters.")],
    )
    kind = SelectField(
        "Kind",
        choices=[SelectChoice(kind.value, label) for kind, label in KIND_LABELS.items()],
        validators=[InputRequired("Choose what kind of perk this is.")],
    )
    votes = _votes_field(
        "Votes per round (for a votes perk)", "The default; each tier may set its own."
    )
    reveal = StringField(
        "Code or link (for a code or link perk)",
        validators=[Optional(), Length(max=500, message="Use at most 500 characters.")],
    )
    active = BooleanField("Active (patrons get it)", default=True)


GRANT_CHOICES = [
    SelectChoice("", "As the tier below"),
    SelectChoice(Grant.GRANT.value, "Grant"),
    SelectChoice(Grant.WITHHOLD.value, "Withhold"),
]


def grant_field_name(tier_id: int) -> str:
    return f"grant_{tier_id}"


def votes_field_name(tier_id: int) -> str:
    return f"votes_{tier_id}"


class TierDecisionsForm(Form):
    pass


def tier_decisions_form(tiers: Iterable[Tier], *args: Any, **kwargs: Any) -> TierDecisionsForm:
    """One grant choice and one votes number per tier."""

    class PerTier(TierDecisionsForm):
        pass

    for tier in tiers:
        setattr(
            PerTier,
            grant_field_name(tier.id),
            SelectField(f"Does {tier.name} get it?", choices=GRANT_CHOICES, default=""),
        )
        setattr(PerTier, votes_field_name(tier.id), _votes_field(f"{tier.name}: votes per round"))
    return PerTier(*args, **kwargs)


class MultiCheckboxField(SelectMultipleField):
    widget = ListWidget(prefix_label=False)
    option_widget = CheckboxInput()


class PostForm(Form):
    title = StringField(
        "Title",
        validators=[
            InputRequired("Give the update a title."),
            Length(max=200, message="Use at most 200 characters."),
        ],
    )
    slug = StringField(
        "Address (leave empty to make one from the title)",
        validators=[Optional(), Length(max=120, message="Use at most 120 characters.")],
        description="Lower-case letters, digits and dashes: /updates/your-address",
    )
    teaser = TextAreaField(
        "Teaser (everyone sees it)",
        validators=[Optional(), Length(max=1000, message="Use at most 1000 characters.")],
        render_kw={"rows": 3},
    )
    body = TextAreaField(
        "Text, in Markdown (patrons with access see it)",
        validators=[
            InputRequired("Write the update."),
            Length(max=100_000, message="That is too long for one update."),
        ],
        render_kw={"rows": 16},
    )
    audience = RadioField(
        "Who may read it",
        choices=[
            SelectChoice("all", "All patrons"),
            SelectChoice("tiers", "Only patrons of the tiers chosen below"),
        ],
        default="all",
        validators=[InputRequired("Choose who may read it.")],
    )
    tiers = MultiCheckboxField("Tiers", coerce=int)


class WallForm(Form):
    display_name = StringField(
        "Your name on the wall",
        validators=[InputRequired("Enter the name you want to appear under."), DisplayName()],
        render_kw={"maxlength": 80},
    )
    show_tier = BooleanField("Show my tier next to my name")
