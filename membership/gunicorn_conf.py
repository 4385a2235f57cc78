"""Production settings for gunicorn:  gunicorn -c python:membership.gunicorn_conf wsgi:app

Every number can be changed from the environment without editing this file:

- ``WEB_CONCURRENCY``: worker processes (default: one per CPU core, plus one);
- ``GUNICORN_THREADS``: threads per worker (default 4; the ``gthread`` worker);
- ``GUNICORN_BIND``: address to listen on (default ``127.0.0.1:8000``, behind a reverse proxy);
- ``GUNICORN_TIMEOUT``: seconds a request may take before its worker is restarted (default 30);
- ``GUNICORN_MAX_REQUESTS``: restart a worker after this many requests (default 0: never);
- ``GUNICORN_ACCESS_LOG``: ``-`` for stdout or a file; off by default, because the member API
  carries a reader's email address in its path and logs must never hold one.

The figures behind the defaults are in docs/performance.md ("Pages under load").
"""

from __future__ import annotations

import os
from typing import Any


def _int(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    return int(raw) if raw else default


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))  # the cores this process may use, not the host's
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


bind = os.environ.get("GUNICORN_BIND", "127.0.0.1:8000")
# The pages are CPU-bound (SQLAlchemy and Jinja) and threads cover the waits on PostgreSQL:
# on 2 cores, 3 workers x 4 threads served as much as the usual 2 x cores + 1 (5 x 4), with
# less CPU per request and two fewer processes of ~100 MB (docs/performance.md).
workers = _int("WEB_CONCURRENCY", _cores() + 1)
# A few threads per worker overlap the waits on PostgreSQL (and on Stripe, on the card pages)
# and keep browsers' keep-alive connections, which the plain sync worker closes after each
# response. More threads buy nothing on CPU-bound pages, and past 5 (SQLAlchemy's pool size)
# they open and close extra database connections.
threads = _int("GUNICORN_THREADS", 4)
worker_class = "gthread" if threads > 1 else "sync"
# Each worker keeps at most this many keep-alive connections open at once.
worker_connections = 1000
keepalive = 5
timeout = _int("GUNICORN_TIMEOUT", 30)
graceful_timeout = 30
max_requests = _int("GUNICORN_MAX_REQUESTS", 0)
max_requests_jitter = max_requests // 10
# Load the app once in the master and fork: workers start faster and share its memory pages.
preload_app = True
# The heartbeat file lives in memory: a slow disk must not get a healthy worker killed.
_SHM = "/dev/shm"  # noqa: S108 - gunicorn makes its own private file in there
worker_tmp_dir = _SHM if os.path.isdir(_SHM) else None
accesslog = os.environ.get("GUNICORN_ACCESS_LOG") or None
errorlog = "-"
loglevel = os.environ.get("GUNICORN_LOG_LEVEL", "info")
# gunicorn 25+ opens a control socket at a fixed path per user; two instances would fight over
# it and nothing here uses it.
control_socket_disable = True


def post_fork(server: Any, worker: Any) -> None:
    """Give each worker its own database connections: none may be shared across a fork."""
    app = getattr(server.app, "callable", None)
    db = getattr(app, "extensions", {}).get("sqlalchemy")
    if db is None:  # not preloaded (the app loads in the worker), or an app without a database
        return
    with app.app_context():
        for engine in db.engines.values():
            # close=False: leave the parent's sockets alone, just forget them in this process.
            engine.dispose(close=False)
