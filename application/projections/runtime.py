"""Running, rebuilding, verifying and waiting for the projections.

Reads are served from each projection's *live* generation. A rebuild fills a fresh
generation from position 0 while the live one keeps serving, then flips the live
pointer in one transaction (blue/green) and drops the old tables. Verify builds a
scratch generation up to the live one's position and compares the two, row by row,
as of that position.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from contextlib import closing
from dataclasses import dataclass
from typing import Any

from application.gc_pauses import fewer_collections
from application.ledger import DecisionLedger
from application.ports import LoggedEvent
from application.projections.audit_log import AuditLogProjection, audit_log_as_of
from application.projections.base import LedgerProjection
from application.projections.log_pages import log_pages
from application.projections.outbox import OutboxProjection, outbox_as_of
from application.projections.run_tables import run_views_as_of
from application.projections.run_views import RunViewsProjection
from infrastructure.view_store import ViewStore, open_view_store

log = logging.getLogger(__name__)

Progress = Callable[[int], None]

#: Events a catch-up, a rebuild or a verify applies per transaction. The page is folded
#: while its transaction is open and quiet: PostgreSQL ends a session idle in a transaction
#: for POSTGRES_IDLE_IN_TRANSACTION_SESSION_TIMEOUT (5 s), which a much bigger page can
#: reach on a starved machine (seen with 2,000 at a load average of 20 on 2 cores).
CATCH_UP_PAGE = 1000


@dataclass(frozen=True)
class ProjectionKind:
    name: str
    projection: type[LedgerProjection]
    rows_as_of: Callable[[dict[str, str], int], dict[str, tuple[str, tuple[Any, ...]]]]

    @property
    def table_names(self) -> tuple[str, ...]:
        return self.projection.table_names

    def build(self, view: ViewStore, app: DecisionLedger) -> LedgerProjection:
        return self.projection(view, app.index)

    def decoder(self, app: DecisionLedger) -> Callable[[LoggedEvent], Any]:
        """How the projection's pages decode the log's events."""
        return self.projection.decoder(app.mapper)


PROJECTION_KINDS: dict[str, ProjectionKind] = {
    kind.name: kind
    for kind in (
        ProjectionKind("runs", RunViewsProjection, run_views_as_of),
        ProjectionKind("audit", AuditLogProjection, audit_log_as_of),
        ProjectionKind("outbox", OutboxProjection, outbox_as_of),
    )
}


@dataclass(frozen=True)
class ProjectionFailure:
    """A projection stopped on an event it could not apply: it stays at `position` (the
    last one it committed) until the cause is fixed; reads and closes say why."""

    name: str
    position: int
    error: str
    failures: int

    def describe(self) -> str:
        return f"projection {self.name!r} is stopped at position {self.position}: {self.error}"


@dataclass(frozen=True)
class ProjectionStatus:
    name: str
    generation: int | None
    position: int
    head: int
    lag: int
    failure: ProjectionFailure | None = None


@dataclass(frozen=True)
class Difference:
    table: str
    key: str
    live: dict[str, Any] | None
    rebuilt: dict[str, Any] | None


class Projections:
    """The projections of one ledger database."""

    #: How long a reader trusts its idea of the live generation (seconds).
    GENERATION_TTL = 0.5

    def __init__(self, app: DecisionLedger) -> None:
        self.app = app
        self._stores: dict[tuple[str, int], ViewStore] = {}
        self._live: dict[str, tuple[float, int]] = {}
        self._lock = threading.Lock()
        #: The projections that stopped on an event they could not apply, by name.
        self.failures: dict[str, ProjectionFailure] = {}

    @property
    def names(self) -> list[str]:
        return list(PROJECTION_KINDS)

    def kind(self, name: str) -> ProjectionKind:
        try:
            return PROJECTION_KINDS[name]
        except KeyError:
            raise KeyError(
                f"no projection named {name!r}; choose from {', '.join(PROJECTION_KINDS)}"
            ) from None

    def store(self, name: str, generation: int) -> ViewStore:
        with self._lock:
            key = (name, generation)
            if key not in self._stores:
                self._stores[key] = open_view_store(
                    self.app.factory.datastore,  # type: ignore[attr-defined]
                    projection=name,
                    generation=generation,
                    upstream=self.app.name,
                )
            return self._stores[key]

    def _registry(self, name: str) -> ViewStore:
        return self.store(name, 0)

    def live_generation(self, name: str, *, fresh: bool = False) -> int:
        """The generation reads come from; the first one is made on first use."""
        cached = self._live.get(name)
        if cached and not fresh and time.monotonic() - cached[0] < self.GENERATION_TTL:
            return cached[1]
        live, _ = self._registry(name).generations()
        if not live:
            self._registry(name).claim_generation(make_live=True)
            live, _ = self._registry(name).generations()
            assert live
            self.kind(name).build(self.store(name, live), self.app)
        self._live[name] = (time.monotonic(), live)
        return live

    def live_store(self, name: str) -> ViewStore:
        return self.store(name, self.live_generation(name))

    def live_tables(self, name: str) -> dict[str, str]:
        store = self.live_store(name)
        return store.tables(self.kind(name).table_names)

    # --- Following the log ------------------------------------------------------------

    def catch_up(
        self,
        projection: LedgerProjection,
        *,
        up_to: int | None = None,
        page: int = CATCH_UP_PAGE,
        on_progress: Progress | None = None,
    ) -> int:
        """Apply the events after the projection's position, a page per transaction (from
        a database server each page is read while the one before is applied: log_pages.py),
        so memory stays flat. Returns the new position."""
        position = projection.view.position()
        # Closed on the way out, even by an error: a reading thread stops first.
        with (
            fewer_collections(),
            closing(
                log_pages(
                    self.app,
                    after=position,
                    up_to=up_to,
                    page=page,
                    decode=projection.decoder(self.app.mapper),
                )
            ) as pages,
        ):
            for log_page in pages:
                projection.apply_page(log_page)
                position = log_page.events[-1][1].position
                if on_progress:
                    on_progress(len(log_page.events))
        return position

    def wait_for(self, position: int, timeout: float, names: Iterable[str] | None = None) -> bool:
        """Block until every named projection has applied `position`."""
        deadline = time.monotonic() + timeout
        pending = list(names or self.names)
        delay = 0.002
        while pending:
            pending = [name for name in pending if self.live_store(name).position() < position]
            if not pending:
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(delay)
            delay = min(delay * 2, 0.05)
        return True

    def status(self) -> list[ProjectionStatus]:
        head = self.app.index.head_position()
        statuses = []
        for name in self.names:
            live, _ = self._registry(name).generations()
            position = self.store(name, live).position() if live else 0
            lag = self.app.index.count_after(position)
            statuses.append(ProjectionStatus(name, live, position, head, lag, self.failures.get(name)))
        return statuses

    # --- Blue/green rebuild and verification -----------------------------------------------

    def record_failure(self, name: str, error: BaseException) -> ProjectionFailure:
        previous = self.failures.get(name)
        failure = ProjectionFailure(
            name,
            self.live_store(name).position(),
            f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}".rstrip(": "),
            (previous.failures if previous else 0) + 1,
        )
        self.failures[name] = failure
        return failure

    def clear_failure_if_moved_on(self, name: str) -> None:
        """A projection that got past the position it failed at is healthy again."""
        failure = self.failures.get(name)
        if failure is not None and self.live_store(name).position() > failure.position:
            del self.failures[name]

    def failure_blocking(self, position: int) -> ProjectionFailure | None:
        """A failure that keeps some projection from reaching `position`, if any."""
        for failure in self.failures.values():
            if failure.position < position:
                return failure
        return None

    def rebuild(self, name: str, *, on_progress: Progress | None = None, grace: float = 2.0) -> int:
        """Build a fresh generation from position 0, swap it in, drop the old one."""
        kind = self.kind(name)
        generation = self._registry(name).claim_generation(make_live=False)
        store = self.store(name, generation)
        projection = kind.build(store, self.app)
        self.catch_up(projection, on_progress=on_progress)
        # Close the last gap right before the swap, so the new generation starts current.
        self.catch_up(projection, on_progress=on_progress)
        replaced = store.make_live()
        self._live.pop(name, None)
        if replaced and replaced != generation:
            time.sleep(grace)  # let readers and the old runner move over
            self.store(name, replaced).drop_generation(kind.table_names)
        return generation

    def verify(
        self, name: str, *, on_progress: Progress | None = None, limit: int = 20
    ) -> tuple[int, list[Difference]]:
        """Rebuild into scratch tables and compare them with the live view, row by row,
        as of the live view's position. Returns (position, differences)."""
        kind = self.kind(name)
        live_store = self.live_store(name)
        position = live_store.position()
        generation = self._registry(name).claim_generation(make_live=False)
        scratch = self.store(name, generation)
        try:
            self.catch_up(kind.build(scratch, self.app), up_to=position, on_progress=on_progress)
            live_queries = kind.rows_as_of(live_store.tables(kind.table_names), position)
            scratch_queries = kind.rows_as_of(scratch.tables(kind.table_names), position)
            differences: list[Difference] = []
            for table, (statement, params) in live_queries.items():
                live_rows = live_store.fetchall(statement, params)
                scratch_statement, scratch_params = scratch_queries[table]
                rebuilt_rows = scratch.fetchall(scratch_statement, scratch_params)
                differences += _compare(table, live_rows, rebuilt_rows, limit - len(differences))
                if len(differences) >= limit:
                    break
            return position, differences
        finally:
            scratch.drop_generation(kind.table_names)
            with self._lock:
                self._stores.pop((name, generation), None)


def _compare(
    table: str, live: Sequence[dict[str, Any]], rebuilt: Sequence[dict[str, Any]], limit: int
) -> list[Difference]:
    differences = []
    for index in range(max(len(live), len(rebuilt))):
        live_row = live[index] if index < len(live) else None
        rebuilt_row = rebuilt[index] if index < len(rebuilt) else None
        if live_row != rebuilt_row:
            row = live_row or rebuilt_row or {}
            key = ", ".join(str(value) for value in list(row.values())[:2])
            differences.append(Difference(table, key, live_row, rebuilt_row))
            if len(differences) >= limit:
                break
    return differences
