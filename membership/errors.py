"""Error pages in the site's layout (or JSON for API clients), never a stack trace."""

from __future__ import annotations

import logging

from flask import Flask, jsonify, render_template, request
from flask.typing import ResponseReturnValue
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException, InternalServerError

log = logging.getLogger(__name__)

MESSAGES = {
    400: (
        "Something in that request was not right",
        "Please go back, check what you entered and try again.",
    ),
    403: ("This page is not for you", "Your account does not give access to this page."),
    404: ("Page not found", "The page you asked for is not here. It may have moved."),
    405: ("Not allowed", "That page cannot be used this way."),
    413: ("That was too much", "What you sent is larger than we accept. Please send less."),
    429: ("Slow down, please", "Too many attempts in a short time. Wait a minute and try again."),
    500: ("Something went wrong on our side", "We have been told. Please try again in a moment."),
    503: ("We are briefly unavailable", "Please try again in a moment."),
}


def wants_json() -> bool:
    if request.path.startswith(("/api/", "/webhooks/")) or request.path == "/healthz":
        return True
    best = request.accept_mimetypes.best_match(["text/html", "application/json"])
    return (
        best == "application/json"
        and request.accept_mimetypes[best] > request.accept_mimetypes["text/html"]
    )


def render_error(status: int, detail: str | None = None) -> ResponseReturnValue:
    title, message = MESSAGES.get(status, MESSAGES[500] if status >= 500 else MESSAGES[400])
    if wants_json():
        return jsonify(error=title, message=detail or message), status
    return render_template(
        "errors/error.html", status=status, title=title, message=detail or message
    ), status


def init_app(app: Flask) -> None:
    @app.errorhandler(CSRFError)
    def csrf_error(error: CSRFError) -> ResponseReturnValue:
        return render_error(
            400,
            "This form has expired or was sent from somewhere else. Reload the page and try again.",
        )

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException) -> ResponseReturnValue:
        if error.code is None or error.code < 400:
            return error
        response = render_error(error.code)
        if error.code == 405 and hasattr(error, "valid_methods") and error.valid_methods:
            body, status = response  # type: ignore[misc]
            return body, status, {"Allow": ", ".join(error.valid_methods)}
        return response

    @app.errorhandler(Exception)
    def unexpected_error(error: Exception) -> ResponseReturnValue:
        if isinstance(error, HTTPException):
            return http_error(error)
        # The route's pattern, not the path: paths hold tokens and emails (/api/v1/members/...).
        route = request.url_rule.rule if request.url_rule is not None else "(no route)"
        log.exception("unhandled error on %s %s", request.method, route)
        from membership.extensions import db

        db.session.rollback()
        return render_error(InternalServerError.code)
