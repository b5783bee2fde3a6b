"""Actions through the DecisionLedger application, on both back ends: a redelivered
command answers its first result and writes nothing.
"""

from __future__ import annotations

from application.ledger import DecisionLedger
from domain.commands import (
    CommitAction,
    ModelRef,
    OpenRun,
    RecordDecision,
)
from domain.identity import action_uuid
from tests.support.commands import RUN_ID, request_command
from tests.support.ledger_commands import commands_of


def test_redelivered_action_commands_answer_the_first_results_and_write_nothing(
    ledger: DecisionLedger,
) -> None:
    # A run with one decision, for which the dispatcher requests a letter.
    commands_of(ledger).runs.open(OpenRun(token="open-1", actor="scheduler", run_id=RUN_ID, lane="credit"))
    commands_of(ledger).decisions.record(
        RecordDecision(
            token="record-1",
            actor="scorer",
            run_id=RUN_ID,
            input_id="applicant-17",
            outcome="approve",
            model=ModelRef("scorecard", "7.1"),
        )
    )
    requested = commands_of(ledger).actions.request(request_command())
    commit_command = CommitAction(
        token="commit-1", actor="mailer", action_id=action_uuid(RUN_ID, "send-offer-17")
    )
    committed = commands_of(ledger).actions.commit(commit_command)
    head_after_commit = ledger.recorder.max_notification_id()

    # Both commands are delivered again.
    requested_again = commands_of(ledger).actions.request(request_command())
    committed_again = commands_of(ledger).actions.commit(commit_command)

    # Each answer is the first one, marked as a replay, and the log did not grow.
    assert (requested.replayed, committed.replayed) == (False, False)
    assert (requested_again.replayed, committed_again.replayed) == (True, True)
    assert requested_again.view == requested.view
    assert committed_again.view == committed.view
    assert committed_again.view.status == "committed"
    assert ledger.recorder.max_notification_id() == head_after_commit == 4
