"""Transactional email through an outbox table.

A service calls :func:`queue_email` inside the transaction that causes the mail, so the message is
stored if and only if the action is. After the request commits, the messages it stored are sent:
by a queued job (:func:`deliver_queued`) when there is a queue (``REDIS_URL``), else in the request
itself by :func:`deliver_pending`. A failing SMTP server leaves the message pending with a later
retry time; nothing the member did is lost: the queue retries the job, and
``flask --app wsgi emails deliver`` (or the next request) sends whatever is still due.
"""

from __future__ import annotations

import enum
import logging
import smtplib
import ssl
from datetime import datetime, timedelta
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path
from typing import Any

from flask import Flask, Response, current_app, g, has_app_context, render_template
from sqlalchemy import CheckConstraint, ForeignKey, Index, String, Text, event, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from membership import queue
from membership.accounts.models import enum_column
from membership.database import utcnow
from membership.extensions import db

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 8


class EmailStatus(enum.StrEnum):
    PENDING = "pending"
    SENT = "sent"
    FAILED = "failed"  # gave up after MAX_ATTEMPTS


class OutboundEmail(db.Model):
    __tablename__ = "outbound_emails"
    __table_args__ = (
        CheckConstraint("attempts >= 0", name="attempts_not_negative"),
        Index("ix_outbound_emails_due", "status", "next_attempt_at"),
        Index("ix_outbound_emails_member_id", "member_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    member_id: Mapped[int | None] = mapped_column(ForeignKey("members.id", ondelete="CASCADE"))
    to_address: Mapped[str] = mapped_column(String(254))
    template: Mapped[str] = mapped_column(String(80))
    subject: Mapped[str] = mapped_column(String(200))
    body_text: Mapped[str] = mapped_column(Text)
    body_html: Mapped[str] = mapped_column(Text)
    status: Mapped[EmailStatus] = mapped_column(
        enum_column(EmailStatus, "email_status"), default=EmailStatus.PENDING
    )
    attempts: Mapped[int] = mapped_column(default=0)
    last_error: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    sent_at: Mapped[datetime | None]


def queue_email(
    session: Session,
    *,
    to: str,
    template: str,
    subject: str,
    member_id: int | None = None,
    **context: Any,
) -> OutboundEmail:
    """Compose ``templates/email/<template>.txt`` and ``.html`` and store the message for delivery.

    The message is sent only once the surrounding transaction commits.
    """
    context = {"subject": subject, **context}
    message = OutboundEmail(
        member_id=member_id,
        to_address=to,
        template=template,
        subject=subject,
        body_text=render_template(f"email/{template}.txt", **context),
        body_html=render_template(f"email/{template}.html", **context),
    )
    session.add(message)
    session.flush()
    session.info.setdefault(_QUEUED, []).append(message.id)
    return message


def deliver_pending(session: Session, limit: int = 50) -> tuple[int, int]:
    """Send the messages that are due; return (sent, failed this round). Commits after each."""
    now = utcnow()
    due = session.scalars(
        select(OutboundEmail)
        .where(OutboundEmail.status == EmailStatus.PENDING, OutboundEmail.next_attempt_at <= now)
        .order_by(OutboundEmail.id)
        .limit(limit)
    ).all()
    sent = failed = 0
    for message in due:
        if _send(message):
            sent += 1
        else:
            failed += 1
        session.commit()
    return sent, failed


def deliver(session: Session, message_ids: list[int]) -> tuple[int, int]:
    """Send these messages if they are still pending; return (sent, failed). Commits after each.

    Each message is locked while it is sent (on PostgreSQL), and one that another process is
    sending right now is skipped, so that two deliveries of the same message cannot overlap.
    """
    sent = failed = 0
    for message_id in message_ids:
        message = session.scalar(
            select(OutboundEmail)
            .where(OutboundEmail.id == message_id, OutboundEmail.status == EmailStatus.PENDING)
            .with_for_update(skip_locked=True)
            .execution_options(populate_existing=True)
        )
        if message is not None:
            if _send(message):
                sent += 1
            else:
                failed += 1
        session.commit()
    return sent, failed


class DeliveryFailed(Exception):
    """Some messages of a queued delivery were not sent; the queue tries the job again."""


@queue.job
def deliver_queued(message_ids: list[int]) -> int:
    """The worker's side: send the messages a request stored; raise if any failed (retried)."""
    sent, failed = deliver(db.session, message_ids)
    if failed:
        raise DeliveryFailed(f"{failed} of {len(message_ids)} message(s) not sent")
    return sent


def _send(message: OutboundEmail) -> bool:
    """Try once; record the outcome on the message (the caller commits)."""
    try:
        _transport(message)
    except (OSError, smtplib.SMTPException) as exc:
        message.attempts += 1
        message.last_error = f"{type(exc).__name__}: {exc}"[:500]
        if message.attempts >= MAX_ATTEMPTS:
            message.status = EmailStatus.FAILED
        # 1, 2, 4, 8 ... minutes, capped at six hours.
        message.next_attempt_at = utcnow() + timedelta(minutes=min(2**message.attempts, 360))
        log.warning("email %s (%s) not sent: %s", message.id, message.template, exc)
        return False
    message.attempts += 1
    message.status = EmailStatus.SENT
    message.sent_at = utcnow()
    message.last_error = None
    return True


def _build(message: OutboundEmail) -> EmailMessage:
    email = EmailMessage()
    email["From"] = current_app.config["MAIL_FROM"]
    email["To"] = message.to_address
    email["Subject"] = message.subject
    email["Message-ID"] = make_msgid(domain="membership.local")
    email.set_content(message.body_text)
    email.add_alternative(message.body_html, subtype="html")
    return email


def _transport(message: OutboundEmail) -> None:
    config = current_app.config
    email = _build(message)
    if not config["SMTP_HOST"]:
        _save_to_outbox(message, email)
        return
    with smtplib.SMTP(
        config["SMTP_HOST"], config["SMTP_PORT"], timeout=config["SMTP_TIMEOUT"]
    ) as smtp:
        if config["SMTP_STARTTLS"]:
            smtp.starttls(context=ssl.create_default_context())
        if config["SMTP_USERNAME"]:
            smtp.login(config["SMTP_USERNAME"], config["SMTP_PASSWORD"])
        smtp.send_message(email)


def _save_to_outbox(message: OutboundEmail, email: EmailMessage) -> None:
    """Development: keep the message as a file and show it on the console, links included."""
    outbox = Path(current_app.config["MAIL_OUTBOX_DIR"])
    outbox.mkdir(parents=True, exist_ok=True)
    path = outbox / f"{message.id:06d}-{message.template}.eml"
    path.write_bytes(bytes(email))
    print(
        f"\n----- email to {message.to_address}: {message.subject} (saved to {path})\n"
        f"{message.body_text}\n-----\n",
        flush=True,
    )


# --- delivery after commit ---------------------------------------------------------------------

_QUEUED = "emails_queued"


@event.listens_for(Session, "after_commit")
def _note_committed_mail(session: Session) -> None:
    committed = session.info.pop(_QUEUED, None)
    if committed and has_app_context():
        g.emails_committed = [*g.get("emails_committed", []), *committed]


@event.listens_for(Session, "after_rollback")
def _forget_rolled_back_mail(session: Session) -> None:
    session.info.pop(_QUEUED, None)


def send_committed_mail() -> None:
    """Send the mail committed in this app context (a request or a job): through the queue if
    there is one, else now. Leftovers are retried by the CLI."""
    message_ids = g.pop("emails_committed", None)
    if not message_ids:
        return
    try:
        if queue.enqueue(
            current_app.config,
            "membership.emails.deliver_queued",
            message_ids,
            job_id=f"email-{message_ids[0]}",
        ):
            return
    except queue.QueueUnavailable:
        pass  # logged by the queue; send now rather than leave it for the cron command
    session = db.session
    if session.new or session.dirty or session.deleted:
        return  # never commit a view's unfinished work as a side effect
    try:
        deliver_pending(session)
    except Exception:
        session.rollback()
        log.exception("email delivery failed; messages stay queued")


def init_app(app: Flask) -> None:
    @app.after_request
    def deliver_committed_mail(response: Response) -> Response:
        send_committed_mail()
        return response
