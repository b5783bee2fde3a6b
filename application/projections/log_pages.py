"""The log as a projection reads it: pages of decoded events with their index rows.

Each page is read by a thread of its own while the projection applies the page before
(application/read_ahead.py), a few thousand events at a time, so memory stays flat
however long the log is.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterator
from typing import Any

from application.ledger import DecisionLedger
from application.ports import LoggedEvent
from application.projections.base import LogPage
from application.read_ahead import read_ahead


def log_pages(
    app: DecisionLedger,
    *,
    after: int,
    up_to: int | None,
    page: int,
    decode: Callable[[LoggedEvent], Any],
) -> Generator[LogPage, None, None]:
    """The events after position `after` (up to `up_to`), a page at a time, read ahead,
    each decoded by `decode` (the projection's decoder: LedgerProjection.decoder)."""
    return read_ahead(_pages(app, after, up_to, page, decode), name="log-pages")


def _pages(
    app: DecisionLedger, after: int, up_to: int | None, page: int, decode: Callable[[LoggedEvent], Any]
) -> Iterator[LogPage]:
    position = after
    while True:
        rows = app.index.logged_events_between(position, up_to, page)
        if not rows:
            return
        yield LogPage([(decode(row), row) for row in rows])
        position = rows[-1].position
