"""Decisions through the DecisionLedger application, on both back ends: replays write
nothing, refusals write nothing, and the history keeps every event.
"""

from __future__ import annotations

import pytest

from application.answers import Answers
from application.ledger import DecisionLedger
from application.queries.aggregates import AggregateQueries
from domain.commands import CloseRun, CorrectDecision, OpenRun
from domain.errors import (
    DecisionNotFound,
    IdempotencyKeyReused,
    RunNotFound,
    RunNotOpen,
)
from domain.identity import decision_uuid, run_uuid
from domain.run import Run
from tests.support.commands import RUN_ID, record_command
from tests.support.ledger_commands import commands_of


def open_run(ledger: DecisionLedger) -> None:
    commands_of(ledger).runs.open(OpenRun(token="open-1", actor="scheduler", run_id=RUN_ID, lane="credit"))


def test_a_redelivered_decision_answers_the_first_result_and_writes_nothing(
    ledger: DecisionLedger,
) -> None:
    # The scorer records a decision in an open run.
    open_run(ledger)
    first = commands_of(ledger).decisions.record(record_command())
    head_after_record = ledger.index.head_position()

    # Its client times out and sends the same command again.
    again = commands_of(ledger).decisions.record(record_command())

    # The answer is the first one, marked as a replay; no event was added.
    assert (first.replayed, again.replayed) == (False, True)
    assert again.view == first.view
    assert (again.version, again.position) == (first.version, first.position)
    assert ledger.index.head_position() == head_after_record
    assert ledger.recorder.max_notification_id() == head_after_record == 2


def test_a_record_token_reused_for_another_input_is_refused_and_writes_nothing(
    ledger: DecisionLedger,
) -> None:
    # A decision was recorded under token record-1.
    open_run(ledger)
    commands_of(ledger).decisions.record(record_command(token="record-1"))
    head_before = ledger.recorder.max_notification_id()

    # The same token comes back for another applicant.
    with pytest.raises(IdempotencyKeyReused):
        commands_of(ledger).decisions.record(record_command(token="record-1", input_id="applicant-18"))

    # Nothing was written: no event, and no decision for that applicant.
    assert ledger.recorder.max_notification_id() == head_before
    with pytest.raises(DecisionNotFound):
        AggregateQueries(ledger, Answers(ledger)).decision_for_input(RUN_ID, "applicant-18")


def test_a_sealed_run_refuses_new_decisions(ledger: DecisionLedger) -> None:
    # The run is opened, then sealed directly on the aggregate (there is no close yet).
    open_run(ledger)
    run = ledger.repository.get(run_uuid(RUN_ID))
    assert isinstance(run, Run)
    run.seal(CloseRun(token="close-1", actor="scheduler", run_id=RUN_ID))
    ledger.save(run)
    head_after_seal = ledger.index.head_position()

    # A late decision is refused, and nothing is written.
    with pytest.raises(RunNotOpen):
        commands_of(ledger).decisions.record(record_command())
    assert ledger.index.head_position() == head_after_seal


def test_a_decision_for_an_unknown_run_is_refused(ledger: DecisionLedger) -> None:
    with pytest.raises(RunNotFound):
        commands_of(ledger).decisions.record(record_command())
    assert ledger.index.head_position() == 0


def test_a_corrected_decision_shows_both_events_in_its_history(ledger: DecisionLedger) -> None:
    # A decision is recorded, then corrected through the application.
    open_run(ledger)
    recorded = commands_of(ledger).decisions.record(record_command())
    decision_id = decision_uuid(RUN_ID, "applicant-17")
    correction = CorrectDecision(
        token="correct-1", actor="reviewer", decision_id=decision_id, outcome="decline", reason="fraud"
    )
    corrected = commands_of(ledger).decisions.correct(correction)

    # The current view shows the decline at version 2 ...
    assert (corrected.view.outcome, corrected.version, corrected.replayed) == ("decline", 2, False)

    # ... the history shows both events, and the past position still sees the approval.
    history = AggregateQueries(ledger, Answers(ledger)).decision_history(decision_id)
    assert [(entry.event_type, entry.actor) for entry in history] == [
        ("Recorded", "scorer"),
        ("Corrected", "reviewer"),
    ]
    as_recorded = AggregateQueries(ledger, Answers(ledger)).decision(
        decision_id, as_of_position=recorded.position
    )
    assert as_recorded.outcome == "approve"
