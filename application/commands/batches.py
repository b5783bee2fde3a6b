"""Recording up to a thousand decisions in one request and one transaction.

Each item gets its own answer (created, replayed, conflict or invalid); one bad item
never fails its neighbours. The batch's own token remembers the answers in the same
transaction as the new decisions, so replaying the batch returns them unchanged.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Sequence
from typing import Any

from eventsourcing.persistence import IntegrityError

from application.commands.decisions import DecisionCommands
from application.commands.execution import IdempotentExecution
from application.commands.runs import RunCommands
from application.index_rows import TokenAnswer
from application.ledger import DecisionLedger
from application.ports import TokenReceipt
from application.results import BatchItemResult, BatchResult, CommandResult
from domain import errors
from domain.canonical import sha256_hex
from domain.commands import RecordDecision
from domain.decision import Decision
from domain.idempotency import require_same_request

Item = RecordDecision | errors.LedgerError


def batch_fingerprint(run_id: str, decisions: Sequence[dict[str, Any]]) -> str:
    """What a batch asks for: its run and its items exactly as sent. Items are not yet
    validated (a bad one is answered `invalid`), so this encoding takes any JSON value:
    ASCII escapes for every string, and NaN or infinities spelt out."""
    encoded = json.dumps(
        {"command": "record_decision_batch", "payload": {"run_id": run_id, "decisions": list(decisions)}},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=True,
        allow_nan=True,
    )
    return sha256_hex(encoded.encode("ascii"))


class DecisionBatches:
    def __init__(
        self,
        ledger: DecisionLedger,
        execution: IdempotentExecution,
        runs: RunCommands,
        decisions: DecisionCommands,
    ) -> None:
        self.ledger = ledger
        self.execution = execution
        self.runs = runs
        self.decisions = decisions

    def record(
        self, run_id: str, items: Sequence[Item], batch_token: str, batch_fingerprint: str
    ) -> CommandResult[BatchResult]:
        """Up to a thousand decisions in one transaction, each with its own answer."""

        def attempt(first: bool) -> CommandResult[BatchResult]:
            receipt = self.ledger.index.token_receipt(batch_token)
            if receipt is not None:
                require_same_request(receipt.fingerprint, batch_fingerprint)
                return self._from_record(run_id, receipt.stored_response or "[]", replayed=True)
            run_attempt = self.runs.open_attempt(run_id, fresh=not first)
            outcomes, fresh = self._plan(run_id, items, run_attempt)
            # The answers are remembered in the same transaction as the new decisions. Their
            # positions are known only once saved: a replay reads them from the items' tokens.
            record = json.dumps(
                [_record_of(outcome, _token_of(items[index])) for index, outcome in enumerate(outcomes)]
            )
            try:
                recordings = self.ledger.save_with_answer(
                    list(fresh.values()), [TokenAnswer(batch_token, batch_fingerprint, record)]
                )
            except IntegrityError:
                # A neighbour raced us: answer item by item, then remember the answers.
                return self._one_by_one(run_id, items, batch_token, batch_fingerprint)
            positions = {
                recording.domain_event.originator_id: recording.notification.id for recording in recordings
            }
            answered = [
                dataclasses.replace(outcome, position=positions[fresh[index].id])
                if index in fresh
                else outcome
                for index, outcome in enumerate(outcomes)
            ]
            head = max(positions.values(), default=self.ledger.index.head_position())
            return CommandResult(BatchResult(run_id, answered), version=0, position=head, replayed=False)

        return self.execution.with_retries(attempt)

    def _plan(
        self, run_id: str, items: Sequence[Item], run_attempt: int
    ) -> tuple[list[BatchItemResult], dict[int, Decision]]:
        """Decide each item's fate without writing: invalid, conflict, replayed or created."""
        commands = [item for item in items if isinstance(item, RecordDecision)]
        receipts = self.ledger.index.token_receipts([command.token for command in commands])
        fresh: dict[int, Decision] = {}

        def plan_one(index: int, command: RecordDecision) -> BatchItemResult:
            receipt = receipts.get(command.token)
            if receipt is not None:
                require_same_request(receipt.fingerprint, command.fingerprint)
                return BatchItemResult(
                    "replayed",
                    decision_id=str(receipt.originator_id),
                    input_id=command.input_id,
                    version=receipt.originator_version,
                    position=receipt.position,
                )
            decision = fresh[index] = Decision.record(command, run_attempt, self.ledger.clock())
            return BatchItemResult(
                "created", decision_id=str(decision.id), input_id=command.input_id, version=1
            )

        return _each_item(run_id, items, plan_one), fresh

    def _one_by_one(
        self, run_id: str, items: Sequence[Item], batch_token: str, batch_fingerprint: str
    ) -> CommandResult[BatchResult]:
        def record_one(index: int, command: RecordDecision) -> BatchItemResult:
            result = self.decisions.record(command)
            return BatchItemResult(
                "replayed" if result.replayed else "created",
                decision_id=result.view.decision_id,
                input_id=result.view.input_id,
                version=result.version,
                position=result.position,
            )

        outcomes = _each_item(run_id, items, record_one)
        self.ledger.index.insert_token_response(
            batch_token,
            batch_fingerprint,
            json.dumps(
                [_record_of(outcome, _token_of(item)) for outcome, item in zip(outcomes, items, strict=True)]
            ),
        )
        head = self.ledger.index.head_position()
        return CommandResult(BatchResult(run_id, outcomes), version=0, position=head, replayed=False)

    def _from_record(self, run_id: str, record: str, *, replayed: bool) -> CommandResult[BatchResult]:
        entries = json.loads(record)
        receipts = self.ledger.index.token_receipts(
            [entry["token"] for entry in entries if entry.get("token")]
        )
        items = [_item_from_record(entry, receipts.get(entry.get("token", ""))) for entry in entries]
        return CommandResult(
            BatchResult(run_id, items),
            version=0,
            position=self.ledger.index.head_position(),
            replayed=replayed,
        )


def _each_item(
    run_id: str, items: Sequence[Item], answer: Callable[[int, RecordDecision], BatchItemResult]
) -> list[BatchItemResult]:
    """Each item's answer; a bad item is answered `invalid` or `conflict`, never raised."""
    outcomes: list[BatchItemResult] = []
    seen_inputs: set[str] = set()
    for index, item in enumerate(items):
        try:
            if isinstance(item, errors.LedgerError):
                raise item
            if item.run_id != run_id:
                raise errors.InvalidCommand("an item names another run", field="run_id")
            if item.input_id in seen_inputs:
                raise errors.DecisionAlreadyRecorded(f"input {item.input_id!r} appears twice in this batch")
            seen_inputs.add(item.input_id)
            outcomes.append(answer(index, item))
        except errors.InvalidCommand as error:
            outcomes.append(BatchItemResult("invalid", error=error))
        except errors.LedgerError as error:
            outcomes.append(BatchItemResult("conflict", error=error))
    return outcomes


def _token_of(item: Item) -> str | None:
    return item.token if isinstance(item, RecordDecision) else None


def _record_of(outcome: BatchItemResult, token: str | None) -> dict[str, Any]:
    """What the batch's token remembers of one item."""
    if outcome.decision_id is not None:
        return {
            "status": outcome.status,
            "decision_id": outcome.decision_id,
            "input_id": outcome.input_id,
            "version": outcome.version,
            "token": token,
        }
    assert outcome.error is not None
    return {
        "status": outcome.status,
        "error": {
            "class": type(outcome.error).__name__,
            "detail": getattr(outcome.error, "detail", str(outcome.error)),
            "field": getattr(outcome.error, "field", None),
        },
    }


def _item_from_record(entry: dict[str, Any], receipt: TokenReceipt | None) -> BatchItemResult:
    if "decision_id" in entry:
        return BatchItemResult(
            entry["status"],
            decision_id=entry["decision_id"],
            input_id=entry["input_id"],
            version=entry["version"],
            position=receipt.position if receipt is not None else None,
        )
    return BatchItemResult(entry["status"], error=_error_from_record(entry["error"]))


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
