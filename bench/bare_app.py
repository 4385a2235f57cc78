"""The ceiling for bench/pages.py: a bare Flask app with one trivial route.

Served by gunicorn with the app's own production settings
(``gunicorn -c python:membership.gunicorn_conf --pythonpath bench bare_app:app``), it shows how
many requests per second this machine, gunicorn and Flask manage before the app does any work.
"""

from __future__ import annotations

from flask import Flask

app = Flask(__name__)


@app.get("/")
def hello() -> str:
    return "Hello, reader."
