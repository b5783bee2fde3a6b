"""The Action aggregate: a side effect requested for a decision, and its lifecycle.

requested -> committed | failed;  failed -> committed (retry) | failed | waived
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any
from uuid import UUID

from eventsourcing.domain import event

from domain.commands import CommitAction, FailAction, RequestAction, WaiveAction
from domain.errors import (
    ActionAlreadyCommitted,
    ActionNotRetryable,
    ActionTransitionRefused,
    IdempotencyKeyReused,
)
from domain.identity import action_uuid
from domain.ledger_aggregate import LedgerAggregate


class ActionStatus(StrEnum):
    REQUESTED = "requested"
    COMMITTED = "committed"
    FAILED = "failed"
    WAIVED = "waived"


class Action(LedgerAggregate):
    # --- Events (frozen; each records what its command decided) ---

    class Requested(LedgerAggregate.Created, LedgerAggregate.Event):
        action_key: str
        decision_id: str
        input_id: str
        kind: str
        target: str | None
        params: dict[str, Any]

    class Committed(LedgerAggregate.Event):
        external_ref: str | None
        result: dict[str, Any] | None

    class Failed(LedgerAggregate.Event):
        error: str
        retryable: bool

    class Waived(LedgerAggregate.Event):
        reason: str

    @staticmethod
    def create_id(run_id: str, action_key: str) -> UUID:
        return action_uuid(run_id, action_key)

    @classmethod
    def request(cls, command: RequestAction, attempt: int, input_id: str) -> Action:
        return cls(
            **cls.attribution(command, command.run_id, attempt),
            action_key=command.action_key,
            decision_id=str(command.decision_id),
            input_id=input_id,
            kind=command.kind,
            target=command.target,
            params=command.params,
        )

    @event(Requested)
    def __init__(
        self,
        run_id: str,
        attempt: int,
        actor: str,
        token: str,
        fingerprint: str,
        action_key: str,
        decision_id: str,
        input_id: str,
        kind: str,
        target: str | None,
        params: dict[str, Any],
    ) -> None:
        self.run_id = run_id
        self.action_key = action_key
        self.decision_id = decision_id
        self.input_id = input_id
        self.kind = kind
        self.target = target
        self.params = params
        self.status = ActionStatus.REQUESTED.value
        self.failures = 0
        self.retryable = True
        self.last_error: str | None = None
        self.external_ref: str | None = None
        self.result: dict[str, Any] | None = None
        self.waive_reason: str | None = None
        self.creation_fingerprint = fingerprint
        self.receipts = {}

    def replay_of_request(self, command: RequestAction) -> int:
        """The key names the action: the same request again is a replay, another one
        under the same key is refused."""
        replayed = self.replayed_version(command)
        if replayed is not None:
            return replayed
        if command.fingerprint == self.creation_fingerprint:
            return self.INITIAL_VERSION
        raise IdempotencyKeyReused(
            f"action key {self.action_key!r} already names a different action in this run"
        )

    def commit(self, command: CommitAction, attempt: int) -> int | None:
        replayed = self.replayed_version(command)
        if replayed is not None:
            return replayed
        if self.status == ActionStatus.COMMITTED:
            raise ActionAlreadyCommitted(f"action {self.id} is already committed")
        if self.status == ActionStatus.WAIVED:
            raise ActionTransitionRefused(f"action {self.id} was waived; it cannot commit")
        if self.status == ActionStatus.FAILED and not self.retryable:
            raise ActionNotRetryable(f"action {self.id} failed and is not retryable; waive it")
        self._commit(
            **self.attribution(command, self.run_id, attempt),
            external_ref=command.external_ref,
            result=command.result,
        )
        return None

    @event(Committed)
    def _commit(
        self,
        run_id: str,
        attempt: int,
        actor: str,
        token: str,
        fingerprint: str,
        external_ref: str | None,
        result: dict[str, Any] | None,
    ) -> None:
        self.status = ActionStatus.COMMITTED.value
        self.external_ref = external_ref
        self.result = result

    def fail(self, command: FailAction, attempt: int) -> int | None:
        replayed = self.replayed_version(command)
        if replayed is not None:
            return replayed
        if self.status == ActionStatus.COMMITTED:
            raise ActionAlreadyCommitted(f"action {self.id} is already committed")
        if self.status == ActionStatus.WAIVED:
            raise ActionTransitionRefused(f"action {self.id} was waived; it cannot fail")
        self._fail(
            **self.attribution(command, self.run_id, attempt),
            error=command.error,
            retryable=command.retryable,
        )
        return None

    @event(Failed)
    def _fail(
        self,
        run_id: str,
        attempt: int,
        actor: str,
        token: str,
        fingerprint: str,
        error: str,
        retryable: bool,
    ) -> None:
        self.status = ActionStatus.FAILED.value
        self.failures += 1
        self.last_error = error
        self.retryable = retryable

    def waive(self, command: WaiveAction, attempt: int) -> int | None:
        replayed = self.replayed_version(command)
        if replayed is not None:
            return replayed
        if self.status == ActionStatus.COMMITTED:
            raise ActionAlreadyCommitted(f"action {self.id} is already committed")
        if self.status != ActionStatus.FAILED:
            raise ActionTransitionRefused(
                f"action {self.id} is {self.status}; only a failed action can be waived"
            )
        self._waive(**self.attribution(command, self.run_id, attempt), reason=command.reason)
        return None

    @event(Waived)
    def _waive(
        self, run_id: str, attempt: int, actor: str, token: str, fingerprint: str, reason: str
    ) -> None:
        self.status = ActionStatus.WAIVED.value
        self.waive_reason = reason
