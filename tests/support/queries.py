"""Count the SQL statements the app sends while a block runs (one request, usually).

    with count_queries(engine) as queries:
        client.get("/vote")
    assert len(queries) == 9, queries.report()

It listens to SQLAlchemy's ``before_cursor_execute`` event on the engine, so it sees every
statement that reaches the database driver, whichever session or connection sent it.

Savepoint statements are left out: ``SAVEPOINT``, ``RELEASE SAVEPOINT`` and ``ROLLBACK TO
SAVEPOINT``. The test database fixture wraps each test in a transaction and turns every
``session.begin()``/``commit()`` of the app into a savepoint inside it, so those statements exist
only under test; in production the same request opens and commits a real transaction, which the
driver does without a statement passing through this event. What is counted is therefore what
the request costs in production.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine

# Written by the test transaction around the app's commits, never by the app in production.
SAVEPOINT_STATEMENTS = ("SAVEPOINT", "RELEASE SAVEPOINT", "ROLLBACK TO SAVEPOINT")


@dataclass
class Queries:
    """The statements seen, in the order they were sent."""

    statements: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.statements)

    def clear(self) -> None:
        self.statements.clear()

    def report(self) -> str:
        """The statements, numbered and shortened: for an assertion message."""
        lines = (" ".join(s.split())[:160] for s in self.statements)
        return "\n".join(f"{n:3}. {line}" for n, line in enumerate(lines, 1))


def is_savepoint(statement: str) -> bool:
    return statement.lstrip().upper().startswith(SAVEPOINT_STATEMENTS)


@contextmanager
def count_queries(engine: Engine) -> Iterator[Queries]:
    """Record the statements ``engine`` sends until the block ends (savepoints left out)."""
    seen = Queries()

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if not is_savepoint(statement):
            seen.statements.append(statement)

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", record)
