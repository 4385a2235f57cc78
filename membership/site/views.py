"""Public pages: the home page and the health check (voting lives in membership/voting)."""

from __future__ import annotations

from flask import Blueprint, jsonify, render_template
from flask.typing import ResponseReturnValue
from sqlalchemy.exc import SQLAlchemyError

from membership.extensions import db

bp = Blueprint("site", __name__)


@bp.get("/")
def home() -> str:
    return render_template("site/home.html")


@bp.get("/healthz")
def healthz() -> ResponseReturnValue:
    """For load balancers and uptime checks: is the app up, and can it reach its database?"""
    # Straight to the session's connection: the ORM's statement handling has nothing to add to
    # SELECT 1, and this is asked every few seconds by every balancer.
    try:
        db.session.connection().exec_driver_sql("SELECT 1")
    except SQLAlchemyError:
        db.session.rollback()
        return jsonify(status="unavailable", database="unreachable"), 503
    return jsonify(status="ok", database="ok"), 200
