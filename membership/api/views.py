"""Routes of the api area."""

from __future__ import annotations

from flask import Blueprint

from membership.api import models  # noqa: F401 - the tables this area owns

bp = Blueprint("api", __name__)
