"""Runs through the DecisionLedger application, on both back ends: replays write
nothing, and every stored event says which run and who.
"""

from __future__ import annotations

import pytest

from application.ledger import DecisionLedger
from domain.commands import ReopenRun
from domain.errors import (
    IdempotencyKeyReused,
    RunNotRejected,
)
from domain.identity import run_uuid
from tests.support.commands import RUN_ID, admit_command, open_command
from tests.support.ledger_commands import commands_of


def test_reopening_an_open_run_is_refused(ledger: DecisionLedger) -> None:
    commands_of(ledger).runs.open(open_command())

    with pytest.raises(RunNotRejected):
        commands_of(ledger).runs.reopen(ReopenRun(token="reopen-1", actor="ops", run_id=RUN_ID, reason="x"))


def test_a_redelivered_open_answers_the_first_result_and_writes_nothing(
    ledger: DecisionLedger,
) -> None:
    # The scheduler opens the run.
    first = commands_of(ledger).runs.open(open_command(token="open-1"))
    head_after_open = ledger.index.head_position()

    # Its retry, under the same token, and a twin under a new token, both replay.
    retried = commands_of(ledger).runs.open(open_command(token="open-1"))
    twin = commands_of(ledger).runs.open(open_command(token="open-2"))

    # Every answer is the first one, and the log did not grow.
    assert first.replayed is False
    assert (retried.replayed, twin.replayed) == (True, True)
    assert retried.view == twin.view == first.view
    assert ledger.index.head_position() == head_after_open == 1
    assert ledger.recorder.max_notification_id() == 1


def test_the_open_token_reused_for_another_run_writes_nothing(ledger: DecisionLedger) -> None:
    # The run is opened under token open-1.
    commands_of(ledger).runs.open(open_command(token="open-1"))

    # The same token arrives for a different run.
    with pytest.raises(IdempotencyKeyReused):
        commands_of(ledger).runs.open(open_command(token="open-1", run_id="another-run"))

    # Nothing was written for it.
    assert ledger.recorder.max_notification_id() == 1
    assert list(ledger.events.get(run_uuid("another-run"))) == []


def test_every_run_event_says_which_run_and_who(ledger: DecisionLedger) -> None:
    # The scheduler opens the run and the loader admits a batch.
    commands_of(ledger).runs.open(open_command())
    commands_of(ledger).runs.admit(admit_command("admit-1", "a", "b"))

    # The stored events, read back, carry the run ID and the actor.
    stored = list(ledger.events.get(run_uuid(RUN_ID)))
    assert [type(e).__name__ for e in stored] == ["Opened", "BasisAdmitted"]
    assert [(e.run_id, e.actor, e.attempt) for e in stored] == [
        (RUN_ID, "scheduler", 1),
        (RUN_ID, "loader", 1),
    ]
