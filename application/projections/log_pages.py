"""The log as a projection reads it: pages of decoded events with their index rows.

A page at a time, so memory stays flat however long the log is. From a database server
each page is read by a thread of its own while the projection applies the page before
(application/read_ahead.py); from an embedded one (SQLite) the reading is the process's
own work, done in turn (LedgerIndex.reads_in_process).
"""

from __future__ import annotations

from collections.abc import Callable, Generator
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
    """The events after position `after` (up to `up_to`), a page at a time, each decoded
    by `decode` (the projection's decoder: LedgerProjection.decoder)."""
    pages = _pages(app, after, up_to, page, decode)
    return pages if app.index.reads_in_process else read_ahead(pages, name="log-pages")


def _pages(
    app: DecisionLedger, after: int, up_to: int | None, page: int, decode: Callable[[LoggedEvent], Any]
) -> Generator[LogPage, None, None]:
    position = after
    while True:
        rows = app.index.logged_events_between(position, up_to, page)
        if not rows:
            return
        yield LogPage([(decode(row), row) for row in rows])
        position = rows[-1].position
