"""Reader and staff accounts, and the login sessions that belong to them."""

from __future__ import annotations

import enum
from datetime import datetime

from flask_login import UserMixin
from sqlalchemy import CheckConstraint, Enum, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column, relationship, validates

from membership.database import utcnow
from membership.extensions import db


class Role(enum.StrEnum):
    READER = "reader"
    STAFF = "staff"
    ADMIN = "admin"


def enum_column(enum_class: type[enum.Enum], name: str) -> Enum:
    """Store an enum by its value, checked by the database (a CHECK constraint, not a PG type)."""
    return Enum(
        enum_class,
        name=name,
        native_enum=False,
        create_constraint=True,
        length=20,
        values_callable=lambda members: [member.value for member in members],
    )


class Member(UserMixin, db.Model):
    """Anyone with an account: readers, patrons and staff alike."""

    __tablename__ = "members"
    __table_args__ = (
        CheckConstraint("email = lower(email)", name="email_lowercase"),
        CheckConstraint("length(display_name) > 0", name="display_name_not_empty"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(254), unique=True)
    display_name: Mapped[str] = mapped_column(String(80))
    # NULL for an account made for a reader who has not chosen a password, and after deletion.
    password_hash: Mapped[str | None] = mapped_column(String(255))
    role: Mapped[Role] = mapped_column(enum_column(Role, "member_role"), default=Role.READER)
    email_confirmed_at: Mapped[datetime | None]
    password_changed_at: Mapped[datetime] = mapped_column(default=utcnow)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    deleted_at: Mapped[datetime | None]
    stripe_customer_id: Mapped[str | None] = mapped_column(String(255), unique=True)
    # The Stripe customer's default card, as Stripe last told us (the pages read it from here
    # rather than asking Stripe on every view). ``card_synced_at`` NULL: never learned; set with
    # ``card_last4`` NULL: the customer has no default card.
    stripe_payment_method_id: Mapped[str | None] = mapped_column(String(255))
    card_brand: Mapped[str | None] = mapped_column(String(30))
    card_last4: Mapped[str | None] = mapped_column(String(4))
    card_exp_month: Mapped[int | None]
    card_exp_year: Mapped[int | None]
    card_synced_at: Mapped[datetime | None]

    login_sessions: Mapped[list[LoginSession]] = relationship(
        back_populates="member", cascade="all, delete-orphan", passive_deletes=True
    )

    @validates("stripe_customer_id")
    def _customer_changed(self, key: str, value: str | None) -> str | None:
        # The card belongs to the customer: whatever links the account to another customer (or
        # to none) makes the stored card someone else's.
        if value != self.stripe_customer_id:
            self.forget_card()
        return value

    def forget_card(self) -> None:
        """Drop the stored card: it is no longer known to be the customer's default."""
        self.stripe_payment_method_id = None
        self.card_brand = None
        self.card_last4 = None
        self.card_exp_month = None
        self.card_exp_year = None
        self.card_synced_at = None

    @property
    def email_confirmed(self) -> bool:
        return self.email_confirmed_at is not None

    @property
    def is_staff(self) -> bool:
        return self.role in (Role.STAFF, Role.ADMIN)

    @property
    def is_admin(self) -> bool:
        return self.role is Role.ADMIN

    @property
    def is_active(self) -> bool:  # flask-login: a deleted account can never be logged in
        return self.deleted_at is None

    def __repr__(self) -> str:  # never the email: reprs end up in logs
        return f"<Member {self.id} {self.role.value}>"


class LoginSession(db.Model):
    """One logged-in browser. The cookie holds a random token; the database holds its hash.

    Deleting the row ends that session everywhere, which is what makes logout and "log out my other
    devices" real even though Flask's session cookie itself is signed, not stored.
    """

    __tablename__ = "login_sessions"
    __table_args__ = (Index("ix_login_sessions_member_id", "member_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]

    member: Mapped[Member] = relationship(back_populates="login_sessions")
