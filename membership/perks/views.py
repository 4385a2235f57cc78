"""Routes of the perks area."""

from __future__ import annotations

from flask import Blueprint

from membership.perks import models  # noqa: F401 - the tables this area owns

bp = Blueprint("perks", __name__)
