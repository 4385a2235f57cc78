"""Reader and staff accounts, and the login sessions that belong to them."""

from __future__ import annotations

import enum
from datetime import datetime

from flask_login import UserMixin
from sqlalchemy import CheckConstraint, Enum, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

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

    login_sessions: Mapped[list[LoginSession]] = relationship(
        back_populates="member", cascade="all, delete-orphan", passive_deletes=True
    )

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
