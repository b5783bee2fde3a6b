"""When the next attempt is due: the schedule, its jitter and the Retry-After floor
(pure functions, no clock but the one passed in)."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from application.dispatch.schedule import JITTER, STUCK_GRACE_S, due_at, retry_at
from domain.action import Action
from infrastructure.effectors import Effector
from tests.support.commands import request_command

NOW = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)


def effector(schedule: tuple[float, ...], timeout_s: float = 10.0) -> Effector:
    return Effector(
        "card-service", "http://127.0.0.1:1/", frozenset({"block-card"}), "whsec_x", timeout_s, schedule
    )


@given(
    schedule=st.lists(st.floats(0, 86_400), min_size=1, max_size=10),
    made=st.integers(0, 12),
    retry_after=st.none() | st.floats(0, 86_400),
    seed=st.integers(),
)
def test_the_next_attempt_follows_the_schedule_within_the_jitter_and_never_before_retry_after(
    schedule: list[float], made: int, retry_after: float | None, seed: int
) -> None:
    at = retry_at(effector(tuple(schedule)), made, NOW, retry_after, random.Random(seed))
    if made >= len(schedule):
        assert at is None  # the schedule is used up: dead letter
        return
    assert at is not None
    wait = (at - NOW).total_seconds()
    if retry_after is not None:
        assert wait >= retry_after - 1e-6
    if retry_after is None or retry_after <= schedule[made] * (1 - JITTER):
        assert schedule[made] * (1 - JITTER) - 1e-6 <= wait <= schedule[made] * (1 + JITTER) + 1e-6


def test_jitter_spreads_the_attempts() -> None:
    rng = random.Random(7)
    waits = {retry_at(effector((0, 100)), 1, NOW, None, rng) for _ in range(50)}
    assert len(waits) > 40


def test_when_an_action_is_due() -> None:
    action = Action.request(request_command(kind="block-card"), attempt=1, input_id="applicant-17")
    card = effector((2.0, 30.0), timeout_s=5.0)
    # First attempt: the first step after the request.
    assert due_at(action, card) == action.created_on + timedelta(seconds=2)
    # In flight: presumed lost after the timeout (and a grace).
    action.start_delivery("card-service", NOW)
    assert due_at(action, card) == NOW + timedelta(seconds=5 + STUCK_GRACE_S)
    # Failed with a retry left: when the failure said.
    action.record_delivery_failed(
        1, 503, "busy", 1.0, retryable=True, next_delivery_at=NOW + timedelta(seconds=31)
    )
    assert due_at(action, card) == NOW + timedelta(seconds=31)
    # Committed: nothing is due.
    action.start_delivery("card-service", NOW + timedelta(seconds=31))
    action.record_delivered(2, 200, 1.0, None)
    assert due_at(action, card) is None
