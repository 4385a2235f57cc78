"""The member API's use cases: API keys for the newsroom's main site, and a member's status.

A key is ``mk_`` followed by 43 random URL-safe characters (256 bits). Only its SHA-256 is stored,
with its first characters (``prefix``) so that staff can tell keys apart in a listing. A fast hash
is right here, unlike for passwords: the key is random and long, so there is nothing to guess.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from membership.accounts.models import Member
from membership.accounts.rules import normalise_email
from membership.api.models import ApiKey
from membership.billing import service as billing
from membership.billing.rules import MembershipState
from membership.database import utcnow
from membership.perks.service import perks_for

KEY_PREFIX = "mk_"
PREFIX_LENGTH = len(KEY_PREFIX) + 8  # shown in listings; fits ApiKey.prefix
# A real key is 46 characters; anything much longer is not worth hashing.
MAX_KEY_LENGTH = 100
NAME_MAX_LENGTH = 80
# last_used_at is a hint for staff, not an audit log: refreshing it at most once a minute spares
# the database a write on every page view of the main site.
LAST_USED_RESOLUTION = timedelta(minutes=1)


class ApiKeyError(Exception):
    """A key cannot be created or revoked; the message says why, in plain words."""


@dataclass(frozen=True)
class NewKey:
    """A key just made: ``secret`` is shown once and never stored."""

    api_key: ApiKey
    secret: str


def hash_key(secret: str) -> str:
    """The stored form of a key: its SHA-256, in hex."""
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()


def _clean_name(name: str) -> str:
    cleaned = " ".join(name.split())
    if not cleaned:
        raise ApiKeyError("Give the key a name, such as the site that will use it.")
    if len(cleaned) > NAME_MAX_LENGTH:
        raise ApiKeyError(f"Use a name of at most {NAME_MAX_LENGTH} characters.")
    if not cleaned.isprintable():
        raise ApiKeyError("Use a name of printable characters only.")
    return cleaned


def create_key(session: Session, name: str) -> NewKey:
    """Make a key called ``name`` (unique). The secret in the result is the only copy."""
    cleaned = _clean_name(name)
    if session.scalar(select(ApiKey.id).where(ApiKey.name == cleaned)) is not None:
        raise ApiKeyError(f"There is already a key called {cleaned!r}: choose another name.")
    secret = KEY_PREFIX + secrets.token_urlsafe(32)
    api_key = ApiKey(name=cleaned, key_hash=hash_key(secret), prefix=secret[:PREFIX_LENGTH])
    session.add(api_key)
    session.flush()
    return NewKey(api_key=api_key, secret=secret)


def list_keys(session: Session) -> list[ApiKey]:
    """Every key, revoked ones included, oldest first."""
    return list(session.scalars(select(ApiKey).order_by(ApiKey.created_at, ApiKey.id)))


def revoke(session: Session, name: str, *, now: datetime | None = None) -> ApiKey:
    """Stop the key called ``name`` from working, at once and for good. Revoking twice is
    harmless: the first date is kept."""
    api_key = session.scalar(select(ApiKey).where(ApiKey.name == " ".join(name.split())))
    if api_key is None:
        raise ApiKeyError(f"There is no key called {name!r}.")
    if api_key.revoked_at is None:
        api_key.revoked_at = now or utcnow()
        session.flush()
    return api_key


def authenticate(session: Session, secret: str, *, now: datetime | None = None) -> ApiKey | None:
    """The live key whose secret this is, or None. Marks it used (at most once a minute)."""
    if not secret.startswith(KEY_PREFIX) or len(secret) > MAX_KEY_LENGTH:
        return None
    digest = hash_key(secret)
    # The lookup is by the hash, so response times say nothing about the secret itself; the
    # constant-time comparison keeps it that way even if the query ever changes.
    api_key = session.scalar(select(ApiKey).where(ApiKey.key_hash == digest))
    if api_key is None or not hmac.compare_digest(api_key.key_hash, digest):
        return None
    if api_key.revoked_at is not None:
        return None
    now = now or utcnow()
    if api_key.last_used_at is None or now - api_key.last_used_at >= LAST_USED_RESOLUTION:
        api_key.last_used_at = now
        session.flush()
    return api_key


# --- a member's status, for the main site ------------------------------------------------------


@dataclass(frozen=True)
class MemberStatus:
    """What the main site needs to know about a reader, in the API's words."""

    email: str
    status: MembershipState
    patron: bool
    perks: list[str]
    tier: str | None = None
    interval: str | None = None
    currency: str | None = None
    amount: int | None = None
    current_period_end: datetime | None = None
    cancel_at_period_end: bool = False

    def as_json(self) -> dict[str, Any]:
        end = self.current_period_end
        return {
            "email": self.email,
            "status": self.status.value,
            "patron": self.patron,
            "perks": self.perks,
            "tier": self.tier,
            "interval": self.interval,
            "currency": self.currency,
            "amount": self.amount,
            "current_period_end": (
                end.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
                if end is not None
                else None
            ),
            "cancel_at_period_end": self.cancel_at_period_end,
        }


def member_status(
    session: Session, raw_email: str, *, now: datetime | None = None
) -> MemberStatus | None:
    """The status and perks of the member with this email (any case), or None if there is no
    such live account. Raises ``InvalidEmail`` for something that is not an email address.

    A fixed number of queries whatever the data: the key, the member, their current
    subscription with its price and tier, their comps and the perks of every tier.
    """
    email = normalise_email(raw_email)
    member = session.scalar(
        select(Member).where(Member.email == email, Member.deleted_at.is_(None))
    )
    if member is None:
        return None
    # The subscription perks_for decides by (live first, then the latest), loaded once: the
    # answer describes it too.
    subscription = billing.current_subscription(session, member)
    perks = perks_for(session, member, now=now, subscription=subscription)
    if subscription is None or perks.state is MembershipState.NONE:
        # Never joined, or still entering a card: there is no membership to describe.
        return MemberStatus(
            email=member.email, status=perks.state, patron=perks.patron, perks=perks.keys
        )
    price = subscription.price
    return MemberStatus(
        email=member.email,
        status=perks.state,
        patron=perks.patron,
        perks=perks.keys,
        tier=price.tier.slug,
        interval=price.interval.value,
        currency=price.currency,
        amount=price.amount,
        current_period_end=subscription.current_period_end,
        cancel_at_period_end=subscription.cancel_at_period_end,
    )
