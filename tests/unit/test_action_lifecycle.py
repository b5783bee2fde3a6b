"""The life of an action: a side effect requested for a decision.

    requested -> committed | failed;  failed -> committed (retry) | failed | waived

The domain tests drive the Action aggregate directly, with no database. The same commands
through the application: tests/integration/test_action_commands.py.
"""

from __future__ import annotations

import pytest

from domain.action import Action
from domain.commands import (
    CommitAction,
    FailAction,
    WaiveAction,
)
from domain.delivery import ActionStatus
from domain.errors import (
    ActionAlreadyCommitted,
    ActionNotRetryable,
    ActionTransitionRefused,
    IdempotencyKeyReused,
    InvalidCommand,
)
from domain.identity import action_uuid
from tests.support.commands import DECISION_ID, RUN_ID, request_command


def requested_action() -> Action:
    """An action requested in attempt 1 whose Requested event is already saved."""
    action = Action.request(request_command(), attempt=1, input_id="applicant-17")
    action.collect_events()
    return action


def commit(action: Action, token: str = "commit-1") -> int | None:
    command = CommitAction(
        token=token, actor="mailer", action_id=action.id, external_ref="letter-991", result={"ok": True}
    )
    return action.commit(command, attempt=1)


def fail(action: Action, token: str = "fail-1", *, retryable: bool = True) -> int | None:
    command = FailAction(
        token=token, actor="mailer", action_id=action.id, error="SMTP 451", retryable=retryable
    )
    return action.fail(command, attempt=1)


def waive(action: Action, token: str = "waive-1") -> int | None:
    command = WaiveAction(token=token, actor="operator", action_id=action.id, reason="sent by hand")
    return action.waive(command, attempt=1)


def pending_event_names(action: Action) -> list[str]:
    return [type(domain_event).__name__ for domain_event in action.collect_events()]


# --- Requesting ------------------------------------------------------------------------


def test_requesting_an_action_names_it_by_its_key_in_the_run() -> None:
    # The dispatcher requests a letter for a decision.
    action = Action.request(request_command(), attempt=1, input_id="applicant-17")

    # The action is named by the run and the client's key, and waits to be carried out.
    assert action.id == action_uuid(RUN_ID, "send-offer-17")
    assert (action.status, action.failures, action.retryable) == (ActionStatus.REQUESTED, 0, True)
    assert (action.decision_id, action.input_id) == (str(DECISION_ID), "applicant-17")

    # One Requested event carries the run, the actor and the token.
    [requested] = action.collect_events()
    assert type(requested).__name__ == "Requested"
    assert (requested.run_id, requested.actor, requested.token) == (RUN_ID, "dispatcher", "request-1")


def test_requesting_the_same_action_again_is_a_replay_whatever_the_token() -> None:
    action = requested_action()

    assert action.replay_of_request(request_command(token="request-1")) == 1
    assert action.replay_of_request(request_command(token="request-2")) == 1
    assert pending_event_names(action) == []


def test_the_same_key_for_a_different_action_is_refused() -> None:
    # The key send-offer-17 names a letter with the offer template.
    action = requested_action()

    # Another request under that key asks for another template.
    with pytest.raises(IdempotencyKeyReused):
        action.replay_of_request(request_command(token="request-2", params={"template": "decline"}))


def test_a_request_token_reused_for_another_target_is_refused() -> None:
    action = requested_action()

    with pytest.raises(IdempotencyKeyReused):
        action.replay_of_request(request_command(token="request-1", target="someone@example.org"))


@pytest.mark.parametrize(
    "changes, field",
    [
        ({"kind": "send letter"}, "kind"),
        ({"kind": ""}, "kind"),
        ({"action_key": "   "}, "action_key"),
        ({"params": {"when": {1, 2}}}, "params"),
        ({"params": {"blob": "x" * (64 * 1024)}}, "params"),
        ({"run_id": "no spaces allowed"}, "run_id"),
    ],
)
def test_a_malformed_request_is_an_invalid_command(changes: dict[str, object], field: str) -> None:
    with pytest.raises(InvalidCommand) as refused:
        request_command(**changes)
    assert refused.value.field == field


def test_a_failure_whose_retryable_flag_is_not_a_boolean_is_an_invalid_command() -> None:
    with pytest.raises(InvalidCommand) as refused:
        FailAction(
            token="fail-1",
            actor="mailer",
            action_id=DECISION_ID,
            error="x",
            retryable="no",  # type: ignore[arg-type]
        )
    assert refused.value.field == "retryable"


# --- Committing --------------------------------------------------------------------------


def test_committing_a_requested_action_records_its_outcome() -> None:
    action = requested_action()

    commit(action)

    assert action.status == ActionStatus.COMMITTED
    assert (action.external_ref, action.result) == ("letter-991", {"ok": True})
    assert pending_event_names(action) == ["Committed"]


def test_a_redelivered_commit_is_a_replay_without_a_new_event() -> None:
    action = requested_action()
    commit(action, token="commit-1")
    action.collect_events()

    assert commit(action, token="commit-1") == 2
    assert pending_event_names(action) == []


def test_a_committed_action_refuses_every_further_transition() -> None:
    # The letter was sent.
    action = requested_action()
    commit(action, token="commit-1")
    action.collect_events()

    # A second commit, a failure report and a waiver, each under a new token, are refused.
    with pytest.raises(ActionAlreadyCommitted):
        commit(action, token="commit-2")
    with pytest.raises(ActionAlreadyCommitted):
        fail(action, token="fail-1")
    with pytest.raises(ActionAlreadyCommitted):
        waive(action, token="waive-1")

    # It stays committed, and nothing new was triggered.
    assert action.status == ActionStatus.COMMITTED
    assert pending_event_names(action) == []


def test_reusing_the_commit_token_for_a_failure_report_is_refused() -> None:
    action = requested_action()
    commit(action, token="shared-token")

    with pytest.raises(IdempotencyKeyReused):
        fail(action, token="shared-token")


# --- Failing, retrying and waiving ---------------------------------------------------------


def test_a_retryable_failure_can_be_retried_until_it_commits() -> None:
    # The mail server refused twice, then accepted.
    action = requested_action()
    fail(action, token="fail-1")
    fail(action, token="fail-2")
    assert (action.status, action.failures, action.last_error) == ("failed", 2, "SMTP 451")
    commit(action, token="commit-1")

    # The action is committed and remembers how often it failed on the way.
    assert (action.status, action.failures) == (ActionStatus.COMMITTED, 2)
    assert pending_event_names(action) == ["Failed", "Failed", "Committed"]


def test_a_failure_that_is_not_retryable_cannot_commit() -> None:
    action = requested_action()
    fail(action, retryable=False)

    with pytest.raises(ActionNotRetryable):
        commit(action, token="commit-1")
    assert action.status == ActionStatus.FAILED


def test_a_failed_action_can_be_waived_and_then_nothing_else() -> None:
    # The letter could not be sent and an operator waives it.
    action = requested_action()
    fail(action, retryable=False)
    waive(action)
    assert (action.status, action.waive_reason) == (ActionStatus.WAIVED, "sent by hand")
    action.collect_events()

    # A waived action neither commits nor fails any more.
    with pytest.raises(ActionTransitionRefused):
        commit(action, token="commit-1")
    with pytest.raises(ActionTransitionRefused):
        fail(action, token="fail-2")
    assert action.status == ActionStatus.WAIVED
    assert pending_event_names(action) == []


def test_an_action_that_has_not_failed_cannot_be_waived() -> None:
    action = requested_action()

    with pytest.raises(ActionTransitionRefused):
        waive(action)
    assert action.status == ActionStatus.REQUESTED
