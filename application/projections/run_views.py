"""The run summary and the reconciliation view, kept in one projection so that they
always describe the same position.

Every table is temporal: a row holds over the position range [valid_from, valid_to),
or says at which positions an input was admitted and decided. An as-of read is an
index lookup, and a view can be compared with a rebuild as of any position.
The tables, and what reconciliation reads from them, are described in run_tables.py.

A page of events is applied in three steps: read what it will touch in a few queries
(the runs' current summaries, the inputs it admits or decides, the decisions and
actions it changes), fold every event in memory, then write the page's rows with a few
set-based statements. The fold reads each event's stored state (a dict of its fields),
not a domain event: it needs a few fields, and parsing is most of the cost of decoding.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

from eventsourcing.utils import get_topic, resolve_topic

from application.ports import LoggedEvent
from application.projections.base import LedgerProjection, LogPage, stored_utc_text
from application.projections.run_inputs import RunInputs
from application.projections.run_tables import (
    ACTION_COLUMNS,
    ANCHOR_EVERY,
    DECISION_COLUMNS,
    INPUT_COLUMNS,
    RUN_VIEW_DDL,
    SUMMARY_COUNTERS,
)
from application.projections.summary_versions import SummaryVersions
from application.projections.versioned_rows import VersionedRows
from domain.action import Action
from domain.decision import Decision
from domain.run import Run
from infrastructure.view_store import ViewCursor

#: The events that change an action's status.
ACTION_MOVES = (Action.Committed, Action.Failed, Action.Waived)

#: A stored state, parsed: the event's fields as the library's transcoder wrote them.
StoredState = dict[str, Any]


class RunViewsProjection(LedgerProjection):
    name = "runs"
    table_names: ClassVar = ("summary", "inputs", "decisions", "actions")
    ddl: ClassVar = RUN_VIEW_DDL
    folds_stored_state: ClassVar = True

    def __init__(self, view: Any, index: Any) -> None:
        # Index names are not schema-qualified: they live beside their table.
        self.index_names = {
            "summary_current": f'"{view.projection}_g{view.generation}_summary_current"',
            "summary_open_row": f'"{view.projection}_g{view.generation}_summary_open_row"',
            "actions_run": f'"{view.projection}_g{view.generation}_actions_run"',
            "decisions_input": f'"{view.projection}_g{view.generation}_decisions_input"',
        }
        super().__init__(view, index)
        self.summaries = SummaryVersions(self.t)
        self.decisions = VersionedRows(self.t["decisions"], DECISION_COLUMNS, "decision_id")
        self.actions = VersionedRows(self.t["actions"], ACTION_COLUMNS, "action_id")
        self.inputs = RunInputs(self.t["inputs"], self.t["decisions"])
        #: The position of the last page this object committed (None: none, or forgotten).
        self._followed_through: int | None = None
        #: The stored versions the page's corrections end: (run_id, decision_id, valid_from).
        self._corrected_from: list[tuple[str, str, int]] = []
        #: The page's admissions: (run_id, input_id, admitted_at).
        self._input_rows: list[tuple[str, str, int]] = []
        #: What each kind of event changes (a table of handlers: cheaper than a dispatch).
        self._handlers: dict[type, Callable[[StoredState, Any, LoggedEvent], None]] = {
            Run.Opened: self._on_run_opened,
            Run.BasisAdmitted: self._on_run_basisadmitted,
            Run.Sealed: self._on_run_sealed,
            Run.Committed: self._on_run_committed,
            Run.Rejected: self._on_run_rejected,
            Run.Reopened: self._on_run_reopened,
            Decision.Recorded: self._on_decision_recorded,
            Decision.Corrected: self._on_decision_corrected,
            Action.Requested: self._on_action_requested,
            Action.Committed: self._on_action_committed,
            Action.Failed: self._on_action_failed,
            Action.DeliveryStarted: self._on_action_deliverystarted,
            Action.DeliveryFailed: self._on_action_deliveryfailed,
            Action.Waived: self._on_action_waived,
        }
        for kind in self._handlers:
            # The fold reads states as stored: an upcast would have to be taught to it.
            if getattr(kind, "class_version", 1) != 1:
                raise TypeError(f"{kind.__qualname__} has a class_version: the runs view reads it as stored")
        #: Each topic stored in the log, as its event class (None: a class the view ignores).
        self._kinds: dict[str, type | None] = {get_topic(kind): kind for kind in self._handlers}

    def _ddl_names(self) -> dict[str, str]:
        return {**self.t, **self.index_names}

    # --- A page: read ahead, fold, write --------------------------------------------

    def read_index(self, page: LogPage) -> None:
        """Where the stored versions the page's corrections end began: the position of
        each decision's event before its first correction in the page (unless the page
        records the decision too)."""
        recorded: set[Any] = set()
        first: dict[Any, LoggedEvent] = {}
        for _, logged in page.events:
            kind = self._kind_of(logged.topic)
            if kind is Decision.Recorded:
                recorded.add(logged.originator_id)
            elif kind is Decision.Corrected and logged.originator_id not in recorded:
                first.setdefault(logged.originator_id, logged)
        self._corrected_from = []
        for decision_id, logged in first.items():
            before = self.index.event_position(decision_id, logged.originator_version - 1)
            if before is None:
                raise LookupError(
                    f"no index row for version {logged.originator_version - 1} of decision {decision_id}"
                )
            self._corrected_from.append((logged.run_id, str(decision_id), before.position))

    def begin_batch(self, cursor: ViewCursor, page: LogPage) -> None:
        """Read, in a few queries, what the page's events will change and this process
        does not hold already: the runs' summaries, the other half of the inputs they
        admit or decide, and the decisions and actions stored in force."""
        if self.view.position_within(cursor) != self._followed_through:
            self._forget()  # the tables moved on without this process
        self._input_rows = []
        admitted: dict[str, list[str]] = {}
        decided: dict[str, list[str]] = {}
        # Aggregate IDs as decoded (UUIDs, compared by their integers): only those read
        # from the tables become text.
        requested: set[int] = set()
        moved: list[tuple[str, Any]] = []  # (run_id, action_id)
        opened: list[str] = []
        for event, logged in page.events:
            kind = self._kind_of(logged.topic)
            if kind is Decision.Recorded:
                decided.setdefault(event["run_id"], []).append(event["input_id"])
            elif kind is Run.BasisAdmitted:
                admitted.setdefault(event["run_id"], []).extend(event["input_ids"])
            elif kind is Run.Opened:
                opened.append(event["run_id"])
            elif kind is Action.Requested:
                requested.add(logged.originator_id.int)  # type: ignore[union-attr]
            elif kind in ACTION_MOVES:
                moved.append((logged.run_id, logged.originator_id))
        self.summaries.load(cursor, {logged.run_id for _, logged in page.events})
        self.decisions.load_at(cursor, self._corrected_from)
        self.actions.load(
            cursor, [(run, str(action)) for run, action in moved if action.int not in requested]
        )
        self.inputs.begin_page(cursor, opened, admitted, decided)

    def end_batch(self, cursor: ViewCursor) -> None:
        self.inputs.end_page()
        # The summaries in force of the runs still followed stay known to the next page.
        self.summaries.flush(cursor, keep=self.inputs.is_followed)
        self.decisions.flush(cursor)
        self.actions.flush(cursor)
        # In key order: the table's rows then lie in the order its reconciliation scans read them.
        cursor.insert_rows(self.t["inputs"], INPUT_COLUMNS, sorted(self._input_rows))
        self._input_rows = []

    def page_committed(self, position: int) -> None:
        self._followed_through = position

    def page_abandoned(self) -> None:
        self._forget()

    def _forget(self) -> None:
        self.inputs.forget()
        self.summaries.reset()
        self._followed_through = None

    def _kind_of(self, topic: str) -> type | None:
        """The event class stored under a topic, if the view folds it (a renamed class's
        old topic resolves to it as the library's mapper would)."""
        try:
            return self._kinds[topic]
        except KeyError:
            kind = resolve_topic(topic)
            self._kinds[topic] = kind if kind in self._handlers else None
            return self._kinds[topic]

    def apply(self, cursor: ViewCursor, event: StoredState, position: LoggedEvent) -> None:
        summary = self.summaries.current(position.run_id)
        kind = self._kind_of(position.topic)
        handler = self._handlers.get(kind)  # type: ignore[arg-type]
        if handler is not None:  # events this view does not need still count
            handler(event, summary, position)
        if summary is None:
            summary = self.summaries.current(position.run_id)
            assert summary is not None, f"an event of run {position.run_id!r} before it was opened"
        summary["event_count"] += 1
        summary["valid_from"] = summary["last_position"] = position.position
        summary["updated_at"] = position.recorded_text
        # An anchor (run_tables.py): between two, a run has only decisions recorded.
        if kind is not Decision.Recorded or summary["event_count"] % ANCHOR_EVERY == 0:
            self.summaries.take(summary)

    # --- Runs --------------------------------------------------------------------------

    def _on_run_opened(self, event: StoredState, summary: Any, position: LoggedEvent) -> None:
        recorded_at = position.recorded_text
        self.summaries.open(
            {
                "run_id": event["run_id"],
                "attempt": event["attempt"],
                "status": "open",
                "lane": event["lane"],
                "allow_empty": int(event["allow_empty"]),
                "basis_digest": "0" * 64,
                "outcomes": {},
                **dict.fromkeys(SUMMARY_COUNTERS, 0),
                "first_position": position.position,
                "last_position": position.position,
                "opened_at": recorded_at,
                "updated_at": recorded_at,
            }
        )

    def _on_run_basisadmitted(self, event: StoredState, summary: Any, position: LoggedEvent) -> None:
        inputs = self.inputs.of(event["run_id"])
        already_decided = 0
        for input_id in event["input_ids"]:
            already_decided += inputs.admit(input_id)
            self._input_rows.append((event["run_id"], input_id, position.position))
        summary["admitted_count"] = event["admitted_total"]
        summary["basis_digest"] = event["basis_digest"]
        summary["unexpected_count"] -= already_decided
        summary["missing_count"] += len(event["input_ids"]) - already_decided

    def _on_run_sealed(self, event: StoredState, summary: Any, position: LoggedEvent) -> None:
        summary["status"] = "sealed"

    def _on_run_committed(self, event: StoredState, summary: Any, position: LoggedEvent) -> None:
        summary["status"] = "committed"

    def _on_run_rejected(self, event: StoredState, summary: Any, position: LoggedEvent) -> None:
        summary["status"] = "rejected"

    def _on_run_reopened(self, event: StoredState, summary: Any, position: LoggedEvent) -> None:
        summary["status"] = "open"
        summary["attempt"] = event["attempt"]

    # --- Decisions -------------------------------------------------------------------

    def _on_decision_recorded(self, event: StoredState, summary: Any, position: LoggedEvent) -> None:
        decision_id = str(position.originator_id)
        if self.inputs.of(event["run_id"]).decide(event["input_id"]):
            summary["missing_count"] -= 1
        else:
            summary["unexpected_count"] += 1
        self.decisions.add(
            {
                "decision_id": decision_id,
                "valid_from": position.position,
                "valid_to": None,
                "run_id": event["run_id"],
                "input_id": event["input_id"],
                "outcome": event["outcome"],
                "effective_at": stored_utc_text(event["timestamp"]),
                "corrections": 0,
            }
        )
        summary["decision_count"] += 1
        self.summaries.count(summary, event["outcome"], +1)

    def _on_decision_corrected(self, event: StoredState, summary: Any, position: LoggedEvent) -> None:
        decision_id = str(position.originator_id)
        current = self.decisions.current(decision_id)
        assert current is not None, decision_id
        # Newer knowledge wins, and no correction takes effect in the future: the
        # corrected outcome is the one in force from now on.
        if current["corrections"] == 0:
            summary["corrected_count"] += 1
        if event["outcome"] != current["outcome"]:
            self.summaries.count(summary, current["outcome"], -1)
            self.summaries.count(summary, event["outcome"], +1)
        self.decisions.add(
            {
                **current,
                "valid_from": position.position,
                "valid_to": None,
                "outcome": event["outcome"],
                "effective_at": stored_utc_text(event["effective_at"]),
                "corrections": current["corrections"] + 1,
            }
        )

    # --- Actions ----------------------------------------------------------------------

    def _on_action_requested(self, event: StoredState, summary: Any, position: LoggedEvent) -> None:
        self.actions.add(
            {
                "action_id": str(position.originator_id),
                "valid_from": position.position,
                "valid_to": None,
                "run_id": event["run_id"],
                "input_id": event["input_id"],
                "kind": event["kind"],
                "status": "requested",
            }
        )
        summary["actions_requested"] += 1
        summary["actions_pending"] += 1

    def _on_action_committed(self, event: StoredState, summary: Any, position: LoggedEvent) -> None:
        previous = self._move_action(position, "committed")
        summary["actions_committed"] += 1
        summary["actions_pending" if previous == "requested" else "actions_failed"] -= 1

    def _on_action_failed(self, event: StoredState, summary: Any, position: LoggedEvent) -> None:
        previous = self._move_action(position, "failed")
        if previous == "requested":
            summary["actions_pending"] -= 1
            summary["actions_failed"] += 1
        if event.get("delivery") is not None:  # older events lack the field
            # The dispatcher's last attempt failed: 410, or the schedule was used up.
            summary["delivery_failures"] += 1
            summary["dead_letters"] += int(event["retryable"])

    def _on_action_deliverystarted(self, event: StoredState, summary: Any, position: LoggedEvent) -> None:
        summary["delivery_attempts"] += 1

    def _on_action_deliveryfailed(self, event: StoredState, summary: Any, position: LoggedEvent) -> None:
        summary["delivery_failures"] += 1

    def _on_action_waived(self, event: StoredState, summary: Any, position: LoggedEvent) -> None:
        self._move_action(position, "waived")
        summary["actions_failed"] -= 1
        summary["actions_waived"] += 1

    def _move_action(self, position: LoggedEvent, status: str) -> str:
        """A new version of the action, in its new status; answers the status before."""
        action_id = str(position.originator_id)
        current = self.actions.current(action_id)
        assert current is not None, action_id
        self.actions.add(
            {
                **current,
                "valid_from": position.position,
                "valid_to": None,
                "status": status,
            }
        )
        return str(current["status"])
