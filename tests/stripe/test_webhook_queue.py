"""Stripe webhooks through the queue (``REDIS_URL`` set): answered at once, applied by a worker.

The endpoint stores the verified event, queues its processing and answers 202; a worker (run
here in the test's process, in burst mode) applies Stripe's current state. What must hold: a
repeated delivery is queued and applied once, an event the endpoint could not queue is answered
with a 503 (Stripe delivers it again) and stays stored for ``billing replay-failed``, and a 429
from Stripe is tried again later by the queue instead of being lost.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import select

from membership.billing.gateway import GatewaySettings, StripeGateway
from membership.billing.models import EventStatus, WebhookEvent
from membership.billing.rules import SubscriptionStatus
from tests.conftest import WEBHOOK_SECRET, LocalStripe
from tests.integration.test_queue import RedisQueue, queue_on_test_redis
from tests.stripe.conftest import (
    SECRET_KEY,
    Patron,
    StripeApi,
    fail_a_renewal,
    is_patron,
    subscription_of,
)
from tests.support.stripe_events import signed, stripe_event

Json = dict[str, Any]


# --- Stripe's side ------------------------------------------------------------------------------


def subscription_deleted(patron: Patron) -> Json:
    obj = {"id": patron.subscription_id, "object": "subscription", "customer": patron.customer_id}
    return stripe_event("customer.subscription.deleted", obj)


def deliver(client: Any, event: Json) -> Any:
    body, headers = signed(event)
    return client.post("/webhooks/stripe", data=body, headers=headers)


class RateLimitedStripe:
    """Stripe in front of localstripe that answers the first ``limited`` requests with a 429,
    as Stripe does when an account sends too many requests at once."""

    def __init__(self, upstream: str, limited: int = 1) -> None:
        self.requests: list[int] = []  # the status answered to each request
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def _forward(self) -> None:
                if len(proxy.requests) < limited:
                    proxy.requests.append(429)
                    error = {"type": "rate_limit_error", "message": "Too many requests."}
                    self._answer(429, json.dumps({"error": error}).encode())
                    return
                length = int(self.headers.get("Content-Length") or 0)
                names = ("Authorization", "Stripe-Version", "Content-Type", "Idempotency-Key")
                request = urllib.request.Request(
                    upstream + self.path,
                    data=self.rfile.read(length) if length else None,
                    method=self.command,
                    headers={n: self.headers[n] for n in names if self.headers.get(n)},
                )
                try:
                    with urllib.request.urlopen(request, timeout=10) as response:
                        status, body = response.status, response.read()
                except urllib.error.HTTPError as error:
                    status, body = error.code, error.read()
                proxy.requests.append(status)
                self._answer(status, body)

            def _answer(self, status: int, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_DELETE = _forward

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)

    def gateway(self, app: Flask) -> StripeGateway:
        """A gateway like the app's, through this front, without the SDK's own retries."""
        return StripeGateway(
            GatewaySettings(
                secret_key=SECRET_KEY,
                api_version=app.config["STRIPE_API_VERSION"],
                api_base=self.url,
                webhook_secret=WEBHOOK_SECRET,
                max_network_retries=0,
            )
        )


@pytest.fixture
def rate_limited(localstripe: LocalStripe) -> Iterator[RateLimitedStripe]:
    proxy = RateLimitedStripe(localstripe.base_url)
    yield proxy
    proxy.close()


# --- our side -----------------------------------------------------------------------------------


@pytest.fixture
def redis_queue(app: Flask, monkeypatch: pytest.MonkeyPatch) -> Iterator[RedisQueue]:
    with queue_on_test_redis(app, monkeypatch) as redis_queue:
        yield redis_queue


def stored(session: Any, event: Json) -> WebhookEvent:
    session.expire_all()
    row = session.scalar(select(WebhookEvent).where(WebhookEvent.stripe_event_id == event["id"]))
    assert row is not None, "the event was not stored"
    return row


def job_of(redis_queue: RedisQueue, row: WebhookEvent) -> str:
    return f"{redis_queue.name}-webhook-{row.id}"


def test_a_queued_event_is_answered_at_once_and_applied_by_the_worker(
    app, client, patron, stripe_api: StripeApi, redis_queue, db_session
):
    stripe_api.v1.subscriptions.cancel(patron.subscription_id)  # in Stripe, behind our back
    redis_queue.on()
    event = subscription_deleted(patron)

    response = deliver(client, event)

    assert response.status_code == 202
    assert response.get_json() == {"received": True, "result": "queued"}
    row = stored(db_session, event)
    assert row.status is EventStatus.RECEIVED, "answered before it was processed"
    assert is_patron(app, patron.member)
    assert redis_queue.jobs() == [job_of(redis_queue, row)]

    redis_queue.work()

    row = stored(db_session, event)
    assert (row.status, row.attempts) == (EventStatus.PROCESSED, 1)
    assert subscription_of(db_session, patron.member).status is SubscriptionStatus.CANCELED
    assert not is_patron(app, patron.member)
    assert redis_queue.jobs() == redis_queue.scheduled() == []


def test_a_repeated_delivery_is_queued_and_applied_once(
    app, client, patron, stripe_api: StripeApi, redis_queue, db_session
):
    stripe_api.v1.subscriptions.cancel(patron.subscription_id)
    redis_queue.on()
    event = subscription_deleted(patron)

    first, again = deliver(client, event), deliver(client, event)

    assert (first.status_code, again.status_code) == (202, 202), "not done yet: both queued"
    row = stored(db_session, event)
    assert redis_queue.jobs() == [job_of(redis_queue, row)], "one job for the two deliveries"

    redis_queue.work()

    assert (stored(db_session, event).attempts, redis_queue.jobs()) == (1, [])
    late = deliver(client, event)
    assert (late.status_code, late.get_json()["result"]) == (200, "duplicate")
    assert redis_queue.jobs() == [], "a processed event is not queued again"
    assert db_session.scalar(select(WebhookEvent.attempts).where(WebhookEvent.id == row.id)) == 1
    assert not is_patron(app, patron.member)


def test_with_redis_down_the_event_is_refused_with_503_and_kept_for_replay(
    app, client, patron, stripe_api: StripeApi, redis_queue, db_session, runner
):
    stripe_api.v1.subscriptions.cancel(patron.subscription_id)
    redis_queue.down()
    event = subscription_deleted(patron)

    response = deliver(client, event)

    assert response.status_code == 503, "a non-2xx answer makes Stripe deliver it again"
    assert response.get_json()["received"] is False
    assert stored(db_session, event).status is EventStatus.RECEIVED
    assert is_patron(app, patron.member)

    result = runner.invoke(args=["billing", "replay-failed", "--stale-minutes", "0"])

    assert result.exit_code == 0, result.output
    assert "1 processed" in result.output
    assert stored(db_session, event).status is EventStatus.PROCESSED
    assert not is_patron(app, patron.member)


def test_an_event_refused_while_redis_was_down_is_queued_when_stripe_delivers_it_again(
    app, client, patron, stripe_api: StripeApi, redis_queue, db_session
):
    stripe_api.v1.subscriptions.cancel(patron.subscription_id)
    event = subscription_deleted(patron)
    redis_queue.down()
    assert deliver(client, event).status_code == 503

    redis_queue.on()
    assert deliver(client, event).status_code == 202
    redis_queue.work()

    row = stored(db_session, event)
    assert (row.status, row.attempts) == (EventStatus.PROCESSED, 1)
    assert not is_patron(app, patron.member)


def test_a_429_from_stripe_is_retried_by_the_queue_after_a_pause(
    app, client, patron, stripe_api: StripeApi, redis_queue, rate_limited, db_session, monkeypatch
):
    stripe_api.v1.subscriptions.cancel(patron.subscription_id)
    monkeypatch.setitem(app.extensions, "stripe_gateway", rate_limited.gateway(app))
    redis_queue.on()
    event = subscription_deleted(patron)
    assert deliver(client, event).status_code == 202

    before = time.time()
    redis_queue.work()
    after = time.time()

    assert rate_limited.requests == [429]
    row = stored(db_session, event)
    assert row.status is EventStatus.FAILED, "replay-failed would find it if every retry failed"
    assert "GatewayUnavailable" in (row.error or "")
    assert redis_queue.scheduled() == [job_of(redis_queue, row)], "waiting for its retry"
    due = redis_queue.rq.scheduled_job_registry.get_scheduled_time(job_of(redis_queue, row))
    # RQ keeps whole seconds: due at the failure's time plus the configured pause (1 s here).
    assert int(before) + 1 <= due.timestamp() <= after + 1, "not at once: after a pause"
    assert is_patron(app, patron.member)

    redis_queue.wait_for_retries()
    redis_queue.work()

    assert rate_limited.requests[0] == 429 and set(rate_limited.requests[1:]) == {200}
    row = stored(db_session, event)
    assert (row.status, row.error) == (EventStatus.PROCESSED, None)
    assert not is_patron(app, patron.member)
    assert redis_queue.jobs() == redis_queue.scheduled() == []


def test_an_event_that_fails_for_good_is_not_retried_and_waits_for_replay_failed(
    client, redis_queue, db_session, runner, stripe
):
    redis_queue.on()
    event = stripe_event(
        "customer.subscription.updated", {"id": "sub_nowhere", "object": "subscription"}
    )
    assert deliver(client, event).status_code == 202

    redis_queue.work()

    row = stored(db_session, event)
    assert row.status is EventStatus.FAILED
    assert "GatewayError" in (row.error or "")
    assert redis_queue.jobs() == redis_queue.scheduled() == [], "Stripe will not know it later"
    result = runner.invoke(args=["billing", "replay-failed"])
    assert "Replayed 1 event(s): 1 failed." in result.output


def test_mail_caused_by_a_queued_event_goes_through_the_queue_too(
    client, patron, stripe_api: StripeApi, redis_queue, mailbox, db_session
):
    invoice = fail_a_renewal(stripe_api, patron.customer_id, patron.subscription_id)
    mailbox.messages.clear()
    redis_queue.on()
    obj = {
        "id": invoice,
        "object": "invoice",
        "customer": patron.customer_id,
        "subscription": patron.subscription_id,
    }
    assert deliver(client, stripe_event("invoice.payment_failed", obj)).status_code == 202

    redis_queue.work()  # the event's job queues the mail's job; the burst runs both

    message = mailbox.last_to("patron@example.org")
    assert message["Subject"] == "Your membership payment did not go through"
    assert subscription_of(db_session, patron.member).status is SubscriptionStatus.PAST_DUE
    assert redis_queue.jobs() == []
