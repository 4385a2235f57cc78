"""What every template can use: the newsroom's name and fingerprinted static URLs."""

from __future__ import annotations

import hashlib
from functools import cache
from pathlib import Path
from typing import Any

from flask import Flask, current_app, url_for


@cache
def _fingerprint(static_folder: str, filename: str) -> str:
    path = Path(static_folder) / filename
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()[:12]
    except OSError:
        return "missing"


def asset_url(filename: str) -> str:
    """URL of a static file with a content hash, so browsers may cache it for a long time."""
    version = _fingerprint(current_app.static_folder or "", filename)
    return url_for("static", filename=filename, v=version)


def init_app(app: Flask) -> None:
    app.jinja_env.add_extension("jinja2.ext.do")
    app.jinja_env.globals["asset_url"] = asset_url

    @app.context_processor
    def newsroom() -> dict[str, Any]:
        return {"newsroom_name": app.config["NEWSROOM_NAME"]}
