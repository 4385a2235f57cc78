"""Billing forms. Amounts are text here and become minor units in the service."""

from __future__ import annotations

from wtforms import (
    EmailField,
    HiddenField,
    IntegerField,
    RadioField,
    SelectChoice,
    SelectField,
    StringField,
)
from wtforms.validators import InputRequired, Length, NumberRange, Optional

from membership.accounts.forms import NormalisedEmail
from membership.forms import Form


class ChoiceForm(Form):
    """The reader's choice from the support page (sent by GET, so it survives a login)."""

    tier = IntegerField(validators=[InputRequired("Choose a tier.")])
    interval = HiddenField(validators=[InputRequired("Choose monthly or yearly.")])
    currency = HiddenField(validators=[InputRequired("Choose a currency.")])
    amount = HiddenField(validators=[Optional(), Length(max=20)])


class JoinForm(ChoiceForm):
    """The choice, confirmed before the card step. ``token`` makes pressing it twice harmless."""

    token = HiddenField(validators=[InputRequired(), Length(min=16, max=64)])


class GiftForm(Form):
    amount = StringField(
        "Amount",
        validators=[InputRequired("Enter an amount."), Length(max=20, message="Enter an amount.")],
        render_kw={"inputmode": "decimal", "autocomplete": "transaction-amount"},
    )
    currency = SelectField("Currency", choices=[])
    email = EmailField(
        "Email address, for your receipt",
        validators=[Optional(), NormalisedEmail()],
        render_kw={"autocomplete": "email"},
    )
    token = HiddenField(validators=[InputRequired(), Length(min=16, max=64)])


class ChangePlanForm(Form):
    price = RadioField("New membership", coerce=int, choices=[], validate_choice=True)


class PauseForm(Form):
    months = SelectField(
        "Pause for",
        coerce=int,
        choices=[SelectChoice(n, f"{n} month{'s' if n > 1 else ''}") for n in (1, 2, 3)],
        validators=[NumberRange(min=1, max=3)],
    )


class CancelForm(Form):
    reason = StringField(
        "Would you tell us why? (optional)",
        validators=[Optional(), Length(max=500, message="Please keep it under 500 characters.")],
    )
