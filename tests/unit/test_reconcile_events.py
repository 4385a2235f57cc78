"""Reconcile reads recent events whatever order the provider lists them in."""

from __future__ import annotations

from datetime import UTC, datetime

from membership.billing.reconciliation import _recent_events

SINCE = datetime(2026, 11, 20, tzinfo=UTC)
OLD, NEW = int(SINCE.timestamp()) - 60, int(SINCE.timestamp()) + 60


class ListedEvents:
    def __init__(self, events: list[dict]) -> None:
        self.events = events

    def iter_events(self):
        yield from self.events


def test_recent_events_are_found_oldest_first_as_well_as_newest_first():
    events = [{"id": "evt_old", "created": OLD}, {"id": "evt_new", "created": NEW}]
    for listed in (events, list(reversed(events))):
        found = [e["id"] for e in _recent_events(ListedEvents(listed), SINCE)]
        assert found == ["evt_new"]
