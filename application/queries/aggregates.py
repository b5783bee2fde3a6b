"""Runs, decisions and actions as the ledger knew them at any point of the log, read
from the event store (a replay of one aggregate, from its latest snapshot)."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from application.answers import Answers
from application.ledger import DecisionLedger
from application.results import ActionView, DecisionView, HistoryEntry, RunView
from domain import errors
from domain.action import Action
from domain.decision import Decision
from domain.fields import validate_run_id
from domain.identity import run_uuid
from domain.ledger_aggregate import LedgerAggregate
from domain.run import Run

#: Run events read at a time, newest first, looking for the latest commit.
_PROOF_SCAN_PAGE = 2

#: Event fields a history entry shows elsewhere, or not at all.
_HIDDEN_IN_HISTORY = frozenset(
    {"originator_id", "originator_version", "originator_topic", "token", "fingerprint", "effective_at"}
)


class AggregateQueries:
    def __init__(self, ledger: DecisionLedger, answers: Answers) -> None:
        self.ledger = ledger
        self.answers = answers

    def run(self, run_id: str, *, as_of_position: int | None = None) -> RunView:
        validate_run_id(run_id)
        try:
            run = self.ledger.load_as_of(run_uuid(run_id), Run, errors.RunNotFound, as_of_position)
        except errors.RunNotFound:
            raise errors.RunNotFound(f"run {run_id!r} not found") from None
        return self.answers.run(run, self.ledger.position_of(run.id, run.version))

    def latest_proof(self, run_id: str, *, as_of_position: int | None = None) -> dict[str, Any]:
        """The signed proof of the run's latest committed attempt.

        Read from the run's newest events back to its latest Run.Committed, a few at a time,
        without replaying the run: its basis events may hold a million input IDs, and a
        committed attempt is the run's last."""
        validate_run_id(run_id)
        originator_id = run_uuid(run_id)
        newest = (
            None if as_of_position is None else self.ledger.index.version_at(originator_id, as_of_position)
        )
        if as_of_position is not None and newest is None:
            raise errors.NothingKnownYet(
                f"nothing was known of run {originator_id} at position {as_of_position}"
            )
        read_any = False
        while newest is None or newest >= Run.INITIAL_VERSION:
            oldest_read = None
            # Decoded one by one, newest first: a commit is the run's last event, so the
            # basis events before it (every input ID) are not decoded.
            for domain_event in self.ledger.events.get(
                originator_id, lte=newest, desc=True, limit=_PROOF_SCAN_PAGE
            ):
                oldest_read = domain_event.originator_version
                proof: dict[str, Any] | None = getattr(domain_event, "proof", None)
                if isinstance(domain_event, Run.Committed) and proof:
                    return proof
            if oldest_read is None:
                break
            read_any = True
            newest = oldest_read - 1
        if not read_any:
            raise errors.RunNotFound(f"run {run_id!r} not found")
        raise errors.ProofNotFound(f"run {run_id!r} has no committed attempt")

    def decision(
        self, decision_id: UUID, *, as_of_position: int | None = None, valid_at: datetime | None = None
    ) -> DecisionView:
        decision = self.ledger.load_as_of(decision_id, Decision, errors.DecisionNotFound, as_of_position)
        return self.answers.decision(
            decision, self.ledger.position_of(decision.id, decision.version), valid_at
        )

    def decision_for_input(
        self,
        run_id: str,
        input_id: str,
        *,
        as_of_position: int | None = None,
        valid_at: datetime | None = None,
    ) -> DecisionView:
        validate_run_id(run_id)
        decision_id = Decision.create_id(run_id, input_id)
        return self.decision(decision_id, as_of_position=as_of_position, valid_at=valid_at)

    def decision_history(self, decision_id: UUID, *, as_of_position: int | None = None) -> list[HistoryEntry]:
        return self._history(decision_id, Decision, errors.DecisionNotFound, as_of_position)

    def action_history(self, action_id: UUID, *, as_of_position: int | None = None) -> list[HistoryEntry]:
        """Every event of an action: its request, each delivery attempt, its outcome."""
        return self._history(action_id, Action, errors.ActionNotFound, as_of_position)

    def _history(
        self,
        aggregate_id: UUID,
        kind: type[LedgerAggregate],
        missing: type[errors.NotFound],
        as_of_position: int | None,
    ) -> list[HistoryEntry]:
        aggregate = self.ledger.load_as_of(aggregate_id, kind, missing, as_of_position)
        entries = []
        for domain_event in self.ledger.events.get(aggregate_id, lte=aggregate.version):
            state = dict(vars(domain_event))
            state_timestamp = state.pop("timestamp")
            position = self.ledger.index.event_position(aggregate_id, domain_event.originator_version)
            if position is None:
                raise errors.NothingKnownYet(
                    f"event {domain_event.originator_version} of {aggregate_id} is not indexed"
                )
            entries.append(
                HistoryEntry(
                    version=domain_event.originator_version,
                    position=position.position,
                    event_type=type(domain_event).__name__,
                    actor=state.pop("actor"),
                    attempt=state.pop("attempt"),
                    recorded_at=position.recorded_at,
                    occurred_at=state_timestamp,
                    effective_at=state.get("effective_at", state_timestamp),
                    data={key: value for key, value in state.items() if key not in _HIDDEN_IN_HISTORY},
                )
            )
        return entries

    def action(self, action_id: UUID, *, as_of_position: int | None = None) -> ActionView:
        action = self.ledger.load_as_of(action_id, Action, errors.ActionNotFound, as_of_position)
        return self.answers.action(action, self.ledger.position_of(action.id, action.version))
