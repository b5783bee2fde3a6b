"""Everything we take from the eventsourcing library's private internals, in one place.

The library is pinned below 9.6; tests/unit/test_eventsourcing_compat.py fails loudly
if the pinned version changes any of what this module relies on:

- `BaseProjectionRunner._process_events_loop(subscription, projection, is_stopping, runner)`,
  a static method run in the runner's thread, and the runner's `_thread_error`;
- the buffer of a ListenNotifySubscription (`_notifications`, `_notifications_index`,
  `_notifications_queue`), read to know whether another event is ready;
- the undecorated methods of the PostgreSQL recorders (`__wrapped__` of their retry), which
  infrastructure/postgres_outages.py retries within the ledger's own bounds;
- the hooks of the PostgreSQL recorder's pipelined insert (`_insert_events`,
  `_insert_stored_events`, `_fetch_ids_after_insert_events`), which
  infrastructure/postgres_store.py calls from an insert of its own.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from eventsourcing.persistence import Tracking
from eventsourcing.postgres import PostgresApplicationRecorder
from eventsourcing.projection import BaseProjectionRunner

log = logging.getLogger(__name__)


class BatchProjection(Protocol):
    def process_batch(self, batch: Sequence[tuple[Any, Tracking]]) -> None: ...


class BatchingProjectionRunner(BaseProjectionRunner[Any]):
    """The library's projection runner, applying what its subscription has already
    fetched (up to MAX_BATCH) in one transaction, instead of one event per transaction."""

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
                if len(batch) >= BatchingProjectionRunner.MAX_BATCH or not subscription_has_buffered(
                    subscription
                ):
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


def subscription_has_buffered(subscription: Any) -> bool:
    """Whether the runner's subscription can yield another event without waiting."""
    inner = subscription.subscription
    return inner._notifications_index < len(inner._notifications) or not inner._notifications_queue.empty()


def unretried_insert_events() -> Callable[..., Sequence[int] | None]:
    """The PostgreSQL recorder's insert_events without the library's own retry decorator."""
    wrapped: Callable[..., Sequence[int] | None] = PostgresApplicationRecorder.insert_events.__wrapped__
    return wrapped


def unretried(method: Any) -> Callable[..., Any]:
    """A library method without its own retry decorator (ten attempts, each waiting)."""
    wrapped: Callable[..., Any] = method.__wrapped__
    return wrapped
