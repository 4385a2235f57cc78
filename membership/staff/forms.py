"""Staff forms."""

from __future__ import annotations

from typing import Any

from flask_wtf import FlaskForm
from flask_wtf.file import FileField, FileRequired, FileSize
from wtforms import (
    BooleanField,
    DateField,
    IntegerField,
    SelectChoice,
    SelectField,
    StringField,
    TextAreaField,
    ValidationError,
)
from wtforms.validators import InputRequired, Length, NumberRange, Optional

from membership.billing.rules import Interval
from membership.forms import Form

# The app refuses any request above MAX_CONTENT_LENGTH (1 MiB), so both files share that limit.
UPLOAD_MAX_BYTES = 1024 * 1024


class TierForm(Form):
    slug = StringField(
        "Short name (in Stripe ids and links; cannot change later)",
        validators=[Optional(), Length(max=40)],
    )
    name = StringField("Name", validators=[InputRequired("Give the tier a name."), Length(max=80)])
    description = TextAreaField("Description", validators=[Optional(), Length(max=2000)])
    position = IntegerField(
        "Order on the support page", default=0, validators=[NumberRange(min=0, max=999)]
    )
    trial_days = IntegerField(
        "Free trial (days)", default=0, validators=[NumberRange(min=0, max=90)]
    )
    active = BooleanField("Offered on the support page", default=True)


class ImportForm(FlaskForm):
    """The CSV upload: a FlaskForm (not our text-only ``Form``) because it takes files."""

    members = FileField(
        "members.csv",
        validators=[
            FileRequired("Choose the members file."),
            FileSize(UPLOAD_MAX_BYTES, message="The files may be 1 MiB together at most."),
        ],
    )
    payments = FileField(
        "payments.csv (optional)",
        validators=[
            FileSize(UPLOAD_MAX_BYTES, message="The files may be 1 MiB together at most."),
        ],
    )
    dry_run = BooleanField("Dry run: check and count, write nothing", default=False)


def price_field_name(interval: Interval, currency: str) -> str:
    return f"price_{interval.value}_{currency.lower()}"


def tier_form(currencies: list[str], *args: Any, **kwargs: Any) -> TierForm:
    """A TierForm with one amount field per interval and currency offered."""

    class WithPrices(TierForm):
        pass

    for currency in currencies:
        for interval in (Interval.MONTH, Interval.YEAR):
            field = StringField(
                f"{currency} a {interval.value}",
                validators=[Optional(), Length(max=20)],
                render_kw={"inputmode": "decimal"},
            )
            setattr(WithPrices, price_field_name(interval, currency), field)
    return WithPrices(*args, **kwargs)


# --- members -------------------------------------------------------------------------------------


def choices(pairs: list[tuple[str, str]]) -> list[SelectChoice]:
    return [SelectChoice(value, label) for value, label in pairs]


STATE_CHOICES = [
    ("", "Any state"),
    ("active", "Active"),
    ("past_due", "Past due"),
    ("lapsed", "Lapsed"),
    ("paused", "Paused"),
    ("canceling", "Canceling"),
    ("ended", "Ended"),
    ("comped", "Comped"),
    ("none", "Never joined"),
]
DATE_MESSAGE = "Enter a date like 2026-01-31."


class DayField(DateField):
    """A date typed as YYYY-MM-DD, with a message a person understands when it is not one."""

    def process_formdata(self, valuelist: list[Any]) -> None:
        try:
            super().process_formdata(valuelist)
        except ValueError as error:
            raise ValueError(DATE_MESSAGE) from error


class SearchForm(Form):
    """The member search: a GET form (it changes nothing, so it needs no CSRF token)."""

    class Meta(Form.Meta):
        csrf = False

    q = StringField("Email or name", validators=[Optional(), Length(max=254)])
    state = SelectField("State", choices=choices(STATE_CHOICES), default="")
    tier = SelectField("Tier", choices=choices([("", "Any tier")]), default="")
    currency = SelectField("Currency", choices=choices([("", "Any currency")]), default="")
    joined_from = DayField("Joined from", validators=[Optional()], format="%Y-%m-%d")
    joined_to = DayField("Joined until", validators=[Optional()], format="%Y-%m-%d")
    page = IntegerField(
        "Page", default=1, validators=[Optional(), NumberRange(min=1, message="No such page.")]
    )

    def validate_joined_to(self, field: Any) -> None:
        start = self.joined_from.data
        if field.data and start and field.data < start:
            raise ValidationError("The end date is before the start date.")


def search_form(tiers: list[tuple[int, str]], currencies: list[str], formdata: Any) -> SearchForm:
    form = SearchForm(formdata=formdata)
    form.tier.choices = choices([("", "Any tier"), *[(str(i), name) for i, name in tiers]])
    form.currency.choices = choices([("", "Any currency"), *[(c, c) for c in currencies]])
    for name in ("joined_from", "joined_to"):
        form[name].render_kw = {"placeholder": "YYYY-MM-DD"}
    return form


class CompForm(Form):
    tier = SelectField("Tier", choices=[], validate_choice=False)
    ends_on = DayField(
        "Comped until (included)",
        format="%Y-%m-%d",
        validators=[InputRequired(DATE_MESSAGE)],
        description="At most five years from today.",
    )
    reason = StringField("Reason", validators=[InputRequired("Say why."), Length(max=500)])


class RefundForm(Form):
    amount = StringField(
        "Amount to refund",
        validators=[InputRequired("Enter an amount."), Length(max=20)],
        render_kw={"inputmode": "decimal"},
    )


class DeleteMemberForm(Form):
    confirm = BooleanField(
        "I checked that this member asked for their data to be deleted. This cannot be undone.",
        validators=[InputRequired("Tick the box to confirm.")],
    )


class GrantRoleForm(Form):
    email = StringField(
        "Email address", validators=[InputRequired("Enter an email address."), Length(max=254)]
    )
    role = SelectField(
        "Role", choices=choices([("staff", "Staff"), ("admin", "Admin")]), default="staff"
    )


class AuditFilterForm(Form):
    class Meta(Form.Meta):
        csrf = False

    actor = StringField("Who (email or name)", validators=[Optional(), Length(max=254)])
    action = SelectField(
        "Action", choices=choices([("", "Any action")]), validate_choice=False, default=""
    )
    target_type = StringField("Target type", validators=[Optional(), Length(max=40)])
    target_id = StringField("Target id", validators=[Optional(), Length(max=64)])
    since = DayField("From", validators=[Optional()], format="%Y-%m-%d")
    until = DayField("Until", validators=[Optional()], format="%Y-%m-%d")
    page = IntegerField(
        "Page", default=1, validators=[Optional(), NumberRange(min=1, message="No such page.")]
    )

    def validate_until(self, field: Any) -> None:
        if field.data and self.since.data and field.data < self.since.data:
            raise ValidationError("The end date is before the start date.")
