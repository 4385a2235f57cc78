"""Staff forms."""

from __future__ import annotations

from typing import Any

from wtforms import BooleanField, IntegerField, StringField, TextAreaField
from wtforms.validators import InputRequired, Length, NumberRange, Optional

from membership.billing.rules import Interval
from membership.forms import Form


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
