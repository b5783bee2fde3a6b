"""The run summary and the reconciliation view, kept in one projection so that they
always describe the same position.

Every table is temporal: a row holds over the position range [valid_from, valid_to),
or says at which positions an input was admitted and decided. An as-of read is an
index lookup, and a view can be compared with a rebuild as of any position.
The tables, and what reconciliation reads from them, are described in run_tables.py.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, ClassVar

from eventsourcing.dispatch import singledispatchmethod

from application.ports import EventPosition
from application.projections.base import LedgerProjection, utc_text
from application.projections.run_tables import RUN_VIEW_DDL, SUMMARY_COLUMNS, SUMMARY_COUNTERS
from domain.action import Action
from domain.decision import Decision
from domain.run import Run
from infrastructure.view_store import ViewCursor

#: SQLite caps bound parameters per statement; stay well under it.
_CHUNK = 500


class RunViewsProjection(LedgerProjection):
    name = "runs"
    table_names: ClassVar = ("summary", "inputs", "decisions", "actions")
    ddl: ClassVar = RUN_VIEW_DDL

    def __init__(self, view: Any, index: Any) -> None:
        # Index names are not schema-qualified: they live beside their table.
        self.index_names = {
            "summary_current": f'"{view.projection}_g{view.generation}_summary_current"',
            "summary_open_row": f'"{view.projection}_g{view.generation}_summary_open_row"',
            "actions_run": f'"{view.projection}_g{view.generation}_actions_run"',
        }
        self._current: dict[str, dict[str, Any]] = {}
        self._stored_open_row: dict[str, int] = {}
        self._finished_rows: list[list[Any]] = []
        # Input rows a batch reads and writes, and decision rows it inserts, flushed together.
        self._inputs: dict[tuple[str, str], dict[str, Any] | None] = {}
        self._input_writes: dict[tuple[str, str], str] = {}
        self._decision_rows: list[tuple[Any, ...]] = []
        super().__init__(view, index)

    def _ddl_names(self) -> dict[str, str]:
        return {**self.t, **self.index_names}

    # --- Batch plumbing ---------------------------------------------------------------

    def begin_batch(self, cursor: ViewCursor) -> None:
        # A run's summary rows within a batch are kept here and written at its end: each
        # but the last is closed by the next event of its run, without an UPDATE.
        self._current = {}
        self._stored_open_row = {}
        self._finished_rows = []

    def prepare_batch(self, cursor: ViewCursor, batch: Sequence[tuple[Any, Any]]) -> None:
        """Fetch, in a few queries, the input rows the batch's decisions will touch."""
        self._inputs = {}
        self._input_writes = {}
        self._decision_rows = []
        wanted: dict[str, list[str]] = {}
        for domain_event, _ in batch:
            if isinstance(domain_event, Decision.Recorded):
                wanted.setdefault(domain_event.run_id, []).append(domain_event.input_id)
        for run_id, input_ids in wanted.items():
            for input_id in input_ids:
                self._inputs[(run_id, input_id)] = None
            for start in range(0, len(input_ids), _CHUNK):
                chunk = input_ids[start : start + _CHUNK]
                rows = cursor.execute(
                    f"SELECT input_id, admitted_at, decided_at, decision_id FROM {self.t['inputs']}"
                    f" WHERE run_id = ? AND input_id IN ({', '.join('?' * len(chunk))})",
                    [run_id, *chunk],
                ).fetchall()
                for row in rows:
                    self._inputs[(run_id, row.pop("input_id"))] = row

    def _input_row(self, cursor: ViewCursor, key: tuple[str, str]) -> dict[str, Any] | None:
        if key not in self._inputs:
            self._inputs[key] = cursor.execute(
                f"SELECT admitted_at, decided_at, decision_id FROM {self.t['inputs']}"
                " WHERE run_id = ? AND input_id = ?",
                key,
            ).fetchone()
        return self._inputs[key]

    def _flush(self, cursor: ViewCursor) -> None:
        """Write the buffered input and decision rows."""
        inserts, updates = [], []
        for (run_id, input_id), kind in self._input_writes.items():
            row = self._inputs[(run_id, input_id)]
            assert row is not None
            values = (row["admitted_at"], row["decided_at"], row["decision_id"])
            if kind == "insert":
                inserts.append((run_id, input_id, *values))
            else:
                updates.append((*values, run_id, input_id))
        cursor.executemany(f"INSERT INTO {self.t['inputs']} VALUES (?, ?, ?, ?, ?)", inserts)
        cursor.executemany(
            f"UPDATE {self.t['inputs']} SET admitted_at = ?, decided_at = ?, decision_id = ?"
            " WHERE run_id = ? AND input_id = ?",
            updates,
        )
        cursor.executemany(
            f"INSERT INTO {self.t['decisions']} VALUES (?, ?, NULL, ?, ?, ?, ?, 0)", self._decision_rows
        )
        self._input_writes = {}
        self._decision_rows = []

    def end_batch(self, cursor: ViewCursor) -> None:
        self._flush(cursor)
        self._finished_rows += [
            self._row(summary) for summary in self._current.values() if "valid_from" in summary
        ]
        placeholders = ", ".join("?" * len(SUMMARY_COLUMNS))
        cursor.executemany(
            f"INSERT INTO {self.t['summary']} ({', '.join(SUMMARY_COLUMNS)}) VALUES ({placeholders})",
            self._finished_rows,
        )

    def apply(self, cursor: ViewCursor, domain_event: Any, position: EventPosition) -> None:
        summary = self._summary(cursor, position.run_id)
        if summary is not None:
            self._close_summary(cursor, summary, position.position)
        self.on_event(domain_event, cursor, summary, position)
        assert summary is not None or isinstance(domain_event, Run.Opened)
        summary = self._current[position.run_id]
        summary["event_count"] += 1
        summary["last_position"] = position.position
        summary["updated_at"] = utc_text(position.recorded_at)
        summary["valid_from"], summary["valid_to"] = position.position, None

    def _summary(self, cursor: ViewCursor, run_id: str) -> dict[str, Any] | None:
        if run_id not in self._current:
            row = cursor.execute(
                f"SELECT * FROM {self.t['summary']} WHERE run_id = ? AND valid_to IS NULL", (run_id,)
            ).fetchone()
            if row is None:
                return None
            row["outcome_counts"] = json.loads(row["outcome_counts"])
            self._stored_open_row[run_id] = row.pop("valid_from")
            self._current[run_id] = row
        return self._current[run_id]

    def _close_summary(self, cursor: ViewCursor, summary: dict[str, Any], position: int) -> None:
        """The run's summary so far held until this event: close it before the event changes it."""
        run_id = summary["run_id"]
        if "valid_from" in summary:
            self._finished_rows.append(self._row({**summary, "valid_to": position}))
        elif run_id in self._stored_open_row:
            cursor.execute(
                f"UPDATE {self.t['summary']} SET valid_to = ? WHERE run_id = ? AND valid_from = ?",
                (position, run_id, self._stored_open_row.pop(run_id)),
            )

    @staticmethod
    def _row(summary: dict[str, Any]) -> list[Any]:
        row = {**summary, "outcome_counts": json.dumps(summary["outcome_counts"], sort_keys=True)}
        return [row[column] for column in SUMMARY_COLUMNS]

    # --- Runs --------------------------------------------------------------------------

    @singledispatchmethod
    def on_event(self, domain_event: Any, cursor: ViewCursor, summary: Any, position: EventPosition) -> None:
        """Events this view does not need still count, and still advance tracking."""

    @on_event.register
    def _(self, domain_event: Run.Opened, cursor: ViewCursor, summary: Any, position: EventPosition) -> None:
        recorded_at = utc_text(position.recorded_at)
        self._current[domain_event.run_id] = {
            "run_id": domain_event.run_id,
            "attempt": domain_event.attempt,
            "status": "open",
            "lane": domain_event.lane,
            "allow_empty": int(domain_event.allow_empty),
            "basis_digest": "0" * 64,
            "outcome_counts": {},
            **dict.fromkeys(SUMMARY_COUNTERS, 0),
            "first_position": position.position,
            "last_position": position.position,
            "opened_at": recorded_at,
            "updated_at": recorded_at,
        }

    @on_event.register
    def _(
        self, domain_event: Run.BasisAdmitted, cursor: ViewCursor, summary: Any, position: EventPosition
    ) -> None:
        self._flush(cursor)
        self._inputs.clear()
        already_decided: set[str] = set()
        new_ids = domain_event.input_ids
        for start in range(0, len(new_ids), _CHUNK):
            chunk = new_ids[start : start + _CHUNK]
            rows = cursor.execute(
                f"SELECT input_id FROM {self.t['inputs']} WHERE run_id = ?"
                f" AND input_id IN ({', '.join('?' * len(chunk))})",
                [domain_event.run_id, *chunk],
            ).fetchall()
            already_decided.update(row["input_id"] for row in rows)
        cursor.executemany(
            f"UPDATE {self.t['inputs']} SET admitted_at = ? WHERE run_id = ? AND input_id = ?",
            [(position.position, domain_event.run_id, input_id) for input_id in already_decided],
        )
        cursor.executemany(
            f"INSERT INTO {self.t['inputs']} VALUES (?, ?, ?, NULL, NULL)",
            [
                (domain_event.run_id, input_id, position.position)
                for input_id in new_ids
                if input_id not in already_decided
            ],
        )
        summary["admitted_count"] = domain_event.admitted_total
        summary["basis_digest"] = domain_event.basis_digest
        summary["unexpected_count"] -= len(already_decided)
        summary["missing_count"] += len(new_ids) - len(already_decided)

    @on_event.register
    def _(self, domain_event: Run.Sealed, cursor: ViewCursor, summary: Any, position: EventPosition) -> None:
        summary["status"] = "sealed"

    @on_event.register
    def _(
        self, domain_event: Run.Committed, cursor: ViewCursor, summary: Any, position: EventPosition
    ) -> None:
        summary["status"] = "committed"

    @on_event.register
    def _(
        self, domain_event: Run.Rejected, cursor: ViewCursor, summary: Any, position: EventPosition
    ) -> None:
        summary["status"] = "rejected"

    @on_event.register
    def _(
        self, domain_event: Run.Reopened, cursor: ViewCursor, summary: Any, position: EventPosition
    ) -> None:
        summary["status"] = "open"
        summary["attempt"] = domain_event.attempt

    # --- Decisions -------------------------------------------------------------------

    @on_event.register
    def _(
        self, domain_event: Decision.Recorded, cursor: ViewCursor, summary: Any, position: EventPosition
    ) -> None:
        decision_id = str(domain_event.originator_id)
        key = (domain_event.run_id, domain_event.input_id)
        row = self._input_row(cursor, key)
        if row is None:
            row = {"admitted_at": None, "decided_at": position.position, "decision_id": decision_id}
            self._input_writes[key] = "insert"
            summary["unexpected_count"] += 1
        else:
            row.update(decided_at=position.position, decision_id=decision_id)
            self._input_writes.setdefault(key, "update")
            summary["missing_count"] -= 1
        self._inputs[key] = row
        self._decision_rows.append(
            (
                decision_id,
                position.position,
                domain_event.run_id,
                domain_event.input_id,
                domain_event.outcome,
                utc_text(domain_event.timestamp),
            )
        )
        summary["decision_count"] += 1
        _count(summary["outcome_counts"], domain_event.outcome, +1)

    @on_event.register
    def _(
        self, domain_event: Decision.Corrected, cursor: ViewCursor, summary: Any, position: EventPosition
    ) -> None:
        self._flush(cursor)
        decision_id = str(domain_event.originator_id)
        current = cursor.execute(
            f"SELECT * FROM {self.t['decisions']} WHERE decision_id = ? AND valid_to IS NULL",
            (decision_id,),
        ).fetchone()
        assert current is not None, decision_id
        # Newer knowledge wins, and no correction takes effect in the future: the
        # corrected outcome is the one in force from now on.
        if current["corrections"] == 0:
            summary["corrected_count"] += 1
        if domain_event.outcome != current["outcome"]:
            _count(summary["outcome_counts"], current["outcome"], -1)
            _count(summary["outcome_counts"], domain_event.outcome, +1)
        cursor.execute(
            f"UPDATE {self.t['decisions']} SET valid_to = ? WHERE decision_id = ? AND valid_to IS NULL",
            (position.position, decision_id),
        )
        cursor.execute(
            f"INSERT INTO {self.t['decisions']} VALUES (?, ?, NULL, ?, ?, ?, ?, ?)",
            (
                decision_id,
                position.position,
                current["run_id"],
                current["input_id"],
                domain_event.outcome,
                utc_text(domain_event.effective_at),
                current["corrections"] + 1,
            ),
        )

    # --- Actions ----------------------------------------------------------------------

    @on_event.register
    def _(
        self, domain_event: Action.Requested, cursor: ViewCursor, summary: Any, position: EventPosition
    ) -> None:
        cursor.execute(
            f"INSERT INTO {self.t['actions']} VALUES (?, ?, NULL, ?, ?, ?, 'requested')",
            (
                str(domain_event.originator_id),
                position.position,
                domain_event.run_id,
                domain_event.input_id,
                domain_event.kind,
            ),
        )
        summary["actions_requested"] += 1
        summary["actions_pending"] += 1

    @on_event.register
    def _(
        self, domain_event: Action.Committed, cursor: ViewCursor, summary: Any, position: EventPosition
    ) -> None:
        previous = self._move_action(cursor, domain_event, position, "committed")
        summary["actions_committed"] += 1
        summary["actions_pending" if previous == "requested" else "actions_failed"] -= 1

    @on_event.register
    def _(
        self, domain_event: Action.Failed, cursor: ViewCursor, summary: Any, position: EventPosition
    ) -> None:
        previous = self._move_action(cursor, domain_event, position, "failed")
        if previous == "requested":
            summary["actions_pending"] -= 1
            summary["actions_failed"] += 1
        if getattr(domain_event, "delivery", None) is not None:  # older events lack the field
            # The dispatcher's last attempt failed: 410, or the schedule was used up.
            summary["delivery_failures"] += 1
            summary["dead_letters"] += int(domain_event.retryable)

    @on_event.register
    def _(
        self, domain_event: Action.DeliveryStarted, cursor: ViewCursor, summary: Any, position: EventPosition
    ) -> None:
        summary["delivery_attempts"] += 1

    @on_event.register
    def _(
        self, domain_event: Action.DeliveryFailed, cursor: ViewCursor, summary: Any, position: EventPosition
    ) -> None:
        summary["delivery_failures"] += 1

    @on_event.register
    def _(
        self, domain_event: Action.Waived, cursor: ViewCursor, summary: Any, position: EventPosition
    ) -> None:
        self._move_action(cursor, domain_event, position, "waived")
        summary["actions_failed"] -= 1
        summary["actions_waived"] += 1

    def _move_action(
        self, cursor: ViewCursor, domain_event: Any, position: EventPosition, status: str
    ) -> str:
        action_id = str(domain_event.originator_id)
        current = cursor.execute(
            f"SELECT * FROM {self.t['actions']} WHERE action_id = ? AND valid_to IS NULL", (action_id,)
        ).fetchone()
        assert current is not None, action_id
        cursor.execute(
            f"UPDATE {self.t['actions']} SET valid_to = ? WHERE action_id = ? AND valid_to IS NULL",
            (position.position, action_id),
        )
        cursor.execute(
            f"INSERT INTO {self.t['actions']} VALUES (?, ?, NULL, ?, ?, ?, ?)",
            (action_id, position.position, current["run_id"], current["input_id"], current["kind"], status),
        )
        return str(current["status"])


def _count(counts: dict[str, int], outcome: str, delta: int) -> None:
    counts[outcome] = counts.get(outcome, 0) + delta
    if counts[outcome] == 0:
        del counts[outcome]
