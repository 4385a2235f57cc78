"""Forms of the voting area: proposing, and staff's rounds, topics and decisions."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from wtforms import BooleanField, SelectChoice, SelectField, StringField, TextAreaField
from wtforms.fields import DateTimeLocalField
from wtforms.validators import InputRequired, Length, Optional, ValidationError

from membership.forms import Form
from membership.voting import rules


def _strip(value: Any) -> Any:
    return value.strip() if isinstance(value, str) else value


class TopicForm(Form):
    """A patron's proposal, or a topic staff put on the ballot themselves."""

    title = StringField(
        "Topic",
        description=f"One line, up to {rules.TITLE_MAX} characters.",
        filters=[_strip],
        validators=[
            InputRequired("Give the topic a title."),
            Length(max=rules.TITLE_MAX, message="Keep the title to 140 characters or fewer."),
        ],
    )
    why = TextAreaField(
        "Why it matters",
        description=f"Optional, up to {rules.WHY_MAX} characters.",
        filters=[_strip],
        validators=[
            Optional(),
            Length(max=rules.WHY_MAX, message="Keep this to 2000 characters or fewer."),
        ],
    )

    def validate_title(self, field: Any) -> None:
        if not " ".join((field.data or "").split()):
            raise ValidationError("Give the topic a title.")


class RoundForm(Form):
    title = StringField(
        "Title",
        filters=[_strip],
        validators=[InputRequired("Give the round a title."), Length(max=200)],
    )
    description = TextAreaField(
        "Description", filters=[_strip], validators=[Optional(), Length(max=5000)]
    )
    opens_at = DateTimeLocalField(
        "Opens at (UTC)",
        format="%Y-%m-%dT%H:%M",
        validators=[InputRequired("When does the round open?")],
    )
    closes_at = DateTimeLocalField(
        "Closes at (UTC)",
        format="%Y-%m-%dT%H:%M",
        validators=[InputRequired("When does the round close?")],
    )
    results_live = BooleanField("Show the counts while the round is open (else only at close)")
    staff_see_voters = BooleanField("Staff may see who voted for what (else only the counts)")
    drop_votes_of_lapsed = BooleanField(
        "Stop counting the votes of members who stop being patrons while the round is open",
        description="Off by default: a patron's votes stay counted once cast.",
    )

    def utc(self, name: str) -> datetime:
        value: datetime = self[name].data
        return value.replace(tzinfo=UTC)


class RejectForm(Form):
    reason = TextAreaField(
        "Reason (the proposer sees it)",
        filters=[_strip],
        validators=[
            InputRequired("Tell the proposer why."),
            Length(max=rules.REASON_MAX, message="Keep the reason to 500 characters."),
        ],
    )


class MergeForm(Form):
    into = SelectField("Merge into", coerce=int, validate_choice=False)

    def validate_into(self, field: Any) -> None:
        if field.data is None:
            raise ValidationError("Choose a topic on this round's ballot to merge into.")


class StatusForm(Form):
    status = SelectField(
        "What became of it",
        choices=[SelectChoice(s.value, rules.STATUS_LABELS[s]) for s in rules.COVERAGE_STATUSES],
        validators=[InputRequired("Choose what became of this topic.")],
    )
    story_url = StringField(
        "Story address (when published)",
        filters=[_strip],
        validators=[Optional(), Length(max=rules.URL_MAX)],
        render_kw={"inputmode": "url"},
    )
    note = TextAreaField(
        "Note (why, when declined; shown on the topic page)",
        filters=[_strip],
        validators=[Optional(), Length(max=rules.REASON_MAX)],
    )
