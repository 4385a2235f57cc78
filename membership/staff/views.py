"""The staff area. Every route here is checked on the server: staff and admins only."""

from __future__ import annotations

from flask import Blueprint, Response, render_template

from membership.accounts.access import staff_required

bp = Blueprint("staff", __name__, url_prefix="/staff")


@bp.after_request
def never_cache(response: Response) -> Response:
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.get("/")
@staff_required
def dashboard() -> str:
    return render_template("staff/dashboard.html")
