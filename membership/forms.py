"""The base class for every HTML form in the app."""

from __future__ import annotations

from typing import Any

from flask import request
from flask_wtf import FlaskForm
from flask_wtf.form import _Auto  # Flask-WTF's marker for "read the current request"


class Form(FlaskForm):
    """A FlaskForm that reads only the urlencoded or multipart *text* fields of a request.

    Flask-WTF would also feed uploaded files and JSON bodies into the fields, so a text field
    could receive a file object or a number. Our forms take text; anything else is simply
    missing, and the form answers with its usual messages.
    """

    class Meta(FlaskForm.Meta):
        def wrap_formdata(self, form: Any, formdata: Any) -> Any:
            if formdata is _Auto:
                return request.form if form.is_submitted() else None
            return formdata


class ButtonForm(Form):
    """A form that is only a button and its CSRF token (log out, resume, undo, resend)."""


def show_error(form: FlaskForm, message: str, field: str | None = None) -> None:
    """Put a service's refusal next to the field it concerns, or at the top of the form."""
    target = form._fields.get(field or "")
    if target is not None:
        target.errors = [*target.errors, message]
    else:
        form.form_errors.append(message)
