"""The staff area. Every route here is checked on the server: staff and admins only."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from typing import Any

from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    stream_with_context,
    url_for,
)
from flask_login import current_user
from sqlalchemy import select

from membership.accounts.access import admin_required, staff_required
from membership.accounts.models import Member, Role
from membership.billing import billing_enabled, get_gateway
from membership.billing import service as billing
from membership.billing.gateway import GatewayError
from membership.billing.models import Payment, Tier
from membership.billing.rules import (
    AmountError,
    Interval,
    MembershipState,
    amount_text,
    format_money,
    parse_amount,
)
from membership.extensions import db
from membership.forms import ButtonForm, show_error
from membership.staff import (
    forms,
    models,
    service,
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
                service.save_tier(
                    db.session,
                    current_user,
                    existing,
                    fields,
                    prices,
                    slug=(form.slug.data or "").strip(),
                    ip=request.remote_addr,
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


# --- members -----------------------------------------------------------------------------------


def _ip() -> str | None:
    return request.remote_addr


def _currency() -> str:
    """The currency of membership events that carry no money (comps)."""
    return current_app.config["CURRENCIES"][0]


def _tier_choices() -> list[tuple[int, str]]:
    return [
        (t.id, t.name) for t in db.session.scalars(select(Tier).order_by(Tier.position, Tier.id))
    ]


@bp.get("/members")
@staff_required
def members() -> Any:
    form = forms.search_form(_tier_choices(), current_app.config["CURRENCIES"], request.args)
    result = None
    if form.validate():
        filters = service.MemberFilters(
            query=(form.q.data or "").strip(),
            state=MembershipState(form.state.data) if form.state.data else None,
            tier_id=int(form.tier.data) if form.tier.data else None,
            currency=form.currency.data or "",
            joined_from=form.joined_from.data,
            joined_to=form.joined_to.data,
        )
        try:
            result = service.search_members(db.session, filters, form.page.data or 1)
        except service.StaffError as error:
            if error.field == "page":
                abort(404)
            show_error(form, error.message, error.field)
    status = 200 if result is not None else 400
    args = {k: v for k, v in request.args.items() if k != "page"}
    return render_template("staff/members.html", form=form, result=result, args=args), status


def _member_or_404(member_id: int) -> Member:
    member = service.live_member(db.session, member_id)
    if member is None:
        abort(404)
    return member


def _render_member(member: Member, status: int = 200, **action_forms: Any) -> Any:
    detail = service.member_detail(db.session, member)
    comp_form = action_forms.get("comp_form") or forms.CompForm()
    comp_form.tier.choices = forms.choices([(str(i), name) for i, name in _tier_choices()])
    refund_forms: dict[int, forms.RefundForm] = {}
    for payment in detail.payments:
        if service.refundable(payment) > 0:
            given = action_forms.get("refund_form")
            if given is not None and action_forms.get("payment_id") == payment.id:
                refund_forms[payment.id] = given
            else:
                refund_forms[payment.id] = forms.RefundForm(
                    formdata=None,
                    prefix=f"p{payment.id}",
                    amount=amount_text(service.refundable(payment), payment.currency),
                )
    return render_template(
        "staff/member.html",
        detail=detail,
        member=member,
        comp_form=comp_form,
        refund_forms=refund_forms,
        refundable=service.refundable,
        button=action_forms.get("button_form") or ButtonForm(),
        delete_form=action_forms.get("delete_form") or forms.DeleteMemberForm(formdata=None),
        format_money=format_money,
    ), status


@bp.get("/members/<int:member_id>")
@staff_required
def member(member_id: int) -> Any:
    return _render_member(_member_or_404(member_id))


@bp.post("/members/<int:member_id>/comps")
@staff_required
def grant_comp(member_id: int) -> Any:
    target = _member_or_404(member_id)
    form = forms.CompForm()
    form.tier.choices = forms.choices([(str(i), name) for i, name in _tier_choices()])
    if form.validate():
        try:
            service.grant_comp(
                db.session,
                current_user,
                target,
                tier_id=int(form.tier.data) if (form.tier.data or "").isdigit() else 0,
                ends_on=form.ends_on.data,
                reason=form.reason.data,
                currency=_currency(),
                ip=_ip(),
            )
        except service.StaffError as error:
            db.session.rollback()
            show_error(form, error.message, error.field)
        else:
            db.session.commit()
            flash("Comp granted.", "success")
            return redirect(url_for("staff.member", member_id=member_id))
    return _render_member(target, 400, comp_form=form)


@bp.post("/members/<int:member_id>/comps/<int:comp_id>/end")
@staff_required
def end_comp(member_id: int, comp_id: int) -> Any:
    target = _member_or_404(member_id)
    comp = db.session.get(models.Comp, comp_id)
    if comp is None or comp.member_id != target.id:
        abort(404)
    form = ButtonForm()
    if form.validate():
        try:
            service.end_comp(db.session, current_user, comp, currency=_currency(), ip=_ip())
        except service.StaffError as error:
            db.session.rollback()
            flash(error.message, "error")
        else:
            db.session.commit()
            flash("Comp ended.", "success")
    else:
        flash("The form had expired: please try again.", "error")
    return redirect(url_for("staff.member", member_id=member_id))


@bp.post("/members/<int:member_id>/payments/<int:payment_id>/refund")
@staff_required
def refund(member_id: int, payment_id: int) -> Any:
    target = _member_or_404(member_id)
    payment = db.session.get(Payment, payment_id)
    if payment is None or payment.member_id != target.id:
        abort(404)
    form = forms.RefundForm(prefix=f"p{payment.id}")
    if form.validate():
        try:
            service.refund_payment(
                db.session, get_gateway(), current_user, payment, form.amount.data, ip=_ip()
            )
        except service.StaffError as error:
            db.session.rollback()
            show_error(form, error.message, error.field)
        except GatewayError:
            db.session.rollback()
            form.amount.errors = [
                *form.amount.errors,
                "Stripe could not be reached, so nothing was refunded. Try again shortly.",
            ]
        else:
            db.session.commit()
            flash("Refund made.", "success")
            return redirect(url_for("staff.member", member_id=member_id))
    return _render_member(target, 400, refund_form=form, payment_id=payment.id)


@bp.post("/members/<int:member_id>/resend-confirmation")
@staff_required
def resend_member_confirmation(member_id: int) -> Any:
    target = _member_or_404(member_id)
    form = ButtonForm()
    if form.validate():
        try:
            service.resend_confirmation(db.session, current_user, target, ip=_ip())
        except service.StaffError as error:
            db.session.rollback()
            flash(error.message, "error")
        else:
            db.session.commit()
            flash("Confirmation email sent.", "success")
    else:
        flash("The form had expired: please try again.", "error")
    return redirect(url_for("staff.member", member_id=member_id))


@bp.post("/members/<int:member_id>/delete")
@staff_required
def delete_member(member_id: int) -> Any:
    target = _member_or_404(member_id)
    form = forms.DeleteMemberForm()
    if form.validate():
        try:
            service.delete_member(db.session, get_gateway(), current_user, target, ip=_ip())
        except service.StaffError as error:
            db.session.rollback()
            show_error(form, error.message)
        except GatewayError:
            db.session.rollback()
            form.form_errors.append(
                "Stripe could not be reached to stop their payments, so nothing was deleted."
            )
        else:
            db.session.commit()
            flash("The member's personal data is deleted.", "success")
            return redirect(url_for("staff.members"))
    return _render_member(target, 400, delete_form=form)


# --- the team (admins) ---------------------------------------------------------------------------


def _render_team(form: forms.GrantRoleForm | None = None, status: int = 200) -> Any:
    return render_template(
        "staff/team.html",
        team=service.team(db.session),
        form=form or forms.GrantRoleForm(formdata=None),
        button=ButtonForm(),
    ), status


@bp.get("/team")
@admin_required
def team() -> Any:
    return _render_team()


@bp.post("/team")
@admin_required
def team_grant() -> Any:
    form = forms.GrantRoleForm()
    if form.validate():
        try:
            service.grant_role_by_email(
                db.session, current_user, form.email.data, Role(form.role.data), ip=_ip()
            )
        except service.StaffError as error:
            db.session.rollback()
            show_error(form, error.message, error.field)
        else:
            db.session.commit()
            flash("Role given.", "success")
            return redirect(url_for("staff.team"))
    return _render_team(form, 400)


@bp.post("/team/<int:member_id>/remove")
@admin_required
def team_remove(member_id: int) -> Any:
    target = _member_or_404(member_id)
    form = ButtonForm()
    if form.validate():
        try:
            service.set_role(db.session, current_user, target, Role.READER, ip=_ip())
        except service.StaffError as error:
            db.session.rollback()
            flash(error.message, "error")
        else:
            db.session.commit()
            flash("Staff role removed.", "success")
    else:
        flash("The form had expired: please try again.", "error")
    return redirect(url_for("staff.team"))


# --- the audit log -------------------------------------------------------------------------------


def _audit_form() -> forms.AuditFilterForm:
    form = forms.AuditFilterForm(formdata=request.args)
    form.action.choices = forms.choices(
        [("", "Any action"), *[(a, a) for a in service.audit_actions(db.session)]]
    )
    return form


def _audit_filters(form: forms.AuditFilterForm) -> service.AuditFilters:
    return service.AuditFilters(
        actor=(form.actor.data or "").strip(),
        action=form.action.data or "",
        target_type=(form.target_type.data or "").strip(),
        target_id=(form.target_id.data or "").strip(),
        since=form.since.data,
        until=form.until.data,
    )


@bp.get("/audit")
@staff_required
def audit() -> Any:
    form = _audit_form()
    result = None
    if form.validate():
        try:
            result = service.audit_page(db.session, _audit_filters(form), form.page.data or 1)
        except service.StaffError:
            abort(404)
    args = {k: v for k, v in request.args.items() if k != "page"}
    return render_template("staff/audit.html", form=form, result=result, args=args), (
        200 if result is not None else 400
    )


@bp.get("/audit.csv")
@staff_required
def audit_csv() -> Any:
    form = _audit_form()
    if not form.validate():
        abort(400)
    rows = service.audit_rows(db.session, _audit_filters(form))

    @stream_with_context
    def generate() -> Iterator[str]:
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(service.AUDIT_CSV_HEADER)
        for row in rows:
            writer.writerow(row)
            if buffer.tell() > 32_000:
                yield buffer.getvalue()
                buffer.seek(0)
                buffer.truncate()
        yield buffer.getvalue()

    return Response(
        generate(),
        mimetype="text/csv",
        headers={"Content-Disposition": 'attachment; filename="audit-log.csv"'},
    )


# --- importing members from another platform ---------------------------------------------------


@bp.route("/import", methods=["GET", "POST"])
@staff_required
def import_members() -> Any:
    """Upload members.csv (and payments.csv): all-or-nothing, as `flask members import`."""
    from flask import request
    from flask_login import current_user

    from membership.database import utcnow
    from membership.staff import importer

    form = forms.ImportForm()
    result = None
    status = 200
    if form.validate_on_submit():
        payments = form.payments.data
        result = importer.import_members(
            db.session,
            form.members.data.read(),
            payments.read() if payments else None,
            now=utcnow(),
            default_currency=current_app.config["CURRENCIES"][0],
        )
        result.dry_run = bool(form.dry_run.data)
        if not result.ok or result.dry_run:
            db.session.rollback()
            status = 200 if result.ok else 400
        else:
            importer.record_audit(db.session, result, current_user.id, request.remote_addr)
            db.session.commit()
    elif form.is_submitted():
        status = 400
    return render_template("staff/import.html", form=form, result=result), status
