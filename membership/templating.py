"""What every template can use: the newsroom's name and fingerprinted static URLs."""

from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path
from typing import Any

from flask import Flask, Response, current_app, request, url_for


@lru_cache(maxsize=256)
def _hash_of(path: Path, mtime_ns: int, size: int) -> str:
    # Keyed on the file's modification time and size too: an edited file is hashed again
    # (and gets a new URL) without a restart, an unchanged one is read once.
    return hashlib.sha256(path.read_bytes()).hexdigest()[:12]


def _fingerprint(static_folder: str, filename: str) -> str:
    path = Path(static_folder) / filename
    try:
        stat = path.stat()
        return _hash_of(path, stat.st_mtime_ns, stat.st_size)
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

    @app.after_request
    def fingerprinted_files_never_change(response: Response) -> Response:
        """A static URL carrying the hash of the file it serves names that content for good:
        browsers need not even revalidate it (SEND_FILE_MAX_AGE_DEFAULT gives the year).
        Without the hash, or with an outdated one, the URL may serve other content later."""
        if request.endpoint == "static" and response.status_code in (200, 304):
            filename = (request.view_args or {}).get("filename", "")
            version = request.args.get("v")
            if version and version == _fingerprint(app.static_folder or "", filename):
                response.cache_control.immutable = True
        return response
