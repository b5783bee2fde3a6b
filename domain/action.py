"""The Action aggregate: a side effect requested for a decision, and its lifecycle.

requested -> committed | failed;  failed -> committed (retry) | failed | waived

An action whose kind an effector receives is carried out by the dispatcher, and every
attempt is history: DeliveryStarted before each send, then DeliveryFailed or the commit.
Starting a delivery saves the next version, so it is a claim: of two dispatchers that
loaded the same version, only one can save it, and only that one sends. When the
schedule is used up (or the receiver answers 410) the action fails with its last
error; a failed, retryable action can be redelivered on a fresh schedule.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from eventsourcing.domain import event

from domain.canonical import fingerprint
from domain.commands import CommitAction, FailAction, RedeliverAction, RequestAction, WaiveAction
from domain.delivery import DISPATCHER_ACTOR, MAX_DELIVERY_ERROR, ActionStatus, Dispatchable, DispatchState
from domain.errors import (
    ActionAlreadyCommitted,
    ActionNotRetryable,
    ActionTransitionRefused,
    IdempotencyKeyReused,
)
from domain.identity import action_uuid
from domain.ledger_aggregate import LedgerAggregate


class Action(Dispatchable, LedgerAggregate):
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
        #: The dispatcher's attempt that committed it (None: a caller committed it).
        delivery: dict[str, Any] | None = None

    class Failed(LedgerAggregate.Event):
        error: str
        retryable: bool
        #: The dispatcher's last attempt (None: a caller failed it).
        delivery: dict[str, Any] | None = None

    class DeliveryStarted(LedgerAggregate.Event):
        delivery: int
        effector: str
        started_at: datetime

    class DeliveryFailed(LedgerAggregate.Event):
        outcome: dict[str, Any]
        next_delivery_at: datetime

    class RedeliveryRequested(LedgerAggregate.Event):
        requested_at: datetime

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
        self.run_attempt = attempt
        self.deliveries: list[dict[str, Any]] = []
        self.schedule_base = 0  # deliveries made before the current schedule started
        self.next_delivery_at: datetime | None = None  # set by a failure with a retry left
        self.redelivery_pending = False
        self.dispatch_outcome: str | None = None

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
        delivery: dict[str, Any] | None = None,
    ) -> None:
        self.status = ActionStatus.COMMITTED.value
        self.external_ref = external_ref
        self.result = result
        self._settle(delivery, DispatchState.DELIVERED)

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
        delivery: dict[str, Any] | None = None,
    ) -> None:
        self.status = ActionStatus.FAILED.value
        self.failures += 1
        self.last_error = error
        self.retryable = retryable
        self._settle(delivery, DispatchState.DEAD_LETTERED if retryable else DispatchState.STOPPED)

    def waive(self, command: WaiveAction, attempt: int) -> int | None:
        replayed = self.replayed_version(command)
        if replayed is not None:
            return replayed
        self._require_failed("waived")
        self._waive(**self.attribution(command, self.run_id, attempt), reason=command.reason)
        return None

    def _require_failed(self, verb: str) -> None:
        """Only a failed action can be waived or redelivered; a committed one is final."""
        if self.status == ActionStatus.COMMITTED:
            raise ActionAlreadyCommitted(f"action {self.id} is already committed")
        if self.status != ActionStatus.FAILED:
            raise ActionTransitionRefused(
                f"action {self.id} is {self.status}; only a failed action can be {verb}"
            )

    @event(Waived)
    def _waive(
        self, run_id: str, attempt: int, actor: str, token: str, fingerprint: str, reason: str
    ) -> None:
        self.status = ActionStatus.WAIVED.value
        self.waive_reason = reason
        self._settle(None, DispatchState.NONE)

    # --- Delivery by the dispatcher ---------------------------------------------------------

    def _dispatch_attribution(self, delivery: int, step: str, payload: dict[str, Any]) -> dict[str, Any]:
        """The dispatcher's events carry a token of their own per delivery and step, so the
        ledger's token index refuses a second record of the same step too."""
        return {
            "run_id": self.run_id,
            "attempt": self.run_attempt,
            "actor": DISPATCHER_ACTOR,
            "token": f"dispatch:{self.id}:{delivery}:{step}",
            "fingerprint": fingerprint(f"delivery_{step}", payload),
        }

    def start_delivery(self, effector: str, now: datetime) -> int:
        """Claim the next delivery number. A delivery still in flight is presumed lost:
        the dispatcher only starts another after its timeout."""
        if not self.awaiting_delivery:
            raise ActionTransitionRefused(f"action {self.id} is {self.status}; there is nothing to deliver")
        number = len(self.deliveries) + 1
        self._start_delivery(
            **self._dispatch_attribution(number, "started", {"effector": effector}),
            delivery=number,
            effector=effector,
            started_at=now,
        )
        return number

    @event(DeliveryStarted)
    def _start_delivery(
        self,
        run_id: str,
        attempt: int,
        actor: str,
        token: str,
        fingerprint: str,
        delivery: int,
        effector: str,
        started_at: datetime,
    ) -> None:
        if self.deliveries and self.deliveries[-1]["outcome"] is None:
            self.deliveries[-1].update(
                outcome="lost", error="no outcome was recorded (the dispatcher stopped)"
            )
        self.deliveries.append(
            {
                "attempt": delivery,
                "effector": effector,
                "started_at": started_at,
                "status_code": None,
                "error": None,
                "latency_ms": None,
                "outcome": None,
            }
        )

    def _require_in_flight(self, delivery: int) -> None:
        current = self.delivery_in_flight
        if current is None or current["attempt"] != delivery:
            raise ActionTransitionRefused(f"delivery {delivery} of action {self.id} is not in flight")

    def record_delivered(
        self, delivery: int, status_code: int, latency_ms: float, external_ref: str | None
    ) -> None:
        """The receiver answered 2xx: the action is committed (with its `ref`, if any)."""
        self._require_in_flight(delivery)
        outcome = {"attempt": delivery, "status_code": status_code, "error": None, "latency_ms": latency_ms}
        self._commit(
            **self._dispatch_attribution(delivery, "delivered", {**outcome, "external_ref": external_ref}),
            external_ref=external_ref,
            result=None,
            delivery=outcome,
        )

    def record_delivery_failed(
        self,
        delivery: int,
        status_code: int | None,
        error: str,
        latency_ms: float | None,
        *,
        retryable: bool,
        next_delivery_at: datetime | None,
    ) -> None:
        """A failed attempt. With a retry left it is only history; otherwise (410, or the
        schedule used up) the action fails with this error."""
        self._require_in_flight(delivery)
        outcome = {
            "attempt": delivery,
            "status_code": status_code,
            "error": error[:MAX_DELIVERY_ERROR],
            "latency_ms": latency_ms,
        }
        if retryable and next_delivery_at is not None:
            self._record_delivery_failure(
                **self._dispatch_attribution(
                    delivery, "failed", {**outcome, "at": next_delivery_at.isoformat()}
                ),
                outcome=outcome,
                next_delivery_at=next_delivery_at,
            )
            return
        self._fail(
            **self._dispatch_attribution(delivery, "failed", {**outcome, "retryable": retryable}),
            error=f"delivery {delivery} failed: {outcome['error']}",
            retryable=retryable,
            delivery=outcome,
        )

    @event(DeliveryFailed)
    def _record_delivery_failure(
        self,
        run_id: str,
        attempt: int,
        actor: str,
        token: str,
        fingerprint: str,
        outcome: dict[str, Any],
        next_delivery_at: datetime,
    ) -> None:
        self.deliveries[-1].update(outcome, outcome="failed")
        self.next_delivery_at = next_delivery_at

    def _settle(self, delivery: dict[str, Any] | None, state: DispatchState) -> None:
        """The end of a schedule: by the dispatcher (with its last delivery) or by a caller."""
        if delivery is not None:
            self.deliveries[-1].update(
                delivery, outcome="delivered" if state == DispatchState.DELIVERED else "failed"
            )
        elif self.delivery_in_flight is not None:
            self.deliveries[-1].update(outcome="abandoned", error="the action was settled by a caller")
        self.dispatch_outcome = state.value if delivery is not None else DispatchState.NONE.value
        self.next_delivery_at = None
        self.redelivery_pending = False

    def redeliver(self, command: RedeliverAction, now: datetime) -> int | None:
        """Start a fresh schedule for a failed action (same webhook-id, same body)."""
        replayed = self.replayed_version(command)
        if replayed is not None:
            return replayed
        self._require_failed("redelivered")
        if not self.retryable:
            raise ActionNotRetryable(f"action {self.id} failed and is not retryable; waive it")
        if self.redelivery_pending:
            raise ActionTransitionRefused(f"action {self.id} is already being redelivered")
        self._redeliver(**self.attribution(command, self.run_id, self.run_attempt), requested_at=now)
        return None

    @event(RedeliveryRequested)
    def _redeliver(
        self, run_id: str, attempt: int, actor: str, token: str, fingerprint: str, requested_at: datetime
    ) -> None:
        self.redelivery_pending = True
        self.schedule_base = len(self.deliveries)
        self.next_delivery_at = requested_at
