"""Account forms. Field validators give the messages readers see next to each field."""

from __future__ import annotations

from typing import Any

from wtforms import BooleanField, EmailField, HiddenField, PasswordField, StringField
from wtforms.validators import DataRequired, InputRequired, Length, ValidationError

from membership.accounts import rules
from membership.forms import Form


class NormalisedEmail:
    """Validate an email address and replace the field's data by its normalised form."""

    def __call__(self, form: Form, field: Any) -> None:
        try:
            field.data = rules.normalise_email(field.data or "")
        except rules.InvalidEmail as exc:
            raise ValidationError(str(exc)) from exc


class DisplayName:
    def __call__(self, form: Form, field: Any) -> None:
        try:
            field.data = rules.clean_display_name(field.data or "")
        except ValueError as exc:
            raise ValidationError(str(exc)) from exc


class NewPassword:
    """Apply the password policy; ``email_field`` names a field the password must not equal."""

    def __init__(self, email_field: str | None = None) -> None:
        self.email_field = email_field

    def __call__(self, form: Form, field: Any) -> None:
        email = None
        if self.email_field is not None:
            email = form[self.email_field].data
        elif getattr(form, "account_email", None):
            email = form.account_email
        problem = rules.password_problem(field.data or "", email)
        if problem:
            raise ValidationError(problem)


def _email_field(label: str = "Email address") -> EmailField:
    return EmailField(
        label,
        validators=[InputRequired("Enter your email address."), NormalisedEmail()],
        render_kw={"autocomplete": "email", "maxlength": rules.EMAIL_MAX_LENGTH},
    )


def _current_password(label: str = "Current password") -> PasswordField:
    return PasswordField(
        label,
        validators=[
            InputRequired("Enter your current password."),
            Length(max=rules.PASSWORD_MAX_LENGTH, message="That password is too long."),
        ],
        render_kw={"autocomplete": "current-password"},
    )


def _new_password(label: str, email_field: str | None = None) -> PasswordField:
    return PasswordField(
        label,
        validators=[InputRequired("Choose a password."), NewPassword(email_field)],
        render_kw={"autocomplete": "new-password", "minlength": rules.PASSWORD_MIN_LENGTH},
        description=f"At least {rules.PASSWORD_MIN_LENGTH} characters. Long passphrases welcome.",
    )


def _display_name_field() -> StringField:
    return StringField(
        "Your name",
        validators=[DataRequired("Enter the name you want us to use."), DisplayName()],
        render_kw={"autocomplete": "name", "maxlength": rules.DISPLAY_NAME_MAX_LENGTH},
        description="Shown to you and, only if you choose so later, on the supporters wall.",
    )


class SignupForm(Form):
    display_name = _display_name_field()
    email = _email_field()
    password = _new_password("Password", email_field="email")
    next = HiddenField()


class LoginForm(Form):
    email = _email_field()
    password = _current_password("Password")
    next = HiddenField()


class ForgotPasswordForm(Form):
    email = _email_field()


class ResetPasswordForm(Form):
    password = _new_password("New password")

    def __init__(self, *args: Any, account_email: str | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.account_email = account_email


class DisplayNameForm(Form):
    display_name = _display_name_field()


class ChangeEmailForm(Form):
    email = _email_field("New email address")
    password = _current_password("Your password, to confirm the change")


class ChangePasswordForm(Form):
    current_password = _current_password()
    new_password = _new_password("New password")

    def __init__(self, *args: Any, account_email: str | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.account_email = account_email


class DeleteAccountForm(Form):
    password = _current_password()
    confirm = BooleanField(
        "I understand that this cannot be undone",
        validators=[DataRequired("Tick the box to confirm.")],
    )
