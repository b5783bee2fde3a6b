"""Every attempt is history: the Action's delivery events, decided by its command methods
and recorded by its private event methods.

The domain tests drive the aggregate with no database; the last ones save through the
DecisionLedger on both back ends (the claim a DeliveryStarted save makes)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from eventsourcing.application import project_aggregate
from eventsourcing.persistence import IntegrityError

from application.dispatch.messages import action_message
from application.ledger import DecisionLedger
from domain.action import Action
from domain.commands import CloseRun, ModelRef, OpenRun, RecordDecision, RedeliverAction, RequestAction
from domain.delivery import ActionStatus, DispatchState
from domain.errors import ActionNotRetryable, ActionTransitionRefused
from tests.support.commands import RUN_ID, request_command
from tests.support.ledger_commands import commands_of

NOW = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)


def requested() -> tuple[Action, list[object]]:
    action = Action.request(request_command(kind="block-card"), attempt=1, input_id="applicant-17")
    return action, list(action.collect_events())


def redeliver_command(action: Action, token: str = "redeliver-1") -> RedeliverAction:
    return RedeliverAction(token=token, actor="ops", action_id=action.id)


def test_an_attempt_that_fails_then_one_that_succeeds() -> None:
    action, history = requested()
    assert action.dispatch_state == DispatchState.WAITING and action.awaiting_delivery

    # The dispatcher claims delivery 1, and the receiver answers 500.
    assert action.start_delivery("card-service", NOW) == 1
    assert action.dispatch_state == DispatchState.IN_FLIGHT
    action.record_delivery_failed(
        1, 500, "the receiver answered 500", 12.5, retryable=True, next_delivery_at=NOW + timedelta(seconds=5)
    )
    assert action.status == ActionStatus.REQUESTED and action.dispatch_state == DispatchState.WAITING
    assert action.next_delivery_at == NOW + timedelta(seconds=5)

    # Delivery 2 succeeds: the action is committed with the receiver's ref.
    assert action.start_delivery("card-service", NOW + timedelta(seconds=5)) == 2
    action.record_delivered(2, 200, 3.25, "card-block-77")
    assert action.status == ActionStatus.COMMITTED and action.external_ref == "card-block-77"
    assert action.dispatch_state == DispatchState.DELIVERED
    assert [(d["attempt"], d["status_code"], d["outcome"], d["latency_ms"]) for d in action.deliveries] == [
        (1, 500, "failed", 12.5),
        (2, 200, "delivered", 3.25),
    ]
    history += action.collect_events()
    assert [type(event).__name__ for event in history] == [
        "Requested",
        "DeliveryStarted",
        "DeliveryFailed",
        "DeliveryStarted",
        "Committed",
    ]
    # Each step has a token of its own, attributed to the dispatcher.
    assert len({event.token for event in history}) == len(history)
    assert {event.actor for event in history[1:]} == {"dispatcher"}
    # Pure: replaying the events rebuilds the same state.
    rebuilt = project_aggregate(None, history)
    assert rebuilt.deliveries == action.deliveries and rebuilt.status == action.status


def test_a_used_up_schedule_dead_letters_and_a_redelivery_starts_a_fresh_one() -> None:
    action, _ = requested()
    action.start_delivery("card-service", NOW)
    action.record_delivery_failed(
        1, None, "no answer within 10 s", 10_000.0, retryable=True, next_delivery_at=None
    )
    assert action.status == ActionStatus.FAILED and action.retryable
    assert action.dispatch_state == DispatchState.DEAD_LETTERED and not action.awaiting_delivery
    assert action.last_error == "delivery 1 failed: no answer within 10 s"
    with pytest.raises(ActionTransitionRefused):
        action.start_delivery("card-service", NOW)

    # An operator redelivers: a fresh schedule, numbering goes on.
    assert action.redeliver(redeliver_command(action), NOW + timedelta(hours=1)) is None
    assert action.awaiting_delivery and action.deliveries_in_schedule == 0
    assert action.next_delivery_at == NOW + timedelta(hours=1)
    # The same token again is a replay; a second redelivery while one is pending is refused.
    assert action.redeliver(redeliver_command(action), NOW) == action.version
    with pytest.raises(ActionTransitionRefused, match="already being redelivered"):
        action.redeliver(redeliver_command(action, "redeliver-2"), NOW)
    assert action.start_delivery("card-service", NOW + timedelta(hours=1)) == 2
    action.record_delivered(2, 204, 1.0, None)
    assert action.status == ActionStatus.COMMITTED and action.deliveries_in_schedule == 1


def test_gone_stops_at_once_and_cannot_be_redelivered() -> None:
    action, _ = requested()
    action.start_delivery("card-service", NOW)
    action.record_delivery_failed(
        1, 410, "the receiver answered 410", 2.0, retryable=False, next_delivery_at=NOW
    )
    assert action.status == ActionStatus.FAILED and not action.retryable
    assert action.dispatch_state == DispatchState.STOPPED
    with pytest.raises(ActionNotRetryable):
        action.redeliver(redeliver_command(action), NOW)


def test_only_a_failed_action_is_redelivered_and_only_the_delivery_in_flight_is_recorded() -> None:
    action, _ = requested()
    with pytest.raises(ActionTransitionRefused, match="only a failed action"):
        action.redeliver(redeliver_command(action), NOW)
    with pytest.raises(ActionTransitionRefused, match="not in flight"):
        action.record_delivered(1, 200, 1.0, None)
    action.start_delivery("card-service", NOW)
    with pytest.raises(ActionTransitionRefused, match=r"delivery 2 .* not in flight"):
        action.record_delivered(2, 200, 1.0, None)

    # A delivery with no outcome is presumed lost when the next one starts.
    assert action.start_delivery("card-service", NOW + timedelta(seconds=11)) == 2
    assert action.deliveries[0]["outcome"] == "lost"
    with pytest.raises(ActionTransitionRefused, match=r"delivery 1 .* not in flight"):
        action.record_delivered(1, 200, 1.0, None)


def test_the_message_is_the_same_bytes_from_any_copy_of_the_action() -> None:
    action, history = requested()
    body = action_message(action)
    action.start_delivery("card-service", NOW)
    history += action.collect_events()
    assert action_message(project_aggregate(None, history)) == body
    assert body.startswith(b'{"action_id":"') and b'"type":"action.requested"' in body


# --- Through the ledger, on both back ends ----------------------------------------------


def request_through(ledger: DecisionLedger) -> Action:
    commands_of(ledger).runs.open(
        OpenRun(token="open-1", actor="lane-a", run_id=RUN_ID, lane="credit", allow_empty=True)
    )
    commands_of(ledger).decisions.record(
        RecordDecision(
            token="record-1",
            actor="lane-a",
            run_id=RUN_ID,
            input_id="applicant-17",
            outcome="approve",
            model=ModelRef(name="gbm", version="7"),
        )
    )
    command: RequestAction = request_command(kind="block-card")
    result = commands_of(ledger).actions.request(command)
    action = ledger.repository.get(Action.create_id(RUN_ID, command.action_key))
    assert isinstance(action, Action) and result.version == action.version
    return action


def test_saving_delivery_started_is_a_claim(ledger: DecisionLedger) -> None:
    action = request_through(ledger)
    for round_number in range(12):
        # Two dispatchers loaded the same version; both try to start the next delivery.
        first = ledger.repository.get(action.id)
        second = ledger.repository.get(action.id)
        assert first.version == second.version
        first.start_delivery("card-service", NOW)
        second.start_delivery("card-service", NOW)
        ledger.save(first)
        # The loser's save is refused: it does not send.
        with pytest.raises(IntegrityError):
            ledger.save(second)
        winner = ledger.repository.get(action.id)
        assert len(winner.deliveries) == round_number + 1
        winner.record_delivery_failed(
            round_number + 1, 500, "x", 1.0, retryable=True, next_delivery_at=NOW + timedelta(seconds=1)
        )
        ledger.save(winner)


def test_delivery_records_land_after_the_run_is_sealed(ledger: DecisionLedger) -> None:
    action = request_through(ledger)
    action.start_delivery("card-service", NOW)
    ledger.save(action)
    # The caller closes while the attempt is in flight (red: the action is pending).
    commands_of(ledger).runs.seal(CloseRun(token="close-1", actor="lane-a", run_id=RUN_ID))
    # The outcome is still recorded: carrying an action out is not refused by the seal.
    action = ledger.repository.get(action.id)
    action.record_delivered(1, 200, 1.0, "ref-1")
    ledger.save(action)
    assert ledger.repository.get(action.id).status == "committed"
