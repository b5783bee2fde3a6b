"""The log as a projection reads it: pages of decoded events with their index rows.

Each page is read by a thread of its own while the projection applies the page before
(application/read_ahead.py), a few thousand events at a time, so memory stays flat
however long the log is.
"""

from __future__ import annotations

from collections.abc import Generator, Iterator

from eventsourcing.persistence import Tracking

from application.ledger import DecisionLedger
from application.projections.base import LogPage
from application.read_ahead import read_ahead


def log_pages(
    app: DecisionLedger, *, after: int, up_to: int | None, page: int
) -> Generator[LogPage, None, None]:
    """The events after position `after` (up to `up_to`), a page at a time, read ahead."""
    return read_ahead(_pages(app, after, up_to, page), name="log-pages")


def _pages(app: DecisionLedger, after: int, up_to: int | None, page: int) -> Iterator[LogPage]:
    position = after
    while True:
        notifications = app.recorder.select_notifications(
            start=position, limit=page, stop=up_to, inclusive_of_start=False
        )
        if not notifications:
            return
        last = notifications[-1].id
        events = [
            (app.mapper.to_domain_event(notification), Tracking(app.name, notification.id))
            for notification in notifications
        ]
        index_rows = app.index.events_between(position, last, len(notifications) * 2 + 10)
        yield LogPage(
            events,
            {row.position: row for row in index_rows},
            {notification.id: notification for notification in notifications},
        )
        position = last
