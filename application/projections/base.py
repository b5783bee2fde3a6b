"""What every ledger projection shares: exactly-once application of events, a page at a time.

The library's runner hands over the events it has fetched; a rebuild, a verify or a
catch-up reads the log a page of thousands of events at a time (log_pages.py). Either
way a page is applied in one transaction: the projection reads ahead what the page will
touch (begin_batch), folds its events in memory (apply), then writes the page's rows
with a few set-based statements (end_batch), together with the tracking position that
says the page was applied. So each event is applied exactly once, across restarts too,
and a page may commit without waiting for the disk: lost in a crash, it is applied again.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar

from eventsourcing.persistence import Mapper, Tracking
from eventsourcing.projection import Projection

from application.election import Fence
from application.ports import LedgerIndex, LoggedEvent
from application.stored_form import parse_stored_state
from infrastructure.view_store import ViewCursor, ViewStore


@dataclass(frozen=True)
class LogPage:
    """Events of the log, in order: each as its projection folds it (a domain event, or
    its stored state parsed), with its stored form and index row."""

    events: list[tuple[Any, LoggedEvent]]


def stored_state_of(logged: LoggedEvent) -> Any:
    """An event's stored state, parsed (a dict of the event's fields as the library's
    transcoder wrote them: a datetime is {"_type_": "datetime_iso", "_data_": text})."""
    return parse_stored_state(logged.state)


class LedgerProjection(Projection[ViewStore]):
    #: Table names, each mapped to the `{name}` placeholder in `ddl`.
    table_names: ClassVar[tuple[str, ...]] = ()
    #: CREATE statements, dialect-neutral, with `{table}` placeholders.
    ddl: ClassVar[tuple[str, ...]] = ()
    #: What `apply` folds: each event decoded by the application's mapper (a domain
    #: event), or, when True, its stored state parsed (stored_state_of): quicker for a
    #: view that reads a few fields of each event.
    folds_stored_state: ClassVar[bool] = False

    def __init__(self, view: ViewStore, index: LedgerIndex) -> None:
        super().__init__(view)
        self.index = index
        #: Checked first in each write transaction when this projection follows the log as
        #: an elected leader (rebuilds and verifies write tables of their own, unfenced).
        self.fence: Fence | None = None
        self.t = view.tables(self.table_names)
        view.create_tables(self.ddl, self._ddl_names())

    def _ddl_names(self) -> dict[str, str]:
        """The names the DDL's placeholders stand for."""
        return self.t

    @classmethod
    def decoder(cls, mapper: Mapper[Any]) -> Callable[[LoggedEvent], Any]:
        """How this projection's pages decode a logged event (log_pages.py)."""
        if cls.folds_stored_state:
            return stored_state_of
        # A logged event has the fields the mapper decodes (a StoredEvent's).
        return mapper.to_domain_event  # type: ignore[return-value]

    def process_event(self, domain_event: Any, tracking: Tracking) -> None:
        """The library runner's entry point: one event, one transaction."""
        self.process_batch([(domain_event, tracking)])

    def process_batch(self, batch: Sequence[tuple[Any, Tracking]]) -> None:
        """The batching runner's entry point: the events it has fetched, as one page, each
        with its stored form and index row (read in one query)."""
        if not batch:
            return
        first, last = batch[0][1].notification_id, batch[-1][1].notification_id
        rows = self.index.logged_events_between(first - 1, last, last - first + 1)
        logged = {row.position: row for row in rows}
        events = []
        for domain_event, tracking in batch:
            row = logged.get(tracking.notification_id)
            if row is None:
                raise LookupError(f"no stored event at position {tracking.notification_id}")
            events.append((stored_state_of(row) if self.folds_stored_state else domain_event, row))
        self.apply_page(LogPage(events))

    def apply_page(self, page: LogPage) -> None:
        """Apply a page of events, its rows and its tracking position in one transaction."""
        if not page.events:
            return
        last = page.events[-1][1].position
        try:
            self.read_index(page)
            with self.view.page_cursor() as cursor:
                if self.fence is not None:
                    self.fence.check(cursor)
                self.begin_batch(cursor, page)
                for domain_event, logged in page.events:
                    self.apply(cursor, domain_event, logged)
                self.end_batch(cursor)
                self.view.track(cursor, Tracking(self.view.upstream, last))
        except BaseException:
            self.page_abandoned()
            raise
        self.page_committed(last)

    def read_index(self, page: LogPage) -> None:
        """Read from the ledger's index what the page needs, before its transaction opens
        (the index has connections of its own: one asked for inside the page's transaction
        could wait on a pool that transaction helps to exhaust)."""

    def begin_batch(self, cursor: ViewCursor, page: LogPage) -> None:
        """Read ahead, in a few queries, what the page's events will touch."""

    def end_batch(self, cursor: ViewCursor) -> None:
        """Write what the page's events changed, in a few statements."""

    def page_committed(self, position: int) -> None:
        """The page up to `position` is stored: what a projection keeps of it still holds."""

    def page_abandoned(self) -> None:
        """The page was not stored: forget what was kept of it and of the pages before."""

    @abstractmethod
    def apply(self, cursor: ViewCursor, domain_event: Any, position: LoggedEvent) -> None:
        """Fold one event (a domain event, or its parsed stored state: see
        `folds_stored_state`; `position` is its index row and stored form). Events a view
        ignores still advance tracking."""


def utc_text(moment: datetime) -> str:
    """Fixed-width UTC text: comparing texts compares instants."""
    if moment.tzinfo is not UTC:
        moment = moment.astimezone(UTC)
    return moment.isoformat(timespec="microseconds")


def stored_utc_text(stored: dict[str, str]) -> str:
    """utc_text of a datetime as the library's transcoder stored it, without parsing it
    when it is stored in UTC with microseconds (isoformat leaves out zero microseconds)."""
    text = stored["_data_"]
    if len(text) == 32 and text.endswith("+00:00"):
        return text
    return utc_text(datetime.fromisoformat(text))
