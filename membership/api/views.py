"""The member API for the newsroom's main site: JSON, authenticated by an API key.

No cookies and no login: the ``Authorization: Bearer <key>`` header decides, so the routes are
exempt from CSRF. Answers are never cached (``Cache-Control: no-store``): they describe a reader.
"""

from __future__ import annotations

from flask import Blueprint, Response, current_app, g, jsonify, request
from flask_limiter.util import get_remote_address

from membership.accounts.rules import InvalidEmail
from membership.api import openapi, service
from membership.api.models import ApiKey
from membership.extensions import csrf, db, limiter

bp = Blueprint("api", __name__, url_prefix="/api/v1")
csrf.exempt(bp)


def _error(
    status: int, error: str, message: str, headers: dict[str, str] | None = None
) -> Response:
    response = jsonify(error=error, message=message)
    response.status_code = status
    response.headers.update(headers or {})
    return response


def current_key() -> ApiKey | None:
    """The request's valid API key, or None; looked up once per request."""
    if "api_key" not in g:
        auth = request.authorization
        token = auth.token if auth is not None and auth.type == "bearer" else None
        g.api_key = service.authenticate(db.session, token) if token else None
    return g.api_key


def _rate_limit_key() -> str:
    # Counted per key: the main site calls from a few servers, and one key must not starve
    # another. Requests without a valid key are counted per address instead.
    api_key = current_key()
    return f"api-key:{api_key.id}" if api_key is not None else f"api-ip:{get_remote_address()}"


def _rate_limit() -> str:
    return str(current_app.config["API_RATE_LIMIT"])


@bp.after_request
def never_cache(response: Response) -> Response:
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.get("/members/<path:email>")
@limiter.limit(_rate_limit, key_func=_rate_limit_key)
def member(email: str) -> Response:
    """A member's status and perks (see openapi.py for the contract)."""
    if current_key() is None:
        # RFC 6750: a bare challenge when no key was sent, "invalid_token" for a wrong one.
        challenge = 'Bearer realm="member-api"'
        if request.authorization is not None:
            challenge += ', error="invalid_token"'
        return _error(
            401,
            "Unauthorised",
            "This API needs a valid key: send Authorization: Bearer <key>.",
            {"WWW-Authenticate": challenge},
        )
    try:
        status = service.member_status(db.session, email)
    except InvalidEmail as exc:
        db.session.commit()  # the key's last_used_at, when it changed
        return _error(400, "Invalid email", str(exc))
    db.session.commit()
    if status is None:
        return _error(404, "Not found", "No member has this email address.")
    return jsonify(status.as_json())


@bp.get("/openapi.json")
def openapi_document() -> Response:
    """The OpenAPI 3 description of this API (public: it holds no data)."""
    return jsonify(openapi.document())
