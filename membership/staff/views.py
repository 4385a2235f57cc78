"""The staff area. Every route here is checked on the server: staff and admins only."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, abort, current_app, flash, redirect, render_template, url_for
from sqlalchemy import select

from membership.accounts.access import staff_required
from membership.billing import billing_enabled, get_gateway
from membership.billing import service as billing
from membership.billing.gateway import GatewayError
from membership.billing.models import Tier
from membership.billing.rules import AmountError, Interval, amount_text, parse_amount
from membership.extensions import db
from membership.forms import show_error
from membership.staff import (
    forms,
    models,  # noqa: F401 - the tables this area owns
)

bp = Blueprint("staff", __name__, url_prefix="/staff")


@bp.after_request
def never_cache(response: Response) -> Response:
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.get("/")
@staff_required
def dashboard() -> str:
    return render_template("staff/dashboard.html")


# --- tiers and prices --------------------------------------------------------------------------


@bp.get("/tiers")
@staff_required
def tiers() -> str:
    all_tiers = db.session.scalars(select(Tier).order_by(Tier.position, Tier.id)).all()
    return render_template(
        "staff/tiers.html", tiers=all_tiers, currencies=current_app.config["CURRENCIES"]
    )


def _prices_from(form: forms.TierForm, currencies: list[str]) -> dict[tuple[Interval, str], int]:
    """Read the amount fields; put a message next to each one that cannot be read."""
    prices: dict[tuple[Interval, str], int] = {}
    for currency in currencies:
        for interval in (Interval.MONTH, Interval.YEAR):
            field = form[forms.price_field_name(interval, currency)]
            if not (field.data or "").strip():
                continue
            try:
                prices[(interval, currency)] = parse_amount(field.data, currency)
            except AmountError as exc:
                field.errors = [*field.errors, str(exc)]
    return prices


def _fill_prices(form: forms.TierForm, tier: Tier) -> None:
    for price in tier.prices:
        name = forms.price_field_name(price.interval, price.currency)
        if price.listed and name in form:
            form[name].data = amount_text(price.amount, price.currency)


@bp.route("/tiers/new", methods=["GET", "POST"])
@bp.route("/tiers/<int:tier_id>", methods=["GET", "POST"])
@staff_required
def tier(tier_id: int | None = None) -> Any:
    currencies = current_app.config["CURRENCIES"]
    existing = db.session.get(Tier, tier_id) if tier_id is not None else None
    if tier_id is not None and existing is None:
        abort(404)
    form = forms.tier_form(currencies, obj=existing)
    if existing is not None and not form.is_submitted():
        _fill_prices(form, existing)
    if form.is_submitted():
        valid = form.validate()
        prices = _prices_from(form, currencies)  # after validate(), which clears field errors
        if valid and not any(field.errors for field in form):
            fields = billing.TierFields(
                name=form.name.data.strip(),
                description=(form.description.data or "").strip(),
                position=form.position.data or 0,
                trial_days=form.trial_days.data or 0,
                active=form.active.data,
            )
            try:
                billing.save_tier(
                    db.session, existing, fields, prices, slug=(form.slug.data or "").strip()
                )
            except billing.BillingError as error:
                db.session.rollback()
                show_error(form, error.message, error.field)
            else:
                db.session.commit()
                _sync_with_stripe()
                return redirect(url_for("staff.tiers"))
    status = 400 if form.errors or any(f.errors for f in form) else 200
    return render_template(
        "staff/tier.html", form=form, tier=existing, currencies=currencies, interval=Interval
    ), status


def _sync_with_stripe() -> None:
    if not billing_enabled():
        flash("Saved. Stripe is not configured, so nothing was sent to it.", "info")
        return
    try:
        changes = billing.sync_catalog(db.session, get_gateway())
    except GatewayError:
        db.session.rollback()
        flash(
            "Saved, but Stripe could not be reached: run `flask --app wsgi billing "
            "sync-catalog` before readers choose the new prices.",
            "error",
        )
        return
    db.session.commit()
    flash(f"Saved. Stripe is up to date ({len(changes)} change(s)).", "success")
