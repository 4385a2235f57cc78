"""Routes of the voting area."""

from __future__ import annotations

from flask import Blueprint

from membership.voting import models  # noqa: F401 - the tables this area owns

bp = Blueprint("voting", __name__)
