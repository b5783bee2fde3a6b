"""Bitemporal decisions: which outcome applied at T, according to what we knew at K?

A correction may carry `effective_at`, the (past) time from which its outcome should
have applied. `valid_at=T` picks the outcome in force at T; `as_of`/`as_of_position=K`
picks what the ledger knew. Among the entries in effect at T, the one recorded last
wins. Each test records a decision, corrects it with a back-dated effect, and reads it
for T before and after the effective time and K before and after the correction, by
its ID and by its (run, input). On SQLite and on PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from infrastructure.settings import Settings
from interfaces.api.app import create_app
from tests.support.story import (
    AS_OF_HEADER,
    MODEL,
    Step,
    as_known_at,
    assert_not_known,
    knowledge_times,
    moment,
    write,
)

RUN_ID = "credit-bitemporal"
MILLISECOND = timedelta(milliseconds=1)


class SteppedClock:
    """The time the ledger gives its aggregates here: an hour behind real time (so what a
    decision says it applied from is never after the store learnt it), plus whatever the
    test moved it on by (so a test waits for nothing)."""

    def __init__(self) -> None:
        self.ahead = -timedelta(hours=1)

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.ahead

    def advance(self, by: timedelta) -> None:
        self.ahead += by


@pytest.fixture
def clock() -> SteppedClock:
    return SteppedClock()


@pytest.fixture
def api(api_settings: Settings, clock: SteppedClock) -> Iterator[TestClient]:
    with TestClient(create_app(api_settings, clock=clock)) as client:
        yield client


class CreditLane:
    """A credit lane on one run: it records, corrects and reads one application's decision."""

    def __init__(self, api: TestClient, run_id: str = RUN_ID) -> None:
        self.api = api
        self.run_id = run_id
        self.decision_id = ""
        self.positions: dict[str, int] = {}
        write(api, "/runs", f"{run_id}-open", {"run_id": run_id, "lane": "credit"})
        write(api, f"/runs/{run_id}/basis", f"{run_id}-basis", {"input_ids": ["app-1"]})

    def record(self, outcome: str = "approve") -> datetime:
        """Records the decision; returns the time from which it applies, as its history says."""
        answer = write(
            self.api,
            f"/runs/{self.run_id}/decisions",
            f"{self.run_id}-record",
            {"input_id": "app-1", "outcome": outcome, "model": MODEL},
        )
        self.decision_id = answer["decision_id"]
        self.positions["recorded"] = answer["position"]
        [recorded] = read_ok(self.api, f"/decisions/{self.decision_id}/history").json()["events"]
        return moment(recorded["effective_at"])

    def correct(self, name: str, outcome: str, effective_at: datetime | None) -> dict[str, Any]:
        body: dict[str, Any] = {"outcome": outcome, "reason": f"review: {name}"}
        if effective_at is not None:
            body["effective_at"] = effective_at.isoformat()
        answer = write(self.api, f"/decisions/{self.decision_id}/corrections", f"{self.run_id}-{name}", body)
        self.positions[name] = answer["position"]
        return answer

    def knowledge(self) -> dict[str, Step]:
        """Each write as a point of knowledge: its position and the time it became known."""
        known_at = knowledge_times(self.api, max(self.positions.values()))
        return {name: Step(name, position, known_at[position]) for name, position in self.positions.items()}

    def outcome_at(self, valid_at: datetime, known: Step) -> str | None:
        """The outcome in force at `valid_at` as known at `known` (None: nothing was in
        effect). Asked by ID and by input, by position and by time: all must agree."""
        answers = [
            as_known_at(self.api, path, known, valid_at=valid_at.isoformat())
            for path in (f"/decisions/{self.decision_id}", f"/runs/{self.run_id}/decisions/app-1")
        ]
        by_id, by_input = answers
        if by_id.status_code == 404:
            assert_not_known(by_id)
            assert_not_known(by_input)
            return None
        assert by_id.status_code == 200, by_id.text
        assert by_input.json() == by_id.json()
        # The answer echoes the valid time it was asked about.
        assert moment(by_id.json()["valid_at"]) == valid_at
        return str(by_id.json()["outcome"])


def table_of(
    lane: CreditLane, valid_times: dict[str, datetime], knowledge: dict[str, Step]
) -> dict[tuple[str, str], str | None]:
    """The outcome for every (point of knowledge, valid time) pair."""
    return {
        (known, valid): lane.outcome_at(valid_at, knowledge[known])
        for known in knowledge
        for valid, valid_at in valid_times.items()
    }


def read_ok(api: TestClient, path: str, **params: Any) -> httpx.Response:
    """A GET that must succeed."""
    response = api.get(path, params=params)
    assert response.status_code == 200, response.text
    return response


# --- The README's case: a decline that applied all along ------------------------------------------


def test_a_correction_back_dated_to_the_decision_applied_all_along_but_only_since_we_knew_it(
    api: TestClient,
) -> None:
    # The approval is recorded; it applies from the moment it was recorded.
    lane = CreditLane(api)
    decided_at = lane.record("approve")

    # It is corrected: the decline should have applied from that same moment.
    lane.correct("correction", "decline", effective_at=decided_at)
    knowledge = lane.knowledge()

    # At the decision time, as known before the correction: approve. As known after it: decline.
    assert lane.outcome_at(decided_at, knowledge["recorded"]) == "approve"
    assert lane.outcome_at(decided_at, knowledge["correction"]) == "decline"

    # Without a valid time: what applies now, as known then and as known now.
    path = f"/decisions/{lane.decision_id}"
    assert read_ok(api, path, as_of_position=knowledge["recorded"].position).json()["outcome"] == "approve"
    assert read_ok(api, path).json()["outcome"] == "decline"
    assert read_ok(api, path, valid_at=decided_at.isoformat()).json()["outcome"] == "decline"


# --- T before and after the effective time, K before and after the correction --------------------


def test_the_outcome_depends_on_both_the_valid_time_and_the_knowledge_time(
    api: TestClient, clock: SteppedClock
) -> None:
    # The approval is recorded at t0; 50 ms later a decline is recorded, effective from t0 + 20 ms.
    lane = CreditLane(api)
    decided_at = lane.record("approve")
    clock.advance(50 * MILLISECOND)
    effective_at = decided_at + 20 * MILLISECOND
    lane.correct("correction", "decline", effective_at=effective_at)
    knowledge = lane.knowledge()

    valid_times = {
        "before the decision": decided_at - MILLISECOND,
        "at the decision": decided_at,
        "before the effect": effective_at - MILLISECOND,
        "at the effect": effective_at,
        "now": clock(),
    }
    outcomes = table_of(lane, valid_times, knowledge)

    # Before the correction was known, the approval applied from its recording on.
    assert [outcomes[("recorded", valid)] for valid in valid_times] == [
        None,
        "approve",
        "approve",
        "approve",
        "approve",
    ]
    # Once it was known, the decline applies from its effective time on, and only from then.
    assert [outcomes[("correction", valid)] for valid in valid_times] == [
        None,
        "approve",
        "approve",
        "decline",
        "decline",
    ]


def test_a_correction_may_take_effect_before_the_decision_was_recorded(api: TestClient) -> None:
    # The approval is recorded; the decline is back-dated to an hour before it.
    lane = CreditLane(api)
    decided_at = lane.record("approve")
    back_dated = decided_at - timedelta(hours=1)
    lane.correct("correction", "decline", effective_at=back_dated)
    knowledge = lane.knowledge()

    valid_times = {
        "before the effect": back_dated - MILLISECOND,
        "between": decided_at - timedelta(minutes=30),
        "at the decision": decided_at,
    }
    outcomes = table_of(lane, valid_times, knowledge)

    # Before the correction was known, nothing applied before the decision was recorded.
    assert [outcomes[("recorded", valid)] for valid in valid_times] == [None, None, "approve"]
    # Since then, the decline applies from an hour before; before that, nothing did.
    assert [outcomes[("correction", valid)] for valid in valid_times] == [None, "decline", "decline"]


def test_newer_knowledge_wins_among_the_outcomes_in_effect(api: TestClient, clock: SteppedClock) -> None:
    # t0: approve. Later: decline, effective from t0 + 40 ms. Later still: refer, effective from t0 + 20 ms.
    lane = CreditLane(api)
    decided_at = lane.record("approve")
    clock.advance(60 * MILLISECOND)
    lane.correct("decline", "decline", effective_at=decided_at + 40 * MILLISECOND)
    lane.correct("refer", "refer", effective_at=decided_at + 20 * MILLISECOND)
    knowledge = lane.knowledge()

    valid_times = {f"t0 + {offset} ms": decided_at + offset * MILLISECOND for offset in (10, 20, 30, 40, 50)}
    outcomes = table_of(lane, valid_times, knowledge)

    # Knowing the approval only, it applies throughout.
    assert [outcomes[("recorded", valid)] for valid in valid_times] == ["approve"] * 5
    # Knowing the decline too, it applies from its effective time on.
    assert [outcomes[("decline", valid)] for valid in valid_times] == [
        "approve",
        "approve",
        "approve",
        "decline",
        "decline",
    ]
    # Knowing the referral too, it applies from its (earlier) effective time on, even over the decline:
    # it was recorded last.
    assert [outcomes[("refer", valid)] for valid in valid_times] == [
        "approve",
        "refer",
        "refer",
        "refer",
        "refer",
    ]


def test_the_history_shows_both_times_of_every_event(api: TestClient, clock: SteppedClock) -> None:
    # An approval, then two corrections with back-dated effects, each recorded later.
    lane = CreditLane(api)
    decided_at = lane.record("approve")
    clock.advance(60 * MILLISECOND)
    declined = lane.correct("decline", "decline", effective_at=decided_at + 40 * MILLISECOND)
    referred = lane.correct("refer", "refer", effective_at=decided_at + 20 * MILLISECOND)
    knowledge = lane.knowledge()

    # The history lists every event with its knowledge time (as the audit log has it) and its valid time.
    history = read_ok(api, f"/decisions/{lane.decision_id}/history").json()["events"]
    assert [event["event_type"] for event in history] == ["Recorded", "Corrected", "Corrected"]
    assert [event["position"] for event in history] == [
        knowledge[name].position for name in ("recorded", "decline", "refer")
    ]
    assert [moment(event["recorded_at"]) for event in history] == [
        moment(knowledge[name].known_at) for name in ("recorded", "decline", "refer")
    ]
    assert [moment(event["effective_at"]) for event in history] == [
        decided_at,
        decided_at + 40 * MILLISECOND,
        decided_at + 20 * MILLISECOND,
    ]
    assert [event["data"]["outcome"] for event in history] == ["approve", "decline", "refer"]

    # Knowledge only moves forward; the valid times do not have to.
    recorded_times = [moment(event["recorded_at"]) for event in history]
    assert recorded_times == sorted(recorded_times)
    assert all(moment(event["effective_at"]) <= moment(event["recorded_at"]) for event in history)

    # The decision's corrections say the same.
    corrections = referred["corrections"]
    assert [(entry["outcome"], moment(entry["effective_at"])) for entry in corrections] == [
        ("decline", moment(declined["corrections"][0]["effective_at"])),
        ("refer", decided_at + 20 * MILLISECOND),
    ]

    # As of the first correction, the history ends there.
    earlier = as_known_at(api, f"/decisions/{lane.decision_id}/history", knowledge["decline"])
    assert [event["event_type"] for event in earlier.json()["events"]] == ["Recorded", "Corrected"]
    assert earlier.headers[AS_OF_HEADER] == str(knowledge["decline"].position)


def test_a_correction_cannot_take_effect_in_the_future(api: TestClient) -> None:
    # The approval is recorded.
    lane = CreditLane(api)
    lane.record("approve")
    head = api.get(f"/decisions/{lane.decision_id}").headers[AS_OF_HEADER]

    # A correction that would only apply tomorrow is refused, and writes nothing.
    tomorrow = datetime.now(UTC) + timedelta(days=1)
    response = api.post(
        f"/decisions/{lane.decision_id}/corrections",
        json={"outcome": "decline", "reason": "not yet", "effective_at": tomorrow.isoformat()},
        headers={"Idempotency-Key": "too-early"},
    )
    assert response.status_code == 422, response.text
    assert response.json()["type"] == "/problems/invalid-command"
    after = api.get(f"/decisions/{lane.decision_id}")
    assert (after.json()["outcome"], after.headers[AS_OF_HEADER]) == ("approve", head)
