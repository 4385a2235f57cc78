"""Answers remembered for the rest of one database transaction, while nothing is written.

A page may ask the same question twice through different services (the member's current
subscription: once for the page, once more for their perks). Rather than thread every loaded
object through every call, a service may keep its answer here, on the session.

What is kept is forgotten as soon as the session writes anything (a flush, or an UPDATE or
DELETE sent through it) and when its transaction ends (commit or rollback), and it is only
handed out while the session holds no unflushed changes: an answer is never older than the
last write of the transaction that reads it. Nothing here is shared between sessions, threads
or processes.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any, TypeVar

from sqlalchemy import event
from sqlalchemy.orm import ORMExecuteState, Session

T = TypeVar("T")

_KEY = "memo"


def remembered(session: Session, key: Hashable, compute: Callable[[], T]) -> T:
    """``compute()``, or what it returned earlier in this transaction if nothing was written."""
    if session.new or session.dirty or session.deleted:
        # Unflushed changes: the next query flushes them (and forgets everything kept here),
        # so asking the database is the only way to see them.
        return compute()
    memo: dict[Hashable, Any] = session.info.setdefault(_KEY, {})
    if key in memo:
        return memo[key]  # type: ignore[no-any-return]
    value = compute()
    memo[key] = value
    return value


def forget(session: Session) -> None:
    session.info.pop(_KEY, None)


@event.listens_for(Session, "after_flush")
def _forget_after_flush(session: Session, flush_context: Any) -> None:
    forget(session)


@event.listens_for(Session, "after_commit")
def _forget_after_commit(session: Session) -> None:
    forget(session)


@event.listens_for(Session, "after_soft_rollback")
def _forget_after_rollback(session: Session, previous_transaction: Any) -> None:
    forget(session)


@event.listens_for(Session, "do_orm_execute")
def _forget_on_write(state: ORMExecuteState) -> None:
    # INSERT, UPDATE and DELETE statements sent through the session change rows without a flush.
    if not state.is_select:
        forget(state.session)
