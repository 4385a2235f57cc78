"""Static files: pages link them with a hash of their content in the URL, so browsers may keep
them for a year without asking again, and a changed file gets a new URL."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from membership.extensions import db
from tests.support.queries import count_queries

YEAR = 365 * 24 * 3600
CSS_LINK = re.compile(r'<link rel="stylesheet" href="(/static/css/site\.css\?v=([0-9a-f]+))">')


def css_url(page: str) -> tuple[str, str]:
    match = CSS_LINK.search(page)
    assert match, "no fingerprinted stylesheet link on the page"
    return match.group(1), match.group(2)


def max_age(response: Any) -> int:
    return response.cache_control.max_age or 0


def test_pages_link_the_stylesheet_with_a_hash_of_its_content(client, app):
    url, version = css_url(client.get("/").get_data(as_text=True))

    content = (Path(app.static_folder) / "css" / "site.css").read_bytes()
    assert version == hashlib.sha256(content).hexdigest()[:12]
    with client.get(url) as response:
        assert response.data == content


def test_a_fingerprinted_file_is_cached_for_a_year_and_never_revalidated(client):
    url, _ = css_url(client.get("/").get_data(as_text=True))

    with client.get(url) as response:
        assert response.status_code == 200
        assert response.mimetype == "text/css"
        assert response.cache_control.public
        assert max_age(response) >= YEAR
        assert response.cache_control.immutable


def test_a_logged_in_reader_gets_the_same_cacheable_file_without_a_database_query(
    app, client, make_member, login
):
    """Pages of a logged-in member are never stored; the site's stylesheet is no such page."""
    login(make_member())
    url, _ = css_url(client.get("/").get_data(as_text=True))
    with app.app_context():
        engine = db.engine

    with count_queries(engine) as queries, client.get(url) as response:
        assert response.status_code == 200
        assert "no-store" not in response.headers["Cache-Control"]
        assert max_age(response) >= YEAR and response.cache_control.immutable
    assert len(queries) == 0, queries.report()


@pytest.mark.parametrize("query", ["", "?v=000000000000"])
def test_a_url_without_the_current_hash_is_not_marked_immutable(client, query):
    """An unversioned or outdated link may point at content that changes under it."""
    with client.get(f"/static/css/site.css{query}") as response:
        assert response.status_code == 200
        assert not response.cache_control.immutable


def test_a_changed_file_gets_a_new_url(
    app: Flask, client: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "css").mkdir()
    stylesheet = tmp_path / "css" / "site.css"
    stylesheet.write_text("body { color: black; }\n")
    monkeypatch.setattr(app, "static_folder", str(tmp_path))
    before, _ = css_url(client.get("/").get_data(as_text=True))

    stylesheet.write_text("body { color: navy; background: white; }\n")
    after, version = css_url(client.get("/").get_data(as_text=True))

    assert after != before
    assert version == hashlib.sha256(stylesheet.read_bytes()).hexdigest()[:12]
    with client.get(after) as response:
        assert b"navy" in response.data and response.cache_control.immutable
    with client.get(before) as response:
        assert not response.cache_control.immutable
