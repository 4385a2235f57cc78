"""Stripe events as Stripe sends them: the JSON of an event, and a body signed with the
endpoint's secret (the scheme ``t=<unix time>,v1=<HMAC-SHA256 of "<t>.<body>">``)."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import uuid
from typing import Any

from membership.config import DEFAULT_STRIPE_API_VERSION

Json = dict[str, Any]
WEBHOOK_SECRET = "whsec_test_suite"  # the endpoint's signing secret in every test


def signature_header(
    body: bytes, secret: str = WEBHOOK_SECRET, timestamp: int | None = None
) -> str:
    """The ``Stripe-Signature`` header for ``body``."""
    t = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


def signed(event: Json, secret: str = WEBHOOK_SECRET) -> tuple[bytes, dict[str, str]]:
    """The body and headers of a delivery of ``event``."""
    body = json.dumps(event).encode()
    headers = {
        "Content-Type": "application/json",
        "Stripe-Signature": signature_header(body, secret),
    }
    return body, headers


def stripe_event(
    type_: str, obj: Json, *, event_id: str | None = None, previous: Json | None = None
) -> Json:
    """An event as Stripe sends it (the object as it was when the event was created)."""
    data: Json = {"object": obj}
    if previous is not None:
        data["previous_attributes"] = previous
    return {
        "id": event_id or f"evt_test_{uuid.uuid4().hex[:24]}",
        "object": "event",
        "api_version": DEFAULT_STRIPE_API_VERSION,
        "created": int(time.time()),
        "data": data,
        "livemode": False,
        "pending_webhooks": 1,
        "request": {"id": None, "idempotency_key": None},
        "type": type_,
    }
