"""The background queue (RQ on a real Redis): email leaves the request, a worker sends it.

Redis is the one at ``REDIS_TEST_URL`` (default: database 15 of the local server). Each test gets
a queue of its own name, and only that queue's keys are deleted after it, so a test run never
touches anything else in that Redis. Workers run in the test's process (burst mode: they stop
once the queue is empty), on the test's rolled-back database connection; one test runs
``rq worker`` as a separate process on a database where commits are real.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import flask_migrate
import pytest
import redis
from aiosmtpd.controller import Controller
from flask import Flask
from rq import Queue
from sqlalchemy import select

from membership import create_app, queue
from membership.emails import EmailStatus, OutboundEmail
from membership.extensions import db
from tests.conftest import (
    PASSWORD,
    CsrfClient,
    Mailbox,
    free_port,
    settings_for_tests,
    skip_or_fail,
)

REDIS_TEST_URL = os.environ.get("REDIS_TEST_URL", "redis://127.0.0.1:6379/15")


@dataclass
class RedisQueue:
    """The app's queue on the test Redis, switched on (or pointed at a dead port) per test."""

    app: Flask
    url: str
    name: str
    monkeypatch: pytest.MonkeyPatch

    def on(self) -> None:
        self.monkeypatch.setitem(self.app.config, "REDIS_URL", self.url)
        self.monkeypatch.setitem(self.app.config, "QUEUE_NAME", self.name)
        # One-second backoff, so that a test can wait for a retry to come due.
        self.monkeypatch.setitem(self.app.config, "QUEUE_RETRY_INTERVALS", [1, 1])

    def down(self) -> None:
        """Redis out of reach: nothing listens on that port."""
        self.on()
        self.monkeypatch.setitem(self.app.config, "REDIS_URL", f"redis://127.0.0.1:{free_port()}/0")

    @property
    def rq(self) -> Queue:
        return Queue(self.name, connection=redis.Redis.from_url(self.url))

    def jobs(self) -> list[str]:
        """Ids of the jobs waiting on the queue."""
        return self.rq.get_job_ids()

    def scheduled(self) -> list[str]:
        """Ids of the jobs waiting for a retry."""
        return self.rq.scheduled_job_registry.get_job_ids()

    def work(self) -> None:
        """A worker in this process until the queue is empty (retries that are due first)."""
        # RQ installs its own Ctrl-C handlers and leaves them; give pytest its own back.
        handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            queue.make_worker(self.app).work(burst=True, with_scheduler=True)
        finally:
            for sig, handler in handlers.items():
                signal.signal(sig, handler)

    def wait_for_retries(self) -> None:
        """Sleep until every scheduled retry is due."""
        registry = self.rq.scheduled_job_registry
        for job_id in registry.get_job_ids():
            due = registry.get_scheduled_time(job_id).timestamp()
            time.sleep(max(0.0, due - time.time()) + 0.05)


def _delete_keys(url: str, name: str) -> None:
    store = redis.Redis.from_url(url)
    for key in store.scan_iter(f"*{name}*"):
        store.delete(key)


@contextlib.contextmanager
def queue_on_test_redis(app: Flask, monkeypatch: pytest.MonkeyPatch) -> Iterator[RedisQueue]:
    """A queue of its own name on the test Redis (its keys deleted after), still switched off."""
    try:
        redis.Redis.from_url(REDIS_TEST_URL, socket_connect_timeout=1).ping()
    except redis.exceptions.ConnectionError:
        skip_or_fail(f"Redis is not reachable at {REDIS_TEST_URL} (set REDIS_TEST_URL)")
    name = f"test-{uuid.uuid4().hex[:12]}"
    try:
        yield RedisQueue(app=app, url=REDIS_TEST_URL, name=name, monkeypatch=monkeypatch)
    finally:
        _delete_keys(REDIS_TEST_URL, name)


@pytest.fixture
def redis_queue(app: Flask, monkeypatch: pytest.MonkeyPatch) -> Iterator[RedisQueue]:
    with queue_on_test_redis(app, monkeypatch) as redis_queue:
        yield redis_queue


def _sign_up(client: Any, email: str) -> None:
    response = client.submit(
        "/account/signup",
        {"email": email, "password": PASSWORD, "display_name": "Queue Reader"},
        token_page="/account/signup",
    )
    assert response.status_code == 302, response.get_data(as_text=True)


def _outbox(session: Any, email: str) -> list[OutboundEmail]:
    session.expire_all()
    return list(session.scalars(select(OutboundEmail).where(OutboundEmail.to_address == email)))


# --- enqueueing ---------------------------------------------------------------------------------


def test_without_redis_url_nothing_is_queued_and_the_caller_does_the_work(app):
    assert queue.enabled(app.config) is False
    assert queue.enqueue(app.config, "membership.emails.deliver_queued", [1]) is False


def test_the_same_job_id_is_queued_once(app, redis_queue):
    redis_queue.on()
    for _ in range(3):
        assert queue.enqueue(app.config, "membership.emails.deliver_queued", [1], job_id="x-1")
    assert redis_queue.jobs() == [f"{redis_queue.name}-x-1"]


def test_with_redis_down_enqueue_says_so_instead_of_pretending(app, redis_queue):
    redis_queue.down()
    with pytest.raises(queue.QueueUnavailable):
        queue.enqueue(app.config, "membership.emails.deliver_queued", [1], job_id="x-2")


# --- email through the queue --------------------------------------------------------------------


def test_with_a_queue_the_request_leaves_mail_to_the_worker(
    client, mailbox, redis_queue, db_session
):
    redis_queue.on()
    _sign_up(client, "queued@example.org")
    assert mailbox.to("queued@example.org") == [], "not sent inside the request"
    [message] = _outbox(db_session, "queued@example.org")
    assert message.status is EmailStatus.PENDING
    assert redis_queue.jobs() == [f"{redis_queue.name}-email-{message.id}"]

    redis_queue.work()

    assert "/account/confirm/" in mailbox.text(mailbox.last_to("queued@example.org"))
    assert [m.status for m in _outbox(db_session, "queued@example.org")] == [EmailStatus.SENT]
    assert redis_queue.jobs() == []


def test_with_redis_down_the_request_sends_the_mail_itself(
    client, mailbox, redis_queue, db_session
):
    redis_queue.down()
    _sign_up(client, "fallback@example.org")
    assert len(mailbox.to("fallback@example.org")) == 1
    assert [m.status for m in _outbox(db_session, "fallback@example.org")] == [EmailStatus.SENT]


def test_a_send_that_fails_is_retried_by_the_queue_after_a_pause(
    app, client, mailbox, redis_queue, db_session, monkeypatch
):
    redis_queue.on()
    _sign_up(client, "retry@example.org")
    smtp_port = app.config["SMTP_PORT"]
    monkeypatch.setitem(app.config, "SMTP_PORT", free_port())  # the SMTP server is down

    redis_queue.work()

    [message] = _outbox(db_session, "retry@example.org")
    assert (message.status, message.attempts) == (EmailStatus.PENDING, 1)
    assert redis_queue.scheduled() == [f"{redis_queue.name}-email-{message.id}"]
    assert mailbox.to("retry@example.org") == []

    monkeypatch.setitem(app.config, "SMTP_PORT", smtp_port)
    redis_queue.wait_for_retries()
    redis_queue.work()

    assert len(mailbox.to("retry@example.org")) == 1
    [message] = _outbox(db_session, "retry@example.org")
    assert (message.status, message.attempts) == (EmailStatus.SENT, 2)
    assert redis_queue.jobs() == redis_queue.scheduled() == []


def test_a_message_already_sent_is_not_sent_again_by_a_late_job(
    app, client, mailbox, redis_queue, db_session, deliver
):
    redis_queue.on()
    _sign_up(client, "once@example.org")
    deliver()  # `emails deliver` from cron got there first
    redis_queue.work()
    assert len(mailbox.to("once@example.org")) == 1


# --- the worker commands ------------------------------------------------------------------------


def test_the_worker_command_needs_redis_url(runner):
    result = runner.invoke(args=["worker", "--burst"])
    assert result.exit_code == 1
    assert "REDIS_URL is not set" in result.output


def test_the_worker_command_works_off_the_queue(client, runner, mailbox, redis_queue):
    redis_queue.on()
    _sign_up(client, "command@example.org")
    result = runner.invoke(args=["worker", "--burst"])
    assert result.exit_code == 0, result.output
    assert len(mailbox.to("command@example.org")) == 1
    assert redis_queue.jobs() == []


def test_rq_worker_with_the_app_worker_class_sends_mail_from_another_process(
    fresh_database: str, smtp_server: tuple[Controller, Mailbox], mailbox, redis_queue
):
    """Separate processes see only committed data: the app here commits for real."""
    settings = {
        **settings_for_tests(fresh_database, smtp_server[0].port),
        "REDIS_URL": redis_queue.url,
        "QUEUE_NAME": redis_queue.name,
    }
    app = create_app(settings)
    app.test_client_class = CsrfClient
    try:
        with app.app_context():
            flask_migrate.upgrade()
        _sign_up(app.test_client(), "separate@example.org")
        assert mailbox.to("separate@example.org") == []
        env = {
            **os.environ,
            "DATABASE_URL": fresh_database,
            "SMTP_HOST": "127.0.0.1",
            "SMTP_PORT": str(smtp_server[0].port),
            "SMTP_STARTTLS": "false",
            "REDIS_URL": redis_queue.url,
            "MEMBERSHIP_ENV": "development",
        }
        rq = [sys.executable, "-m", "rq.cli", "worker", "--burst", "--with-scheduler"]
        done = subprocess.run(
            [*rq, "--url", redis_queue.url, "-w", "membership.queue.Worker", redis_queue.name],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr[-2000:]
        assert len(mailbox.to("separate@example.org")) == 1
        with app.app_context():
            statuses = db.session.scalars(select(OutboundEmail.status)).all()
        assert statuses == [EmailStatus.SENT]
    finally:
        with app.app_context():
            db.engine.dispose()
