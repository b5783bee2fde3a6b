"""The log as a projection reads it: pages of decoded events with their index rows.

A page at a time, so memory stays flat however long the log is. From a database server
each page's rows are read by a thread of its own while the projection applies the page
before (application/read_ahead.py); from an embedded one (SQLite) the reading is the
process's own work, done in turn (LedgerIndex.reads_in_process). Either way the consumer
decodes each page itself: decoding holds the GIL, and in the reading thread it only made
the consumer's statements wait to win the GIL back.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from contextlib import closing
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
    pages = _row_pages(app, after, up_to, page)
    if not app.index.reads_in_process:
        pages = read_ahead(pages, name="log-pages")
    return _decoded(pages, decode)


def _row_pages(
    app: DecisionLedger, after: int, up_to: int | None, page: int
) -> Generator[list[LoggedEvent], None, None]:
    position = after
    while True:
        rows = app.index.logged_events_between(position, up_to, page)
        if not rows:
            return
        yield rows
        position = rows[-1].position


def _decoded(
    pages: Generator[list[LoggedEvent], None, None], decode: Callable[[LoggedEvent], Any]
) -> Generator[LogPage, None, None]:
    with closing(pages):  # a reading thread stops with its consumer
        for rows in pages:
            yield LogPage([(decode(row), row) for row in rows])
