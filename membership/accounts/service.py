"""Account use cases. Each takes the database session and flushes; the caller commits once."""

from __future__ import annotations

import contextlib
import hashlib
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from flask import current_app
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from membership.accounts.models import LoginSession, Member, Role
from membership.accounts.rules import password_problem
from membership.database import utcnow
from membership.emails import OutboundEmail, queue_email

# argon2id at OWASP's recommended minimum (19 MiB, two passes, one lane). Raising these later is
# safe: hashes made with older parameters are upgraded at the member's next login.
password_hasher = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)
# Verified against when the email is unknown, so a login takes as long either way.
_DUMMY_HASH = password_hasher.hash("not a real password, only here to spend time")


class AccountError(Exception):
    """A request the rules refuse. ``field`` names the form field the message belongs next to."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class LinkExpired(AccountError):
    """A signed link that was genuine but is too old."""


class LinkInvalid(AccountError):
    """A signed link that is forged, damaged, or already used."""


# --- passwords ---------------------------------------------------------------------------------


def hash_password(password: str) -> str:
    return password_hasher.hash(password)


def check_password(member: Member, password: str) -> bool:
    """Verify a password, upgrading the stored hash if the hashing parameters have changed."""
    if not member.password_hash:
        _spend_time(password)
        return False
    try:
        password_hasher.verify(member.password_hash, password)
    except (VerificationError, InvalidHashError):
        return False
    if password_hasher.check_needs_rehash(member.password_hash):
        member.password_hash = hash_password(password)
    return True


def _spend_time(password: str) -> None:
    """Do the work of a verification whose answer we already know, so timing tells nothing."""
    with contextlib.suppress(VerificationError):
        password_hasher.verify(_DUMMY_HASH, password)


def _set_password(member: Member, password: str) -> None:
    problem = password_problem(password, member.email)
    if problem:
        raise AccountError(problem, field="password")
    member.password_hash = hash_password(password)
    member.password_changed_at = utcnow()


# --- signed links ------------------------------------------------------------------------------


def _serializer(purpose: str) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.config["SECRET_KEY"], salt=f"membership.{purpose}")


def _make_token(purpose: str, payload: dict[str, Any]) -> str:
    return _serializer(purpose).dumps(payload)


def _read_token(purpose: str, token: str, max_age: int) -> dict[str, Any]:
    if not token or len(token) > 1000:
        raise LinkInvalid("This link is not valid.")
    try:
        payload = _serializer(purpose).loads(token, max_age=max_age)
    except SignatureExpired as exc:
        raise LinkExpired("This link has expired.") from exc
    except BadSignature as exc:
        raise LinkInvalid("This link is not valid.") from exc
    if not isinstance(payload, dict):
        raise LinkInvalid("This link is not valid.")
    return payload


def _password_fingerprint(member: Member) -> str:
    """Changes whenever the password does, which makes a reset link single-use."""
    material = f"{member.password_hash or ''}|{member.password_changed_at.isoformat()}"
    return hashlib.sha256(material.encode()).hexdigest()[:24]


def _link(path: str) -> str:
    return current_app.config["BASE_URL"] + path


def _live_member(session: Session, member_id: Any) -> Member | None:
    if not isinstance(member_id, int):
        return None
    member = session.get(Member, member_id)
    return member if member is not None and member.deleted_at is None else None


# --- signup and email confirmation -------------------------------------------------------------


def find_by_email(session: Session, email: str) -> Member | None:
    """The live account with this (already normalised) email, if any."""
    return session.scalar(select(Member).where(Member.email == email, Member.deleted_at.is_(None)))


def signup(
    session: Session,
    *,
    email: str,
    password: str,
    display_name: str,
    next_path: str | None = None,
) -> Member | None:
    """Create an unconfirmed reader account and email a confirmation link.

    If the address already has an account, nothing is created and its owner is told by email
    instead, so that the page shown is the same either way (no account enumeration).
    Returns the new member, or None when the address was taken.
    """
    problem = password_problem(password, email)
    if problem:
        raise AccountError(problem, field="password")
    existing = find_by_email(session, email)
    if existing is None:
        member = Member(email=email, display_name=display_name, role=Role.READER)
        member.password_hash = hash_password(password)
        try:
            with session.begin_nested():
                session.add(member)
        except IntegrityError:
            existing = find_by_email(session, email)  # a concurrent signup won the race
        else:
            send_confirmation(session, member, next_path=next_path)
            return member
    if existing is not None:
        queue_email(
            session,
            to=existing.email,
            member_id=existing.id,
            template="signup_existing",
            subject="Someone tried to sign up with your email address",
            member=existing,
            login_url=_link("/account/login"),
            reset_url=_link("/account/reset"),
        )
    return None


def send_confirmation(session: Session, member: Member, next_path: str | None = None) -> None:
    """Email a link that confirms the member's current address.

    ``next_path`` (a local path, already checked) is where the reader was going, e.g. the tier
    they chose: the link takes them back there after confirming and logging in.
    """
    token = _make_token("confirm", {"m": member.id, "e": member.email})
    query = f"?{urlencode({'next': next_path})}" if next_path else ""
    queue_email(
        session,
        to=member.email,
        member_id=member.id,
        template="confirm_email",
        subject="Confirm your email address",
        member=member,
        confirm_url=_link(f"/account/confirm/{token}{query}"),
        valid_days=current_app.config["CONFIRM_EMAIL_MAX_AGE"] // 86400,
    )


def confirm_email_preview(session: Session, token: str) -> Member:
    """The member a confirmation link belongs to, if the link is genuine and recent."""
    payload = _read_token("confirm", token, current_app.config["CONFIRM_EMAIL_MAX_AGE"])
    member = _live_member(session, payload.get("m"))
    if member is None or member.email != payload.get("e"):
        raise LinkInvalid("This link is not valid any more.")
    return member


def confirm_email(session: Session, token: str) -> Member:
    """Mark the address in the link as confirmed. Confirming twice is harmless."""
    member = confirm_email_preview(session, token)
    if member.email_confirmed_at is None:
        member.email_confirmed_at = utcnow()
    return member


# --- login sessions ----------------------------------------------------------------------------


def authenticate(session: Session, email: str, password: str) -> Member | None:
    """The member with these credentials, or None. Takes as long for unknown emails."""
    member = find_by_email(session, email)
    if member is None:
        _spend_time(password)
        return None
    return member if check_password(member, password) else None


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def start_login_session(session: Session, member: Member) -> str:
    """Record a new logged-in browser and return the token for its cookie."""
    token = secrets.token_urlsafe(32)
    days = current_app.config["LOGIN_SESSION_DAYS"]
    session.add(
        LoginSession(
            member_id=member.id,
            token_hash=_token_hash(token),
            expires_at=utcnow() + timedelta(days=days),
        )
    )
    session.flush()
    return token


def member_for_login_session(session: Session, member_id: str, token: str | None) -> Member | None:
    """The member behind a session cookie, if that login session is still live."""
    if not token or not member_id.isdigit():
        return None
    return session.scalar(
        select(Member)
        .join(LoginSession, LoginSession.member_id == Member.id)
        .where(
            LoginSession.token_hash == _token_hash(token),
            LoginSession.expires_at > utcnow(),
            Member.id == int(member_id),
            Member.deleted_at.is_(None),
        )
    )


def end_login_session(session: Session, token: str | None) -> None:
    if token:
        session.execute(delete(LoginSession).where(LoginSession.token_hash == _token_hash(token)))


def end_other_login_sessions(session: Session, member: Member, keep_token: str | None) -> None:
    """Log the member out everywhere except (optionally) the browser holding ``keep_token``."""
    query = delete(LoginSession).where(LoginSession.member_id == member.id)
    if keep_token:
        query = query.where(LoginSession.token_hash != _token_hash(keep_token))
    session.execute(query)


# --- forgotten password ------------------------------------------------------------------------


def request_password_reset(session: Session, email: str) -> None:
    """Email a single-use reset link if the address has an account; do nothing visible if not."""
    member = find_by_email(session, email)
    if member is None:
        return
    token = _make_token("reset", {"m": member.id, "p": _password_fingerprint(member)})
    queue_email(
        session,
        to=member.email,
        member_id=member.id,
        template="reset_password",
        subject="Reset your password",
        member=member,
        reset_url=_link(f"/account/reset/{token}"),
        valid_minutes=current_app.config["RESET_PASSWORD_MAX_AGE"] // 60,
    )


INVITATION_MAX_AGE = 14 * 24 * 3600


def password_setup_link(member: Member) -> str:
    """A link for a member we created (e.g. from a Stripe subscription) to choose a password.

    It is a reset link that stays valid for two weeks instead of an hour.
    """
    token = _make_token("reset", {"m": member.id, "p": _password_fingerprint(member), "i": 1})
    return _link(f"/account/reset/{token}")


def member_for_reset(session: Session, token: str) -> Member:
    """The member a reset link belongs to, if the link is genuine, recent and unused."""
    payload = _read_token("reset", token, INVITATION_MAX_AGE)
    if payload.get("i") != 1:
        # Ordinary reset links live much shorter than invitations.
        payload = _read_token("reset", token, current_app.config["RESET_PASSWORD_MAX_AGE"])
    member = _live_member(session, payload.get("m"))
    if member is None or payload.get("p") != _password_fingerprint(member):
        raise LinkInvalid("This link has already been used or is not valid any more.")
    return member


def reset_password(session: Session, token: str, new_password: str) -> Member:
    """Set a new password from a reset link, and log the member out everywhere."""
    member = member_for_reset(session, token)
    _set_password(member, new_password)
    # Receiving the link proves the member reads mail at this address.
    if member.email_confirmed_at is None:
        member.email_confirmed_at = utcnow()
    end_other_login_sessions(session, member, keep_token=None)
    return member


# --- settings ----------------------------------------------------------------------------------


def change_display_name(member: Member, display_name: str) -> None:
    member.display_name = display_name


def change_password(
    session: Session, member: Member, *, current: str, new: str, keep_token: str | None
) -> None:
    """Change the password (the current one is required) and end the member's other sessions."""
    if not check_password(member, current):
        raise AccountError("That is not your current password.", field="current_password")
    _set_password(member, new)
    end_other_login_sessions(session, member, keep_token=keep_token)
    queue_email(
        session,
        to=member.email,
        member_id=member.id,
        template="password_changed",
        subject="Your password was changed",
        member=member,
        reset_url=_link("/account/reset"),
    )


def request_email_change(
    session: Session, member: Member, *, new_email: str, password: str
) -> None:
    """Send a confirmation link to the new address; the change happens when it is followed.

    If the new address already belongs to another account, that address is told so instead, and
    the requester sees the same page as always.
    """
    if not check_password(member, password):
        raise AccountError("That is not your current password.", field="password")
    if new_email == member.email:
        raise AccountError("That is already your email address.", field="email")
    if find_by_email(session, new_email) is not None:
        queue_email(
            session,
            to=new_email,
            template="email_change_taken",
            subject="Someone tried to move an account to your email address",
            login_url=_link("/account/login"),
        )
        return
    token = _make_token("change-email", {"m": member.id, "old": member.email, "new": new_email})
    queue_email(
        session,
        to=new_email,
        member_id=member.id,
        template="email_change",
        subject="Confirm your new email address",
        member=member,
        confirm_url=_link(f"/account/email/{token}"),
        valid_days=current_app.config["CONFIRM_EMAIL_MAX_AGE"] // 86400,
    )


def _email_change_target(session: Session, token: str) -> tuple[Member, str]:
    payload = _read_token("change-email", token, current_app.config["CONFIRM_EMAIL_MAX_AGE"])
    member = _live_member(session, payload.get("m"))
    new_email = payload.get("new")
    if member is None or member.email != payload.get("old") or not isinstance(new_email, str):
        raise LinkInvalid("This link has already been used or is not valid any more.")
    if find_by_email(session, new_email) is not None:
        raise AccountError("That email address now belongs to another account.")
    return member, new_email


def email_change_preview(session: Session, token: str) -> str:
    """The new address a change link would move the account to, if the link is still good."""
    return _email_change_target(session, token)[1]


def confirm_email_change(session: Session, token: str) -> Member:
    """Move the account to the new address from a change link (single-use: the old one is gone)."""
    member, new_email = _email_change_target(session, token)
    old_email = member.email
    member.email = new_email
    member.email_confirmed_at = utcnow()
    try:
        with session.begin_nested():
            session.flush()
    except IntegrityError as exc:
        raise AccountError("That email address now belongs to another account.") from exc
    queue_email(
        session,
        to=old_email,
        member_id=member.id,
        template="email_changed",
        subject="Your email address was changed",
        member=member,
        new_email=new_email,
    )
    return member


# --- my data -----------------------------------------------------------------------------------


def export_data(session: Session, member: Member) -> dict[str, Any]:
    """Everything we hold about the member, as JSON-ready data."""
    sessions = session.scalars(
        select(LoginSession).where(LoginSession.member_id == member.id).order_by(LoginSession.id)
    ).all()
    emails = session.scalars(
        select(OutboundEmail).where(OutboundEmail.member_id == member.id).order_by(OutboundEmail.id)
    ).all()
    return {
        "account": {
            "id": member.id,
            "email": member.email,
            "display_name": member.display_name,
            "role": member.role.value,
            "email_confirmed_at": _iso(member.email_confirmed_at),
            "created_at": _iso(member.created_at),
            "password_changed_at": _iso(member.password_changed_at),
        },
        # The default card as Stripe last told us (never the number: Stripe holds that).
        "card": {
            "brand": member.card_brand,
            "last4": member.card_last4,
            "exp_month": member.card_exp_month,
            "exp_year": member.card_exp_year,
            "synced_at": _iso(member.card_synced_at),
        }
        if member.card_last4
        else None,
        "login_sessions": [
            {"started_at": _iso(s.created_at), "expires_at": _iso(s.expires_at)} for s in sessions
        ],
        "emails_sent": [
            {
                "to": e.to_address,
                "subject": e.subject,
                "queued_at": _iso(e.created_at),
                "sent_at": _iso(e.sent_at),
                "status": e.status.value,
            }
            for e in emails
        ],
        "exported_at": _iso(utcnow()),
    }


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def delete_account(
    session: Session,
    member: Member,
    *,
    password: str,
    before: Callable[[Member], None] | None = None,
) -> None:
    """Delete the member's personal data, keeping an anonymous row for bookkeeping.

    The row stays so that records the newsroom must keep (payments) still point somewhere;
    everything that identifies the person is removed. ``before`` runs once the password is
    checked (billing uses it to stop any subscription); if it raises, nothing is deleted.
    """
    if not check_password(member, password):
        raise AccountError("That is not your current password.", field="password")
    if before is not None:
        before(member)
    anonymise(session, member)


def anonymise(session: Session, member: Member) -> None:
    session.execute(delete(OutboundEmail).where(OutboundEmail.member_id == member.id))
    end_other_login_sessions(session, member, keep_token=None)
    member.email = f"deleted-{member.id}@deleted.invalid"
    member.display_name = "Deleted member"
    member.password_hash = None
    member.role = Role.READER
    member.email_confirmed_at = None
    member.forget_card()
    member.deleted_at = utcnow()


# --- staff accounts ----------------------------------------------------------------------------


@dataclass
class StaffResult:
    member: Member
    created: bool


def create_or_promote_staff(
    session: Session, *, email: str, password: str | None, role: Role = Role.STAFF
) -> StaffResult:
    """Give the account with this email a staff role, creating a confirmed account if needed."""
    member = find_by_email(session, email)
    created = member is None
    if member is None:
        if not password:
            raise AccountError("A new staff account needs a password.", field="password")
        member = Member(email=email, display_name=email.split("@")[0], email_confirmed_at=utcnow())
        session.add(member)
    if password:
        _set_password(member, password)
    if role is Role.ADMIN or member.role is not Role.ADMIN:  # never demote an admin here
        member.role = role
    session.flush()
    return StaffResult(member=member, created=created)
