"""The life of a decision: recorded once per (run, input), then corrected only by new
events that keep its history in two times, knowledge time and valid time.

The domain tests drive the Decision aggregate directly, with no database. The same commands
through the application: tests/integration/test_decision_commands.py.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta

import pytest

from domain.clock import system_clock
from domain.decision import Decision
from domain.errors import (
    DecisionAlreadyRecorded,
    IdempotencyKeyReused,
    InvalidCommand,
)
from domain.identity import decision_uuid
from tests.support.commands import RUN_ID, correct_command, record_command

ONE_MICROSECOND = timedelta(microseconds=1)


def saved_decision(**changes: object) -> Decision:
    """A decision recorded in attempt 1 whose Recorded event is already saved."""
    decision = Decision.record(record_command(**changes), attempt=1, now=system_clock())
    decision.collect_events()
    return decision


def pending_event_names(decision: Decision) -> list[str]:
    return [type(domain_event).__name__ for domain_event in decision.collect_events()]


# --- Recording -----------------------------------------------------------------------


def test_recording_a_decision_keeps_the_outcome_and_its_provenance() -> None:
    # The scorer records its decision for an applicant.
    decision = Decision.record(record_command(), attempt=1, now=system_clock())

    # The decision is named by its run and input, and says what was decided by what.
    assert decision.id == decision_uuid(RUN_ID, "applicant-17")
    assert (decision.outcome, decision.score, decision.reasons) == ("approve", 0.82, ["income_ok"])
    assert decision.model == {"name": "scorecard", "version": "7.1"}
    assert decision.recorded_attempt == 1

    # Its history starts with the recorded outcome, effective when it was recorded.
    [entry] = decision.outcome_history
    assert (entry["kind"], entry["outcome"], entry["actor"]) == ("recorded", "approve", "scorer")
    assert entry["effective_at"] == entry["recorded_at"] == decision.created_on

    # One Recorded event carries the run, the attempt, the actor and the token.
    [recorded] = decision.collect_events()
    assert type(recorded).__name__ == "Recorded"
    assert (recorded.run_id, recorded.attempt, recorded.actor, recorded.token) == (
        RUN_ID,
        1,
        "scorer",
        "record-1",
    )


def test_recording_the_same_decision_again_is_a_replay_whatever_the_token() -> None:
    decision = saved_decision()

    # A redelivery, and the same decision sent under a new token, both answer version 1.
    assert decision.replay_of_record(record_command(token="record-1")) == 1
    assert decision.replay_of_record(record_command(token="record-2")) == 1
    assert pending_event_names(decision) == []


def test_a_different_decision_for_a_decided_input_is_refused() -> None:
    # The applicant was approved.
    decision = saved_decision()

    # Another scorer, with its own token, tries to record a decline.
    with pytest.raises(DecisionAlreadyRecorded):
        decision.replay_of_record(record_command(token="record-2", outcome="decline"))
    assert decision.outcome == "approve"


def test_reusing_a_record_token_for_a_changed_decision_is_refused() -> None:
    decision = saved_decision()

    # Same token, another score: the key was reused, it is not a redelivery.
    with pytest.raises(IdempotencyKeyReused):
        decision.replay_of_record(record_command(token="record-1", score=0.5))


# --- Invalid commands ------------------------------------------------------------------


@pytest.mark.parametrize("score", [math.nan, math.inf, -math.inf, True, "0.5"])
def test_a_score_that_is_not_a_finite_number_is_an_invalid_command(score: object) -> None:
    with pytest.raises(InvalidCommand) as refused:
        record_command(score=score)
    assert refused.value.field == "score"


@pytest.mark.parametrize("outcome", ["", "-approve", "approve now", "o" * 65, "ok\n", None])
def test_an_outcome_that_is_not_a_label_is_an_invalid_command(outcome: object) -> None:
    with pytest.raises(InvalidCommand) as refused:
        record_command(outcome=outcome)
    assert refused.value.field == "outcome"


def test_a_reason_code_that_is_not_a_label_is_an_invalid_command() -> None:
    with pytest.raises(InvalidCommand) as refused:
        record_command(reasons=("income_ok", "has space"))
    assert refused.value.field == "reasons[1]"


@pytest.mark.parametrize("input_id", ["", "tab\tinside", "x" * 257])
def test_an_input_id_outside_the_pattern_is_an_invalid_command(input_id: str) -> None:
    with pytest.raises(InvalidCommand) as refused:
        record_command(input_id=input_id)
    assert refused.value.field == "input_id"


def test_a_correction_with_a_non_finite_score_or_a_naive_time_is_an_invalid_command() -> None:
    decision = saved_decision()

    with pytest.raises(InvalidCommand) as bad_score:
        correct_command(decision, score=math.nan)
    with pytest.raises(InvalidCommand) as naive_time:
        correct_command(decision, effective_at=datetime(2024, 6, 1, 12, 0))

    assert (bad_score.value.field, naive_time.value.field) == ("score", "effective_at")


# --- Correcting --------------------------------------------------------------------------


def test_a_correction_is_a_new_event_and_the_history_keeps_the_original() -> None:
    # The applicant was approved and the approval is saved.
    decision = saved_decision()
    original_entry = dict(decision.outcome_history[0])

    # A reviewer corrects it to a decline.
    decision.correct(correct_command(decision), attempt=1, now=system_clock())

    # The correction is a second event; the first one is not touched.
    assert decision.version == 2
    assert pending_event_names(decision) == ["Corrected"]
    assert decision.outcome_history[0] == original_entry

    # The current outcome is the decline; the score and reasons carry over.
    assert (decision.outcome, decision.score, decision.reasons) == ("decline", 0.82, ["income_ok"])
    [correction] = decision.corrections
    assert (correction["version"], correction["actor"], correction["reason"]) == (
        2,
        "reviewer",
        "the income proof was forged",
    )


def test_a_redelivered_correction_is_a_replay_without_a_new_event() -> None:
    decision = saved_decision()
    correction = correct_command(decision)
    decision.correct(correction, attempt=1, now=system_clock())
    decision.collect_events()

    # The reviewer's client retries the same correction.
    assert decision.correct(correction, attempt=1, now=system_clock()) == 2

    assert len(decision.corrections) == 1
    assert pending_event_names(decision) == []


def test_reusing_a_correction_token_for_another_outcome_is_refused() -> None:
    decision = saved_decision()
    decision.correct(correct_command(decision, token="correct-1"), attempt=1, now=system_clock())

    with pytest.raises(IdempotencyKeyReused):
        decision.correct(
            correct_command(decision, token="correct-1", outcome="refer"), attempt=1, now=system_clock()
        )
    assert decision.outcome == "decline"


def test_a_correction_back_dated_to_the_start_replaces_the_outcome_from_the_start() -> None:
    # The applicant was approved at t0.
    decision = saved_decision()
    recorded_at = decision.created_on

    # Later, a reviewer learns the approval was wrong from the very beginning.
    decision.correct(correct_command(decision, effective_at=recorded_at), attempt=1, now=system_clock())

    # Valid time is the back-dated t0, while knowledge time is when it was learnt.
    correction = decision.corrections[0]
    assert correction["effective_at"] == recorded_at < correction["recorded_at"]

    # At t0 and now, the decline applies; before t0 nothing was in effect.
    assert decision.entry_valid_at(recorded_at)["outcome"] == "decline"
    assert decision.entry_valid_at(None)["outcome"] == decision.outcome == "decline"
    assert decision.entry_valid_at(recorded_at - ONE_MICROSECOND) == {}


def test_a_valid_time_query_picks_the_entry_in_effect_at_that_moment() -> None:
    # Approved at t0; declined from t0 on; then referred from the moment of the decline on.
    decision = saved_decision()
    recorded_at = decision.created_on
    decision.correct(
        correct_command(decision, "correct-1", effective_at=recorded_at), attempt=1, now=system_clock()
    )
    declined_at = decision.modified_on
    decision.correct(
        correct_command(decision, "correct-2", outcome="refer", effective_at=declined_at),
        attempt=1,
        now=system_clock(),
    )

    # Each moment of valid time sees the entry in effect then.
    assert decision.entry_valid_at(recorded_at)["outcome"] == "decline"
    assert decision.entry_valid_at(declined_at - ONE_MICROSECOND)["outcome"] == "decline"
    assert decision.entry_valid_at(declined_at)["outcome"] == "refer"
    assert decision.outcome == "refer"
    assert [entry["outcome"] for entry in decision.outcome_history] == [
        "approve",
        "decline",
        "refer",
    ]


def test_a_correction_cannot_take_effect_in_the_future() -> None:
    # A correction says what should have applied; it is not a schedule.
    decision = saved_decision()
    tomorrow = decision.created_on + timedelta(days=1)

    with pytest.raises(InvalidCommand, match="future"):
        decision.correct(correct_command(decision, effective_at=tomorrow), attempt=1, now=system_clock())

    # Nothing was recorded.
    assert decision.version == 1
    assert decision.outcome_history[-1]["kind"] == "recorded"


def test_a_correction_back_dated_before_the_original_is_in_effect_in_between() -> None:
    # Approved at t0; later declined, effective an hour before t0.
    decision = saved_decision()
    recorded_at = decision.created_on
    an_hour_earlier = recorded_at - timedelta(hours=1)
    decision.correct(correct_command(decision, effective_at=an_hour_earlier), attempt=1, now=system_clock())

    # Between the back-dated moment and t0, only the decline was in effect.
    assert decision.entry_valid_at(recorded_at - timedelta(minutes=30))["outcome"] == "decline"
    assert decision.entry_valid_at(an_hour_earlier - ONE_MICROSECOND) == {}


def test_a_correction_back_dated_before_the_original_supersedes_it_from_then_on() -> None:
    # Approved at t0; a reviewer later declines it, effective an hour before t0.
    decision = saved_decision()
    decision.correct(
        correct_command(decision, effective_at=decision.created_on - timedelta(hours=1)),
        attempt=1,
        now=system_clock(),
    )

    # The later knowledge should hold now: the decline, not the approval.
    assert decision.outcome == "decline"
