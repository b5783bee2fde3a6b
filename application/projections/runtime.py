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
from dataclasses import dataclass
from typing import Any

from eventsourcing.persistence import Tracking
from eventsourcing.projection import BaseProjectionRunner

from application.ledger import DecisionLedger
from application.projections.audit_log import AuditLogProjection, audit_log_as_of
from application.projections.base import LedgerProjection
from application.projections.run_views import RunViewsProjection, run_views_as_of
from infrastructure.views import ViewStore, open_view_store

log = logging.getLogger(__name__)

Progress = Callable[[int], None]


@dataclass(frozen=True)
class ProjectionKind:
    name: str
    table_names: tuple[str, ...]
    build: Callable[[ViewStore, DecisionLedger], LedgerProjection]
    rows_as_of: Callable[[dict[str, str], int], dict[str, tuple[str, tuple[Any, ...]]]]


PROJECTION_KINDS: dict[str, ProjectionKind] = {
    kind.name: kind
    for kind in (
        ProjectionKind(
            "runs",
            RunViewsProjection.table_names,
            lambda view, app: RunViewsProjection(view, app.index),
            run_views_as_of,
        ),
        ProjectionKind(
            "audit",
            AuditLogProjection.table_names,
            lambda view, app: AuditLogProjection(view, app.index, app.mapper),
            audit_log_as_of,
        ),
    )
}


@dataclass(frozen=True)
class ProjectionStatus:
    name: str
    generation: int | None
    position: int
    head: int
    lag: int


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
        page: int = 1000,
        on_progress: Progress | None = None,
    ) -> int:
        """Apply the events after the projection's position, a page per transaction,
        streaming the log so memory stays flat. Returns the new position."""
        position = projection.view.position()
        while True:
            notifications = self.app.recorder.select_notifications(
                start=position, limit=page, stop=up_to, inclusive_of_start=False
            )
            if not notifications:
                return position
            batch = [
                (self.app.mapper.to_domain_event(notification), Tracking(self.app.name, notification.id))
                for notification in notifications
            ]
            projection.process_batch(batch)
            position = notifications[-1].id
            if on_progress:
                on_progress(len(notifications))

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
            statuses.append(
                ProjectionStatus(name, live, position, head, self.app.index.count_after(position))
            )
        return statuses

    # --- Blue/green rebuild and verification -----------------------------------------------

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
        if _normalised(live_row) != _normalised(rebuilt_row):
            row = live_row or rebuilt_row or {}
            key = ", ".join(str(value) for value in list(row.values())[:2])
            differences.append(Difference(table, key, live_row, rebuilt_row))
            if len(differences) >= limit:
                break
    return differences


def _normalised(row: dict[str, Any] | None) -> dict[str, Any] | None:
    return None if row is None else {key: value for key, value in row.items()}


class BatchingProjectionRunner(BaseProjectionRunner[DecisionLedger]):
    """The library's projection runner, applying what its subscription has already
    fetched (up to a page) in one transaction, instead of one event per transaction.

    It peeks at the buffer of the library's ListenNotifySubscription (eventsourcing
    9.5.x, pinned below 9.6) to know whether another event is ready without blocking."""

    MAX_BATCH = 500

    @staticmethod
    def _process_events_loop(
        subscription: Any,
        projection: Any,
        is_stopping: threading.Event,
        runner: Any,
    ) -> None:
        batch: list[tuple[Any, Tracking]] = []
        try:
            for domain_event, tracking in subscription:
                batch.append((domain_event, tracking))
                if len(batch) >= BatchingProjectionRunner.MAX_BATCH or not _has_buffered(subscription):
                    projection.process_batch(batch)
                    batch = []
        except BaseException as error:
            live_runner = runner()
            if live_runner is not None:
                live_runner._thread_error = error
            else:
                log.error("projection runner failed after it was dropped", exc_info=error)
        finally:
            is_stopping.set()


def _has_buffered(subscription: Any) -> bool:
    """Whether the subscription can yield another event without waiting."""
    inner = subscription.subscription
    return inner._notifications_index < len(inner._notifications) or not inner._notifications_queue.empty()


class ProjectionWorker:
    """Follows the log with the library's projection runners, one per projection, and
    restarts a runner when its live generation changes or it fails."""

    def __init__(self, projections: Projections, env: dict[str, str], *, check_interval: float = 0.5):
        self.projections = projections
        self.env = env
        self.check_interval = check_interval
        self._runners: dict[str, tuple[int, BaseProjectionRunner[DecisionLedger]]] = {}
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._supervise, name="projection-worker", daemon=True)

    def start(self) -> None:
        self._ensure_runners()
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join()
        for name in list(self._runners):
            self._stop_runner(name)

    def run_forever(self) -> None:
        self.start()
        try:
            while not self._stopping.wait(1.0):
                pass
        finally:
            self.stop()

    def _supervise(self) -> None:
        while not self._stopping.wait(self.check_interval):
            try:
                self._ensure_runners()
            except Exception:  # keep supervising; the next round retries
                log.exception("projection worker could not check its runners")

    def _ensure_runners(self) -> None:
        for name in self.projections.names:
            generation = self.projections.live_generation(name, fresh=True)
            current = self._runners.get(name)
            if current is not None:
                running_generation, runner = current
                if running_generation == generation and not runner.is_interrupted.is_set():
                    continue
                if runner.is_interrupted.is_set():
                    log.warning("projection %s stopped; restarting it", name)
                self._stop_runner(name)
            store = self.projections.store(name, generation)
            projection = self.projections.kind(name).build(store, self.projections.app)
            runner = BatchingProjectionRunner(
                projection=projection,
                application_class=DecisionLedger,
                tracking_recorder=store,
                topics=(),
                env=self.env,
            )
            runner.__enter__()
            self._runners[name] = (generation, runner)

    def _stop_runner(self, name: str) -> None:
        _, runner = self._runners.pop(name)
        try:
            runner.__exit__(None, None, None)
        except Exception:
            log.exception("projection %s failed", name)
