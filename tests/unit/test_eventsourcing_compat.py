"""The pinned eventsourcing library still has every private internal that
infrastructure/eventsourcing_compat.py relies on. If an upgrade changes one, this fails
here, by name, instead of a projection silently stalling in production."""

from __future__ import annotations

import inspect

from eventsourcing.persistence import ListenNotifySubscription
from eventsourcing.postgres import PostgresApplicationRecorder
from eventsourcing.projection import BaseProjectionRunner

from infrastructure.eventsourcing_compat import BatchingProjectionRunner, unretried_insert_events


def test_the_runner_loop_is_a_static_method_with_the_arguments_we_override() -> None:
    loop = inspect.getattr_static(BaseProjectionRunner, "_process_events_loop")
    assert isinstance(loop, staticmethod)
    assert list(inspect.signature(loop.__func__).parameters) == [
        "subscription",
        "projection",
        "is_stopping",
        "runner",
    ]
    # The runner's thread is started on that very attribute, and errors are handed back on _thread_error.
    runner_source = inspect.getsource(BaseProjectionRunner)
    assert "target=self._process_events_loop" in runner_source
    assert "self._thread_error" in runner_source
    assert isinstance(inspect.getattr_static(BatchingProjectionRunner, "_process_events_loop"), staticmethod)


def test_the_subscription_buffer_has_the_fields_we_peek_at() -> None:
    source = inspect.getsource(ListenNotifySubscription)
    for field in ("self._notifications:", "self._notifications_index:", "self._notifications_queue:"):
        assert field in source, field


def test_the_postgres_insert_is_a_retry_wrapper_around_the_plain_insert() -> None:
    wrapped = unretried_insert_events()
    assert callable(wrapped)
    assert wrapped is not PostgresApplicationRecorder.insert_events
    assert list(inspect.signature(wrapped).parameters)[:2] == ["self", "stored_events"]


def test_the_postgres_reads_we_retry_ourselves_are_retry_wrappers() -> None:
    from eventsourcing.postgres import PostgresTrackingRecorder

    from infrastructure.eventsourcing_compat import unretried

    for method in (
        PostgresApplicationRecorder.select_events,
        PostgresApplicationRecorder.select_notifications,
        PostgresApplicationRecorder.max_notification_id,
        PostgresTrackingRecorder.max_tracking_id,
    ):
        plain = unretried(method)
        assert plain is not method and next(iter(inspect.signature(plain).parameters)) == "self"


def test_the_pipelined_insert_calls_the_hooks_our_own_insert_calls() -> None:
    source = inspect.getsource(PostgresApplicationRecorder.insert_events)
    for hook in (
        "self._insert_events(",
        "self._insert_stored_events(",
        "self._fetch_ids_after_insert_events(",
    ):
        assert hook in source, hook
