"""A background queue (RQ on Redis) for work that should not hold up a request.

Stripe webhooks and transactional email go through it when ``REDIS_URL`` is set: the request
stores what must be done, queues a job that names the stored row, and answers at once; a worker
does the rest, with retries and backoff. Without ``REDIS_URL`` nothing is queued and
:func:`enqueue` says so, and callers do the work in the request, as they always did.

Jobs name their function by import path and take plain arguments (row ids), so a job never
carries a model object or a secret. Each job runs in its own app context (:func:`job`), on the
worker's app, which is built once per worker process.

Workers::

    flask --app wsgi worker            # or --burst: stop once the queue is empty
    rq worker --url "$REDIS_URL" --worker-class membership.queue.Worker --with-scheduler membership

``--with-scheduler`` matters with plain ``rq worker``: retries wait in RQ's scheduled registry,
and only a worker with the scheduler puts them back on the queue when they are due.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Callable, Mapping
from typing import Any, ParamSpec, TypeVar

import redis
from flask import Flask, current_app, has_app_context
from rq import Queue, Retry, SimpleWorker
from rq.exceptions import DuplicateJobError, InvalidJobOperation, NoSuchJobError
from rq.job import Job, JobStatus

log = logging.getLogger(__name__)

DEFAULT_QUEUE = "membership"
# Seconds between attempts: five retries over about 45 minutes. After that the stored row says
# what failed, and ``billing replay-failed`` (or ``emails deliver``) picks it up from cron.
DEFAULT_RETRY_INTERVALS = (10, 30, 120, 600, 1800)
JOB_TIMEOUT = 120  # seconds; one webhook is one or two Stripe calls and a transaction
FAILED_JOB_TTL = 7 * 24 * 3600  # keep failed jobs a week, for `rq info` and the logs
# A job that will still run: a new request for the same work needs no new job.
_PENDING = {JobStatus.QUEUED, JobStatus.STARTED, JobStatus.SCHEDULED, JobStatus.DEFERRED}
_NAME = re.compile(r"[A-Za-z0-9_-]+")

Config = Mapping[str, Any]
P = ParamSpec("P")
R = TypeVar("R")


class QueueUnavailable(Exception):
    """Redis could not be reached: the work was not queued (and must not be acknowledged)."""


def enabled(config: Config) -> bool:
    """True when work goes through the queue (``REDIS_URL`` is set)."""
    return bool(config.get("REDIS_URL"))


def queue_name(config: Config) -> str:
    name = str(config.get("QUEUE_NAME") or DEFAULT_QUEUE)
    if not _NAME.fullmatch(name):
        raise ValueError(f"QUEUE_NAME may hold letters, digits, - and _ only, got {name!r}")
    return name


_connections: dict[str, redis.Redis] = {}


def connection(url: str) -> redis.Redis:
    """One Redis client (with its connection pool) per URL and process."""
    client = _connections.get(url)
    if client is None:
        # Short timeouts: a webhook waiting on a dead Redis should answer 503 soon, and
        # Stripe retries it, rather than hang until Stripe gives up on the delivery.
        client = redis.Redis.from_url(
            url, socket_connect_timeout=2, socket_timeout=5, health_check_interval=30
        )
        _connections[url] = client
    return client


_queues: dict[tuple[str, str], Queue] = {}


def get_queue(config: Config) -> Queue:
    """The app's queue; one object per process, which remembers the server's version (RQ asks
    for it once per object, and that would be one more round trip per enqueue)."""
    key = (config["REDIS_URL"], queue_name(config))
    found = _queues.get(key)
    if found is None:
        found = _queues[key] = Queue(key[1], connection=connection(key[0]))
    return found


def retry_policy(config: Config) -> Retry:
    intervals = [int(s) for s in config.get("QUEUE_RETRY_INTERVALS") or DEFAULT_RETRY_INTERVALS]
    return Retry(max=len(intervals), interval=intervals)


def full_job_id(config: Config, job_id: str) -> str:
    """Job ids carry the queue's name, so two apps sharing one Redis never collide."""
    return f"{queue_name(config)}-{job_id}"


def enqueue(config: Config, func_path: str, *args: Any, job_id: str | None = None) -> bool:
    """Queue ``func_path(*args)``; False when there is no queue (the caller does the work now).

    With ``job_id``, the work is queued once: while a job of that id is waiting, running or
    waiting for a retry, asking again changes nothing. A finished or failed job of that id is
    replaced, since the caller asks again only because the work is still not done.

    Raises :class:`QueueUnavailable` if Redis cannot be reached.
    """
    if not enabled(config):
        return False
    queue = get_queue(config)
    options: dict[str, Any] = {
        "retry": retry_policy(config),
        "timeout": JOB_TIMEOUT,
        "result_ttl": 0,  # nothing reads results; the job's effect is in the database
        "failure_ttl": FAILED_JOB_TTL,
    }
    try:
        if job_id is None:
            queue.enqueue_call(func_path, args=args, **options)
        else:
            _enqueue_once(queue, func_path, args, full_job_id(config, job_id), options)
    except redis.exceptions.RedisError as exc:
        # The type only: messages of some Redis errors can hold the server's address.
        log.warning("queue unavailable for %s: %s", func_path, type(exc).__name__)
        raise QueueUnavailable(type(exc).__name__) from exc
    return True


def _enqueue_once(
    queue: Queue, func_path: str, args: tuple[Any, ...], job_id: str, options: dict[str, Any]
) -> None:
    for _ in range(3):
        try:
            queue.enqueue_call(func_path, args=args, job_id=job_id, unique=True, **options)
            return
        except DuplicateJobError:
            pass
        try:
            existing = Job.fetch(job_id, connection=queue.connection)
            status = existing.get_status()
        except (NoSuchJobError, InvalidJobOperation):
            continue  # it finished (and was removed) between the calls: queue it again
        if status in _PENDING:
            return
        existing.delete()
    # Three rounds of other processes replacing the same job: one of theirs will run it.
    log.info("job %s was queued by another process", job_id)


# --- running jobs ------------------------------------------------------------------------------

_app: Flask | None = None


def worker_app() -> Flask:
    """The app jobs run on: the current one (``flask worker``, tests), else one built from the
    environment, once per process (``rq worker``)."""
    global _app
    if has_app_context():
        return current_app._get_current_object()  # type: ignore[attr-defined]
    if _app is None:
        from membership import create_app

        _app = create_app()
    return _app


def job(func: Callable[P, R]) -> Callable[P, R]:
    """Make ``func`` a job: it runs in a fresh app context (its own database session), and the
    email it commits is sent afterwards through the queue, as after a request."""

    @functools.wraps(func)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        from membership import emails

        with worker_app().app_context():
            result = func(*args, **kwargs)
            emails.send_committed_mail()
            return result

    return run


class Worker(SimpleWorker):
    """RQ's worker that runs jobs in its own process (no fork per job), on an app built once.

    Forking per job would give every job a new database connection and a new HTTP connection
    to Stripe; these jobs are short, so that overhead would be most of their cost. Each job
    still gets its own app context, hence its own database session.
    """

    def __init__(self, *args: Any, app: Flask | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Built now, not at the first job: a broken setting stops the worker at once.
        self.app = app or worker_app()

    def work(self, *args: Any, **kwargs: Any) -> bool:
        with self.app.app_context():  # jobs find the app through it (see worker_app)
            return super().work(*args, **kwargs)


def make_worker(app: Flask) -> Worker:
    """A worker on the app's queue."""
    return Worker([get_queue(app.config)], connection=connection(app.config["REDIS_URL"]), app=app)
