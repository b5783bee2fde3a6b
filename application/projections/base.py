"""What every ledger projection shares: batched, exactly-once application of events.

The library's runner hands events over one at a time; rebuilds hand them over a page
at a time. Either way, the rows an event produces and the tracking position that says
it was applied are written in one transaction, so each event is applied exactly once,
across restarts too.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, ClassVar

from eventsourcing.persistence import Tracking
from eventsourcing.projection import Projection

from application.election import Fence
from application.ports import EventPosition, LedgerIndex
from infrastructure.view_store import ViewCursor, ViewStore


class LedgerProjection(Projection[ViewStore]):
    #: Table names, each mapped to the `{name}` placeholder in `ddl`.
    table_names: ClassVar[tuple[str, ...]] = ()
    #: CREATE statements, dialect-neutral, with `{table}` placeholders.
    ddl: ClassVar[tuple[str, ...]] = ()

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

    def process_event(self, domain_event: Any, tracking: Tracking) -> None:
        """The library runner's entry point: one event, one transaction."""
        self.process_batch([(domain_event, tracking)])

    def process_batch(self, batch: Sequence[tuple[Any, Tracking]]) -> None:
        if not batch:
            return
        first, last = batch[0][1].notification_id, batch[-1][1].notification_id
        known = {row.position: row for row in self.index.events_between(first - 1, last, len(batch) * 2 + 10)}
        with self.view.cursor(commit=True) as cursor:
            if self.fence is not None:
                self.fence.check(cursor)
            self.begin_batch(cursor)
            self.prepare_batch(cursor, batch)
            for domain_event, tracking in batch:
                position = known.get(tracking.notification_id)
                if position is None:
                    raise LookupError(f"no index row for position {tracking.notification_id}")
                self.apply(cursor, domain_event, position)
            self.end_batch(cursor)
            self.view.track(cursor, batch[-1][1])

    def begin_batch(self, cursor: ViewCursor) -> None:
        """Prepare per-batch caches."""

    def prepare_batch(self, cursor: ViewCursor, batch: Sequence[tuple[Any, Tracking]]) -> None:
        """Read ahead what the batch will need, in few queries."""

    def end_batch(self, cursor: ViewCursor) -> None:
        """Flush per-batch caches."""

    @abstractmethod
    def apply(self, cursor: ViewCursor, domain_event: Any, position: EventPosition) -> None:
        """Write what one event changes. Events a view ignores still advance tracking."""


def utc_text(moment: datetime) -> str:
    """Fixed-width UTC text: comparing texts compares instants."""
    return moment.astimezone(UTC).isoformat(timespec="microseconds")
