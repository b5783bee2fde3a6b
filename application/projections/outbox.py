"""The outbox: which actions still have to be carried out, and from when.

An action's Requested event is the outbox row: the intent is stored once, with the
decision, and this projection follows the log (with tracking, so it resumes where it
stopped) to keep one current row per action still awaiting delivery:

- new:       requested or redelivered; due `retry_schedule_s[0]` after `due_at`
- retry:     its last attempt failed; due at `due_at` (the jittered schedule step)
- in_flight: an attempt started; presumed lost `timeout_s` after `due_at`

Committed, failed and waived actions leave the queue. Rows are versioned
(valid_from / valid_to positions) like the run views, so verify can compare a rebuild
as of a position. The row only says when to look: the Action aggregate decides.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, ClassVar

from application.ports import LoggedEvent
from application.projections.base import LedgerProjection, utc_text
from domain.action import Action
from infrastructure.view_store import ViewCursor, ViewStore


class OutboxProjection(LedgerProjection):
    name = "outbox"
    table_names: ClassVar = ("queue",)
    ddl: ClassVar = (
        "CREATE TABLE IF NOT EXISTS {queue} ("
        " action_id TEXT NOT NULL, valid_from BIGINT NOT NULL, valid_to BIGINT,"
        " run_id TEXT NOT NULL, kind TEXT NOT NULL, state TEXT NOT NULL, due_at TEXT NOT NULL,"
        " PRIMARY KEY (action_id, valid_from))",
        "CREATE INDEX IF NOT EXISTS {queue_due} ON {queue} (kind, state, due_at) WHERE valid_to IS NULL",
    )

    def __init__(self, view: ViewStore, index: Any) -> None:
        self.index_names = {"queue_due": f'"{view.projection}_g{view.generation}_queue_due"'}
        super().__init__(view, index)

    def _ddl_names(self) -> dict[str, str]:
        return {**self.t, **self.index_names}

    def apply(self, cursor: ViewCursor, domain_event: Any, position: LoggedEvent) -> None:
        if not isinstance(domain_event, Action.Event):
            return
        action_id = str(domain_event.originator_id)
        if isinstance(domain_event, Action.Requested):
            self._enter(cursor, action_id, position, domain_event.kind, "new", domain_event.timestamp)
        elif isinstance(domain_event, Action.RedeliveryRequested):
            kind = self._kind_of(cursor, action_id)
            self._enter(cursor, action_id, position, kind, "new", domain_event.requested_at)
        elif isinstance(domain_event, Action.DeliveryStarted):
            self._move(cursor, action_id, position, "in_flight", domain_event.started_at)
        elif isinstance(domain_event, Action.DeliveryFailed):
            self._move(cursor, action_id, position, "retry", domain_event.next_delivery_at)
        elif isinstance(domain_event, (Action.Committed, Action.Failed, Action.Waived)):
            self._leave(cursor, action_id, position)

    def _enter(
        self,
        cursor: ViewCursor,
        action_id: str,
        position: LoggedEvent,
        kind: str,
        state: str,
        due: datetime,
    ) -> None:
        cursor.execute(
            f"INSERT INTO {self.t['queue']} VALUES (?, ?, NULL, ?, ?, ?, ?)",
            (action_id, position.position, position.run_id, kind, state, utc_text(due)),
        )

    def _kind_of(self, cursor: ViewCursor, action_id: str) -> str:
        """The kind an action was requested with (from its first row: it left the queue since)."""
        row = cursor.execute(
            f"SELECT kind FROM {self.t['queue']} WHERE action_id = ? ORDER BY valid_from LIMIT 1",
            (action_id,),
        ).fetchone()
        assert row is not None, action_id
        return str(row["kind"])

    def _leave(self, cursor: ViewCursor, action_id: str, position: LoggedEvent) -> dict[str, Any] | None:
        current = cursor.execute(
            f"SELECT * FROM {self.t['queue']} WHERE action_id = ? AND valid_to IS NULL", (action_id,)
        ).fetchone()
        if current is not None:
            cursor.execute(
                f"UPDATE {self.t['queue']} SET valid_to = ? WHERE action_id = ? AND valid_to IS NULL",
                (position.position, action_id),
            )
        return current

    def _move(
        self, cursor: ViewCursor, action_id: str, position: LoggedEvent, state: str, due: datetime
    ) -> None:
        current = self._leave(cursor, action_id, position)
        assert current is not None, action_id
        self._enter(cursor, action_id, position, current["kind"], state, due)


def outbox_as_of(t: dict[str, str], position: int) -> dict[str, tuple[str, tuple[Any, ...]]]:
    """The queue as it stood at `position`: what verify compares."""
    return {
        "queue": (
            "SELECT action_id, valid_from,"
            " CASE WHEN valid_to IS NOT NULL AND valid_to <= ? THEN valid_to END AS valid_to,"
            f" run_id, kind, state, due_at FROM {t['queue']} WHERE valid_from <= ?"
            " ORDER BY action_id, valid_from",
            (position, position),
        )
    }


def due_actions(
    store: ViewStore,
    queue_table: str,
    kinds: Sequence[str],
    now: datetime,
    *,
    first_wait_s: float,
    in_flight_timeout_s: float,
    limit: int,
) -> list[tuple[str, int]]:
    """(action ID, position of its queue row) of the actions of these kinds whose next
    attempt is due at `now`, oldest first."""
    if not kinds:
        return []
    placeholders = ", ".join("?" for _ in kinds)
    rows = store.fetchall(
        f"SELECT action_id, valid_from FROM {queue_table} WHERE valid_to IS NULL AND kind IN ({placeholders})"
        " AND ((state = 'new' AND due_at <= ?) OR (state = 'retry' AND due_at <= ?)"
        " OR (state = 'in_flight' AND due_at <= ?)) ORDER BY due_at LIMIT ?",
        (
            *kinds,
            utc_text(now - timedelta(seconds=first_wait_s)),
            utc_text(now),
            utc_text(now - timedelta(seconds=in_flight_timeout_s)),
            limit,
        ),
    )
    return [(str(row["action_id"]), int(row["valid_from"])) for row in rows]


def queue_length(store: ViewStore, queue_table: str) -> int:
    rows = store.fetchall(f"SELECT COUNT(*) AS n FROM {queue_table} WHERE valid_to IS NULL")
    return int(rows[0]["n"])
