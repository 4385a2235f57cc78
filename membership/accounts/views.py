"""Signup, login, email confirmation, password reset, settings, and my data."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlsplit

from flask import (
    Blueprint,
    Response,
    flash,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_login import current_user, login_user, logout_user
from flask_wtf import FlaskForm
from werkzeug.wrappers import Response as BaseResponse

from membership.accounts import forms, service
from membership.accounts.access import login_required
from membership.accounts.models import Member
from membership.accounts.rules import safe_next
from membership.billing import get_gateway
from membership.billing import service as billing
from membership.billing.gateway import GatewayError
from membership.extensions import db, limiter, login_manager
from membership.forms import ButtonForm, show_error

bp = Blueprint("accounts", __name__, url_prefix="/account")

# Generous for people, tight for scripts. Counted per client address, across processes when
# REDIS_URL is set.
LOGIN_LIMIT = "10 per minute;50 per hour"
SIGNUP_LIMIT = "5 per minute;20 per hour"
EMAIL_LIMIT = "3 per minute;10 per hour"  # reset requests and confirmation resends

AUTH_TOKEN_KEY = "auth_token"  # noqa: S105 - the session key name, not a secret


@login_manager.user_loader
def load_member(member_id: str) -> Member | None:
    return service.member_for_login_session(db.session, member_id, session.get(AUTH_TOKEN_KEY))


@login_manager.unauthorized_handler
def ask_to_log_in() -> BaseResponse:
    """Send anonymous visitors to the login page, and back afterwards.

    Only a page can be come back to: after a form was posted, the reader returns to the page
    the form was on (when it is ours), not to the form's POST-only address.
    """
    if request.method in ("GET", "HEAD"):
        target = request.full_path.rstrip("?")
    else:
        referrer = urlsplit(request.referrer or "")
        same_site = referrer.netloc in ("", request.host)
        target = referrer.path if same_site and referrer.path else None
    flash(login_manager.login_message, login_manager.login_message_category)
    return redirect(url_for("accounts.login", next=safe_next(target)))


@bp.after_request
def never_cache(response: Response) -> Response:
    response.headers["Cache-Control"] = "no-store"
    return response


def _render_form(template: str, form: FlaskForm, **context: Any) -> tuple[str, int]:
    """Render a form page: 200 on first view, 400 when it comes back with errors."""
    status = 400 if form.errors else 200
    return render_template(template, form=form, **context), status


def _apply_error(form: FlaskForm, error: service.AccountError) -> None:
    show_error(form, error.message, error.field)


def _log_in(member: Member) -> None:
    """Start a fresh session for the member (a new cookie: nothing carries over from before)."""
    session.clear()
    token = service.start_login_session(db.session, member)
    db.session.commit()
    login_user(member)
    session[AUTH_TOKEN_KEY] = token
    session.permanent = True


def _after_login_target(raw_next: str | None) -> str:
    return safe_next(raw_next) or url_for("billing.membership")


# --- signup, login, logout -------------------------------------------------------------------


@bp.route("/signup", methods=["GET", "POST"])
@limiter.limit(SIGNUP_LIMIT, methods=["POST"])
def signup() -> Any:
    if current_user.is_authenticated:
        return redirect(url_for("billing.membership"))
    form = forms.SignupForm(next=request.args.get("next", ""))
    if form.validate_on_submit():
        try:
            service.signup(
                db.session,
                email=form.email.data,
                password=form.password.data,
                display_name=form.display_name.data,
                next_path=safe_next(form.next.data),
            )
        except service.AccountError as error:
            _apply_error(form, error)
        else:
            db.session.commit()
            return redirect(url_for("accounts.check_email", next=safe_next(form.next.data)))
    return _render_form("accounts/signup.html", form)


@bp.get("/check-email")
def check_email() -> str:
    return render_template("accounts/check_email.html", next=safe_next(request.args.get("next")))


@bp.route("/login", methods=["GET", "POST"])
@limiter.limit(LOGIN_LIMIT, methods=["POST"])
def login() -> Any:
    form = forms.LoginForm(next=request.args.get("next", ""))
    if current_user.is_authenticated and request.method == "GET":
        return redirect(_after_login_target(form.next.data))
    if form.validate_on_submit():
        member = service.authenticate(db.session, form.email.data, form.password.data)
        if member is not None:
            target = _after_login_target(form.next.data)
            _log_in(member)
            name = member.display_name.rstrip(".")
            flash(f"Welcome back, {name}.", "success")
            return redirect(target)
        form.form_errors.append("That email and password do not match an account.")
    return _render_form("accounts/login.html", form)


@bp.post("/logout")
def logout() -> BaseResponse:
    form = ButtonForm()
    if form.validate_on_submit():
        service.end_login_session(db.session, session.get(AUTH_TOKEN_KEY))
        db.session.commit()
        logout_user()
        session.clear()
        flash("You are logged out.", "info")
    return redirect(url_for("site.home"))


# --- email confirmation ------------------------------------------------------------------------


@bp.route("/confirm/<token>", methods=["GET", "POST"])
def confirm(token: str) -> Any:
    """The link from the email shows a button; the POST confirms (mail scanners follow links)."""
    form = ButtonForm()
    next_path = safe_next(request.args.get("next"))
    try:
        if form.validate_on_submit():
            member = service.confirm_email(db.session, token)
            db.session.commit()
            flash("Thank you, your email address is confirmed.", "success")
            if current_user.is_authenticated:
                return redirect(next_path or url_for("billing.membership"))
            return redirect(url_for("accounts.login", next=next_path))
        member = service.confirm_email_preview(db.session, token)
    except service.AccountError as error:
        return render_template("accounts/link_problem.html", error=error, kind="confirm"), 400
    return render_template("accounts/confirm.html", form=form, member=member)


@bp.post("/confirm/resend")
@login_required
@limiter.limit(EMAIL_LIMIT)
def resend_confirmation() -> BaseResponse:
    form = ButtonForm()
    if form.validate_on_submit() and not current_user.email_confirmed:
        service.send_confirmation(db.session, current_user)
        db.session.commit()
        flash("We have sent you a new confirmation link.", "info")
    return redirect(url_for("accounts.overview"))


# --- forgotten password ------------------------------------------------------------------------


@bp.route("/reset", methods=["GET", "POST"])
@limiter.limit(EMAIL_LIMIT, methods=["POST"])
def forgot_password() -> Any:
    form = forms.ForgotPasswordForm()
    if form.validate_on_submit():
        service.request_password_reset(db.session, form.email.data)
        db.session.commit()
        return redirect(url_for("accounts.reset_sent"))
    return _render_form("accounts/forgot_password.html", form)


@bp.get("/reset/sent")
def reset_sent() -> str:
    return render_template("accounts/reset_sent.html")


@bp.route("/reset/<token>", methods=["GET", "POST"])
@limiter.limit(LOGIN_LIMIT, methods=["POST"])
def reset_password(token: str) -> Any:
    try:
        member = service.member_for_reset(db.session, token)
    except service.AccountError as error:
        return render_template("accounts/link_problem.html", error=error, kind="reset"), 400
    form = forms.ResetPasswordForm(account_email=member.email)
    if form.validate_on_submit():
        try:
            service.reset_password(db.session, token, form.password.data)
        except service.AccountError as error:
            _apply_error(form, error)
        else:
            db.session.commit()
            logout_user()
            session.clear()
            flash("Your password is changed. Log in with your new password.", "success")
            return redirect(url_for("accounts.login"))
    return _render_form("accounts/reset_password.html", form)


# --- settings ----------------------------------------------------------------------------------


def _settings_forms(**bound: FlaskForm) -> dict[str, FlaskForm]:
    """The forms of the settings page; the one that was submitted is passed in, with its errors."""
    defaults: dict[str, FlaskForm] = {
        "name_form": forms.DisplayNameForm(formdata=None, display_name=current_user.display_name),
        "email_form": forms.ChangeEmailForm(formdata=None),
        "password_form": forms.ChangePasswordForm(formdata=None),
        "resend_form": ButtonForm(formdata=None),
    }
    return {**defaults, **bound}


def _render_settings(**bound: FlaskForm) -> tuple[str, int]:
    status = 400 if any(form.errors for form in bound.values()) else 200
    return render_template("accounts/overview.html", **_settings_forms(**bound)), status


@bp.get("/")
@login_required
def overview() -> tuple[str, int]:
    return _render_settings()


@bp.post("/name")
@login_required
def change_name() -> Any:
    form = forms.DisplayNameForm()
    if form.validate_on_submit():
        service.change_display_name(current_user, form.display_name.data)
        db.session.commit()
        flash("Your name is saved.", "success")
        return redirect(url_for("accounts.overview"))
    return _render_settings(name_form=form)


@bp.post("/email")
@login_required
def change_email() -> Any:
    form = forms.ChangeEmailForm()
    if form.validate_on_submit():
        try:
            service.request_email_change(
                db.session, current_user, new_email=form.email.data, password=form.password.data
            )
        except service.AccountError as error:
            _apply_error(form, error)
        else:
            db.session.commit()
            flash(
                "We have sent a link to the new address. Your email changes when you follow it.",
                "info",
            )
            return redirect(url_for("accounts.overview"))
    return _render_settings(email_form=form)


@bp.route("/email/<token>", methods=["GET", "POST"])
def confirm_email_change(token: str) -> Any:
    form = ButtonForm()
    try:
        if form.validate_on_submit():
            service.confirm_email_change(db.session, token)
            db.session.commit()
            flash("Your email address is changed.", "success")
            return redirect(url_for("accounts.overview"))
        new_email = service.email_change_preview(db.session, token)
    except service.AccountError as error:
        return render_template("accounts/link_problem.html", error=error, kind="email"), 400
    return render_template("accounts/confirm_email_change.html", form=form, new_email=new_email)


@bp.post("/password")
@login_required
def change_password() -> Any:
    form = forms.ChangePasswordForm(account_email=current_user.email)
    if form.validate_on_submit():
        try:
            service.change_password(
                db.session,
                current_user,
                current=form.current_password.data,
                new=form.new_password.data,
                keep_token=session.get(AUTH_TOKEN_KEY),
            )
        except service.AccountError as error:
            _apply_error(form, error)
        else:
            db.session.commit()
            flash("Your password is changed. Your other devices are logged out.", "success")
            return redirect(url_for("accounts.overview"))
    return _render_settings(password_form=form)


# --- my data -----------------------------------------------------------------------------------


@bp.get("/export")
@login_required
def export() -> Response:
    data = service.export_data(db.session, current_user)
    data["membership"] = billing.export_data(db.session, current_user)
    return Response(
        json.dumps(data, indent=2, ensure_ascii=False),
        mimetype="application/json",
        headers={"Content-Disposition": 'attachment; filename="my-data.json"'},
    )


@bp.route("/delete", methods=["GET", "POST"])
@login_required
def delete() -> Any:
    form = forms.DeleteAccountForm()
    if form.validate_on_submit():
        try:
            service.delete_account(
                db.session,
                current_user,
                password=form.password.data,
                before=lambda member: billing.stop_billing(db.session, get_gateway(), member),
            )
        except service.AccountError as error:
            _apply_error(form, error)
        except GatewayError:
            db.session.rollback()
            form.form_errors.append(
                "We could not stop your membership payments just now, so nothing was deleted. "
                "Please try again in a few minutes."
            )
        else:
            db.session.commit()
            logout_user()
            session.clear()
            flash("Your account is deleted. Thank you for reading us.", "info")
            return redirect(url_for("site.home"))
    return _render_form("accounts/delete.html", form)
