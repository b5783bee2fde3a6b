"""Recording up to a thousand decisions in one request and one transaction.

Each item gets its own answer (created, replayed, conflict or invalid); one bad item
never fails its neighbours. The batch's own token remembers the answers in the same
transaction as the new decisions, so replaying the batch returns them unchanged.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any
from uuid import UUID

from eventsourcing.persistence import IntegrityError

from application.ledger import DecisionLedger
from application.views import BatchItemResult, BatchResult, CommandResult
from domain import errors
from domain.commands import RecordDecision
from domain.decision import Decision

Item = RecordDecision | errors.LedgerError


class DecisionBatches:
    def __init__(self, ledger: DecisionLedger) -> None:
        self.ledger = ledger

    def record(
        self, run_id: str, items: Sequence[Item], batch_token: str, batch_fingerprint: str
    ) -> CommandResult[BatchResult]:
        def attempt(first: bool) -> CommandResult[BatchResult]:
            receipt = self.ledger.index.token_receipt(batch_token)
            if receipt is not None:
                if receipt.fingerprint != batch_fingerprint:
                    raise errors.IdempotencyKeyReused(
                        "this idempotency key was already used for a different batch"
                    )
                return self._from_record(run_id, receipt.stored_response or "[]", replayed=True)
            run_attempt = self.ledger.open_attempt(run_id, fresh=not first)
            outcomes, fresh = self._plan(run_id, items, run_attempt)
            record = json.dumps([_record_of(outcome) for outcome in outcomes])
            try:
                recordings = self.ledger.save(
                    *fresh, stored_responses=[(batch_token, batch_fingerprint, record)]
                )
            except IntegrityError:
                # A neighbour raced us: answer item by item, then remember the answers.
                return self._one_by_one(run_id, items, batch_token, batch_fingerprint)
            positions = {
                recording.domain_event.originator_id: recording.notification.id for recording in recordings
            }
            known = self._knowledge_times(positions.values())
            answered = [
                BatchItemResult(
                    "created",
                    decision=self.ledger.decision_view(
                        outcome.decision,
                        positions[outcome.decision.id],
                        (known[positions[outcome.decision.id]],) * 2,
                    ),
                )
                if outcome.status == "created" and isinstance(outcome.decision, Decision)
                else outcome
                for outcome in outcomes
            ]
            head = max(positions.values(), default=self.ledger.index.head_position())
            return CommandResult(BatchResult(run_id, answered), version=0, position=head, replayed=False)

        return self.ledger.with_retries(attempt)

    def _knowledge_times(self, positions: Any) -> dict[int, Any]:
        """The knowledge time of each new event, in one query."""
        wanted = sorted(positions)
        if not wanted:
            return {}
        rows = self.ledger.index.events_between(wanted[0] - 1, wanted[-1], len(wanted) * 2 + 10)
        return {row.position: row.recorded_at for row in rows}

    def _plan(self, run_id: str, items: Sequence[Item], run_attempt: int) -> tuple[list[Any], list[Decision]]:
        """Decide each item's fate without writing: invalid, conflict, replayed or created."""
        commands = [item for item in items if isinstance(item, RecordDecision)]
        receipts = self.ledger.index.token_receipts([command.token for command in commands])
        outcomes: list[Any] = []
        fresh: list[Decision] = []
        seen_inputs: set[str] = set()
        for item in items:
            if isinstance(item, errors.LedgerError):
                outcomes.append(BatchItemResult("invalid", error=item))
                continue
            try:
                if item.run_id != run_id:
                    raise errors.InvalidCommand("an item names another run", field="run_id")
                if item.input_id in seen_inputs:
                    raise errors.DecisionAlreadyRecorded(
                        f"input {item.input_id!r} appears twice in this batch"
                    )
                seen_inputs.add(item.input_id)
                receipt = receipts.get(item.token)
                if receipt is not None:
                    if receipt.fingerprint != item.fingerprint:
                        raise errors.IdempotencyKeyReused(
                            "this item's idempotency key was used for a different request"
                        )
                    outcomes.append(
                        BatchItemResult(
                            "replayed",
                            decision=self._view_at(receipt.originator_id, receipt.originator_version),
                        )
                    )
                    continue
            except errors.InvalidCommand as error:
                outcomes.append(BatchItemResult("invalid", error=error))
                continue
            except errors.LedgerError as error:
                outcomes.append(BatchItemResult("conflict", error=error))
                continue
            decision = Decision.record(item, run_attempt)
            fresh.append(decision)
            outcomes.append(BatchItemResult("created", decision=decision))  # type: ignore[arg-type]
        return outcomes, fresh

    def _view_at(self, decision_id: UUID | None, version: int | None) -> Any:
        assert decision_id is not None and version is not None
        decision = self.ledger.at_version(decision_id, Decision, version)
        return self.ledger.decision_view(decision, self.ledger.position_of(decision_id, version))

    def _one_by_one(
        self, run_id: str, items: Sequence[Item], batch_token: str, batch_fingerprint: str
    ) -> CommandResult[BatchResult]:
        outcomes: list[BatchItemResult] = []
        seen_inputs: set[str] = set()
        for item in items:
            if isinstance(item, errors.LedgerError):
                outcomes.append(BatchItemResult("invalid", error=item))
                continue
            try:
                if item.run_id != run_id:
                    raise errors.InvalidCommand("an item names another run", field="run_id")
                if item.input_id in seen_inputs:
                    raise errors.DecisionAlreadyRecorded(
                        f"input {item.input_id!r} appears twice in this batch"
                    )
                seen_inputs.add(item.input_id)
                result = self.ledger.record_decision(item)
            except errors.InvalidCommand as error:
                outcomes.append(BatchItemResult("invalid", error=error))
            except errors.LedgerError as error:
                outcomes.append(BatchItemResult("conflict", error=error))
            else:
                outcomes.append(
                    BatchItemResult("replayed" if result.replayed else "created", decision=result.view)
                )
        self.ledger.index.insert_token_response(
            batch_token, batch_fingerprint, json.dumps([_record_of(outcome) for outcome in outcomes])
        )
        return CommandResult(
            BatchResult(run_id, outcomes),
            version=0,
            position=self.ledger.index.head_position(),
            replayed=False,
        )

    def _from_record(self, run_id: str, record: str, *, replayed: bool) -> CommandResult[BatchResult]:
        items: list[BatchItemResult] = []
        for entry in json.loads(record):
            if "decision_id" in entry:
                items.append(
                    BatchItemResult(
                        entry["status"], decision=self._view_at(UUID(entry["decision_id"]), entry["version"])
                    )
                )
            else:
                items.append(BatchItemResult(entry["status"], error=_error_from_record(entry["error"])))
        return CommandResult(
            BatchResult(run_id, items),
            version=0,
            position=self.ledger.index.head_position(),
            replayed=replayed,
        )


def _record_of(outcome: BatchItemResult) -> dict[str, Any]:
    """What the batch's token remembers of one item."""
    if outcome.decision is not None:
        decision = outcome.decision
        if isinstance(decision, Decision):
            return {"status": outcome.status, "decision_id": str(decision.id), "version": decision.version}
        return {"status": outcome.status, "decision_id": decision.decision_id, "version": decision.version}
    assert outcome.error is not None
    return {
        "status": outcome.status,
        "error": {
            "class": type(outcome.error).__name__,
            "detail": getattr(outcome.error, "detail", str(outcome.error)),
            "field": getattr(outcome.error, "field", None),
        },
    }


def _error_from_record(record: dict[str, Any]) -> errors.LedgerError:
    error_class = _ledger_errors().get(record["class"], errors.LedgerError)
    if issubclass(error_class, errors.InvalidCommand):
        return error_class(record["detail"], field=record.get("field"))
    return error_class(record["detail"])


def _ledger_errors() -> dict[str, type[errors.LedgerError]]:
    found: dict[str, type[errors.LedgerError]] = {}
    pending: list[type[errors.LedgerError]] = [errors.LedgerError]
    while pending:
        cls = pending.pop()
        found[cls.__name__] = cls
        pending.extend(cls.__subclasses__())
    return found
