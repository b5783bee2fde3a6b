"""The run summary and the reconciliation view, kept in one projection so that they
always describe the same position.

Every table is temporal: a row holds over the position range [valid_from, valid_to),
or says at which positions an input was admitted and decided. An as-of read is an
index lookup, and a view can be compared with a rebuild as of any position.
The tables, and what reconciliation reads from them, are described in run_tables.py.

A page of events is applied in three steps: read what it will touch in a few queries
(the runs' current summaries, the inputs it admits or decides, the decisions and
actions it changes), fold every event in memory, then write the page's rows with a few
set-based statements.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

from application.ports import LoggedEvent
from application.projections.base import LedgerProjection, LogPage, utc_text
from application.projections.run_inputs import RunInputs
from application.projections.run_tables import (
    ACTION_COLUMNS,
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

#: The changes to an action's status, each to the status it moves to.
ACTION_MOVES = {Action.Committed: "committed", Action.Failed: "failed", Action.Waived: "waived"}


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
            "decisions_input": f'"{view.projection}_g{view.generation}_decisions_input"',
        }
        super().__init__(view, index)
        self.summaries = SummaryVersions(self.t["summary"])
        self.decisions = VersionedRows(self.t["decisions"], DECISION_COLUMNS, "decision_id")
        self.actions = VersionedRows(self.t["actions"], ACTION_COLUMNS, "action_id")
        self.inputs = RunInputs(self.t["inputs"], self.t["decisions"])
        #: The position of the last page this object committed (None: none, or forgotten).
        self._followed_through: int | None = None
        #: The page's admissions: (run_id, input_id, admitted_at).
        self._input_rows: list[tuple[str, str, int]] = []
        #: What each kind of event changes (a table of handlers: cheaper than a dispatch).
        self._handlers: dict[type, Callable[[Any, Any, LoggedEvent], None]] = {
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

    def _ddl_names(self) -> dict[str, str]:
        return {**self.t, **self.index_names}

    # --- A page: read ahead, fold, write --------------------------------------------

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
        recorded: set[int] = set()
        requested: set[int] = set()
        corrected: list[Any] = []
        moved: list[Any] = []
        opened: list[str] = []
        for domain_event, _ in page.events:
            kind = type(domain_event)
            if kind is Decision.Recorded:
                decided.setdefault(domain_event.run_id, []).append(domain_event.input_id)
                recorded.add(domain_event.originator_id.int)
            elif kind is Run.BasisAdmitted:
                admitted.setdefault(domain_event.run_id, []).extend(domain_event.input_ids)
            elif kind is Run.Opened:
                opened.append(domain_event.run_id)
            elif kind is Decision.Corrected:
                corrected.append(domain_event.originator_id)
            elif kind is Action.Requested:
                requested.add(domain_event.originator_id.int)
            elif kind in ACTION_MOVES:
                moved.append(domain_event.originator_id)
        self.summaries.load(cursor, {logged.run_id for _, logged in page.events})
        self.decisions.load(cursor, [str(decision) for decision in corrected if decision.int not in recorded])
        self.actions.load(cursor, [str(action) for action in moved if action.int not in requested])
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

    def apply(self, cursor: ViewCursor, domain_event: Any, position: LoggedEvent) -> None:
        summary = self.summaries.current(position.run_id)
        handler = self._handlers.get(type(domain_event))
        if handler is not None:  # events this view does not need still count
            handler(domain_event, summary, position)
        if summary is None:
            summary = self.summaries.current(position.run_id)
            assert summary is not None, f"an event of run {position.run_id!r} before it was opened"
        summary["event_count"] += 1
        summary["valid_from"] = summary["last_position"] = position.position
        summary["updated_at"] = position.recorded_text
        self.summaries.take(summary)

    # --- Runs --------------------------------------------------------------------------

    def _on_run_opened(self, domain_event: Run.Opened, summary: Any, position: LoggedEvent) -> None:
        recorded_at = position.recorded_text
        self.summaries.open(
            {
                "run_id": domain_event.run_id,
                "attempt": domain_event.attempt,
                "status": "open",
                "lane": domain_event.lane,
                "allow_empty": int(domain_event.allow_empty),
                "basis_digest": "0" * 64,
                "outcomes": {},
                **dict.fromkeys(SUMMARY_COUNTERS, 0),
                "first_position": position.position,
                "last_position": position.position,
                "opened_at": recorded_at,
                "updated_at": recorded_at,
            }
        )

    def _on_run_basisadmitted(
        self, domain_event: Run.BasisAdmitted, summary: Any, position: LoggedEvent
    ) -> None:
        inputs = self.inputs.of(domain_event.run_id)
        already_decided = 0
        for input_id in domain_event.input_ids:
            already_decided += inputs.admit(input_id)
            self._input_rows.append((domain_event.run_id, input_id, position.position))
        summary["admitted_count"] = domain_event.admitted_total
        summary["basis_digest"] = domain_event.basis_digest
        summary["unexpected_count"] -= already_decided
        summary["missing_count"] += len(domain_event.input_ids) - already_decided

    def _on_run_sealed(self, domain_event: Run.Sealed, summary: Any, position: LoggedEvent) -> None:
        summary["status"] = "sealed"

    def _on_run_committed(self, domain_event: Run.Committed, summary: Any, position: LoggedEvent) -> None:
        summary["status"] = "committed"

    def _on_run_rejected(self, domain_event: Run.Rejected, summary: Any, position: LoggedEvent) -> None:
        summary["status"] = "rejected"

    def _on_run_reopened(self, domain_event: Run.Reopened, summary: Any, position: LoggedEvent) -> None:
        summary["status"] = "open"
        summary["attempt"] = domain_event.attempt

    # --- Decisions -------------------------------------------------------------------

    def _on_decision_recorded(
        self, domain_event: Decision.Recorded, summary: Any, position: LoggedEvent
    ) -> None:
        decision_id = str(domain_event.originator_id)
        if self.inputs.of(domain_event.run_id).decide(domain_event.input_id):
            summary["missing_count"] -= 1
        else:
            summary["unexpected_count"] += 1
        self.decisions.add(
            {
                "decision_id": decision_id,
                "valid_from": position.position,
                "valid_to": None,
                "run_id": domain_event.run_id,
                "input_id": domain_event.input_id,
                "outcome": domain_event.outcome,
                "effective_at": utc_text(domain_event.timestamp),
                "corrections": 0,
            }
        )
        summary["decision_count"] += 1
        self.summaries.count(summary, domain_event.outcome, +1)

    def _on_decision_corrected(
        self, domain_event: Decision.Corrected, summary: Any, position: LoggedEvent
    ) -> None:
        decision_id = str(domain_event.originator_id)
        current = self.decisions.current(decision_id)
        assert current is not None, decision_id
        # Newer knowledge wins, and no correction takes effect in the future: the
        # corrected outcome is the one in force from now on.
        if current["corrections"] == 0:
            summary["corrected_count"] += 1
        if domain_event.outcome != current["outcome"]:
            self.summaries.count(summary, current["outcome"], -1)
            self.summaries.count(summary, domain_event.outcome, +1)
        self.decisions.add(
            {
                **current,
                "valid_from": position.position,
                "valid_to": None,
                "outcome": domain_event.outcome,
                "effective_at": utc_text(domain_event.effective_at),
                "corrections": current["corrections"] + 1,
            }
        )

    # --- Actions ----------------------------------------------------------------------

    def _on_action_requested(
        self, domain_event: Action.Requested, summary: Any, position: LoggedEvent
    ) -> None:
        self.actions.add(
            {
                "action_id": str(domain_event.originator_id),
                "valid_from": position.position,
                "valid_to": None,
                "run_id": domain_event.run_id,
                "input_id": domain_event.input_id,
                "kind": domain_event.kind,
                "status": "requested",
            }
        )
        summary["actions_requested"] += 1
        summary["actions_pending"] += 1

    def _on_action_committed(
        self, domain_event: Action.Committed, summary: Any, position: LoggedEvent
    ) -> None:
        previous = self._move_action(domain_event, position)
        summary["actions_committed"] += 1
        summary["actions_pending" if previous == "requested" else "actions_failed"] -= 1

    def _on_action_failed(self, domain_event: Action.Failed, summary: Any, position: LoggedEvent) -> None:
        previous = self._move_action(domain_event, position)
        if previous == "requested":
            summary["actions_pending"] -= 1
            summary["actions_failed"] += 1
        if getattr(domain_event, "delivery", None) is not None:  # older events lack the field
            # The dispatcher's last attempt failed: 410, or the schedule was used up.
            summary["delivery_failures"] += 1
            summary["dead_letters"] += int(domain_event.retryable)

    def _on_action_deliverystarted(
        self, domain_event: Action.DeliveryStarted, summary: Any, position: LoggedEvent
    ) -> None:
        summary["delivery_attempts"] += 1

    def _on_action_deliveryfailed(
        self, domain_event: Action.DeliveryFailed, summary: Any, position: LoggedEvent
    ) -> None:
        summary["delivery_failures"] += 1

    def _on_action_waived(self, domain_event: Action.Waived, summary: Any, position: LoggedEvent) -> None:
        self._move_action(domain_event, position)
        summary["actions_failed"] -= 1
        summary["actions_waived"] += 1

    def _move_action(self, domain_event: Any, position: LoggedEvent) -> str:
        """A new version of the action, in its new status; answers the status before."""
        action_id = str(domain_event.originator_id)
        current = self.actions.current(action_id)
        assert current is not None, action_id
        self.actions.add(
            {
                **current,
                "valid_from": position.position,
                "valid_to": None,
                "status": ACTION_MOVES[type(domain_event)],
            }
        )
        return str(current["status"])
