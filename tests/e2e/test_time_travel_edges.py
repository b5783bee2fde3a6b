"""The edges of time travel: before the first event, position 0, the future, malformed
points in time, resources that did not exist yet, and valid times before any outcome.

The README's story is told once per back end (SQLite and PostgreSQL), then a second run
is opened after it, so there is something that did not exist yet at every step of it.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.support.story import (
    AS_OF_HEADER,
    BACKENDS,
    PROBLEM_MEDIA_TYPE,
    RUN_ID,
    STEPS,
    Step,
    Story,
    as_known_at,
    assert_not_known,
    knowledge_times,
    known_at,
    moment,
    story_told_on,
    write,
)

LATER_RUN_ID = "tt-later"
ONE_MICROSECOND = timedelta(microseconds=1)


@pytest.fixture(scope="module", params=BACKENDS)
def told(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[TestClient, Story]]:
    with story_told_on(request.param, tmp_path_factory) as (client, story):
        # After the story, another run is opened: at every step of the story it did not exist yet.
        later = write(client, "/runs", "open-later", {"run_id": LATER_RUN_ID, "lane": "fraud"})
        known = knowledge_times(client, later["position"])
        story.steps["later run opened"] = Step(
            "later run opened", later["position"], known[later["position"]]
        )
        yield client, story


@pytest.fixture
def api(told: tuple[TestClient, Story]) -> TestClient:
    return told[0]


@pytest.fixture
def story(told: tuple[TestClient, Story]) -> Story:
    return told[1]


def readable_paths(story: Story) -> list[str]:
    """Every read that takes a point in time, on the story's run, decision and action."""
    decision_id = story.approval["decision_id"]
    return [
        f"/runs/{RUN_ID}",
        f"/runs/{RUN_ID}/summary",
        f"/runs/{RUN_ID}/reconciliation",
        f"/runs/{RUN_ID}/proof",
        f"/runs/{RUN_ID}/decisions/app-1",
        "/runs",
        f"/decisions/{decision_id}",
        f"/decisions/{decision_id}/history",
        f"/actions/{story.letter_id}",
        "/audit",
    ]


def head_of(story: Story) -> int:
    return story.steps["later run opened"].position


def problem_of(api: TestClient, path: str, status: int, slug: str, **params: Any) -> dict[str, Any]:
    response = api.get(path, params=params)
    assert response.status_code == status, (path, response.text)
    assert response.headers["content-type"].startswith(PROBLEM_MEDIA_TYPE), path
    problem = response.json()
    assert (problem["type"], problem["status"]) == (f"/problems/{slug}", status), path
    assert problem["detail"], path
    return problem


# --- Before anything was known ----------------------------------------------------------------


def test_a_time_before_the_first_event_knows_nothing(api: TestClient, story: Story) -> None:
    first_known = moment(story.steps["opened"].known_at)
    for before in (first_known - ONE_MICROSECOND, datetime(2000, 1, 1, tzinfo=UTC)):
        for path in readable_paths(story):
            # Every read, even a listing, says that nothing was known yet.
            problem_of(api, path, 404, "nothing-known-yet", as_of=before.isoformat())

    # The first event's own knowledge time already knows it.
    assert known_at(api, f"/runs/{RUN_ID}", story.steps["opened"])["status"] == "open"


def test_position_zero_knows_nothing(api: TestClient, story: Story) -> None:
    for path in readable_paths(story):
        problem_of(api, path, 404, "nothing-known-yet", as_of_position=0)


# --- The future -------------------------------------------------------------------------------------


def test_a_time_or_a_position_in_the_future_gives_the_current_state_at_the_head(
    api: TestClient, story: Story
) -> None:
    head = head_of(story)
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    for path in readable_paths(story):
        # What is known now, read once the views reached the head.
        now = api.get(path, params={"min_position": head})
        assert now.status_code == 200, now.text

        # Tomorrow, or a position far ahead, gives the same answer, reflecting the head.
        for point in ({"as_of": tomorrow}, {"as_of_position": head + 1_000_000}):
            future = api.get(path, params=point)
            assert future.status_code == 200, (path, point, future.text)
            assert future.headers[AS_OF_HEADER] == str(head), (path, point)
            assert future.json() == now.json(), (path, point)


# --- Between steps --------------------------------------------------------------------------------


def test_a_time_between_two_steps_answers_as_of_the_earlier_one(api: TestClient, story: Story) -> None:
    steps = [story.steps[name] for name in STEPS]
    for earlier, later in pairwise(steps):
        # Halfway between two steps' knowledge times, only the earlier step was known.
        halfway = moment(earlier.known_at) + (moment(later.known_at) - moment(earlier.known_at)) / 2
        between = Step(f"between {earlier.name} and {later.name}", earlier.position, halfway.isoformat())
        for path in (f"/runs/{RUN_ID}", f"/runs/{RUN_ID}/summary"):
            assert known_at(api, path, between) == known_at(api, path, earlier), (path, between)


# --- Malformed points in time -----------------------------------------------------------------------


def test_an_as_of_without_an_offset_is_refused(api: TestClient, story: Story) -> None:
    naive = moment(story.steps["decided"].known_at).replace(tzinfo=None).isoformat()
    for path in readable_paths(story):
        # A time without an offset names no instant: 422, whatever the resource.
        problem_of(api, path, 422, "invalid-command", as_of=naive)
        # Neither does text that is no time at all.
        problem_of(api, path, 422, "validation-error", as_of="yesterday")

    # The same holds for a valid time.
    decision_path = f"/decisions/{story.approval['decision_id']}"
    problem_of(api, decision_path, 422, "invalid-command", valid_at=naive)


def test_as_of_and_as_of_position_together_are_refused(api: TestClient, story: Story) -> None:
    step = story.steps["decided"]
    for path in readable_paths(story):
        problem_of(api, path, 422, "invalid-command", as_of=step.known_at, as_of_position=step.position)


# --- What did not exist yet ---------------------------------------------------------------------------


def test_a_resource_that_did_not_exist_yet_is_not_found_as_of_then(api: TestClient, story: Story) -> None:
    opened = story.steps["later run opened"]
    for step in story:
        # At every step of the story, the later run was unknown: its run, summary and reconciliation ...
        for path in (
            f"/runs/{LATER_RUN_ID}",
            f"/runs/{LATER_RUN_ID}/summary",
            f"/runs/{LATER_RUN_ID}/reconciliation",
        ):
            assert_not_known(as_known_at(api, path, step))
        # ... and the listing did not hold it.
        assert [run["run_id"] for run in known_at(api, "/runs", step)["runs"]] == [RUN_ID]

    # From its opening on, it is known, open and empty.
    assert known_at(api, f"/runs/{LATER_RUN_ID}", opened)["status"] == "open"
    assert known_at(api, f"/runs/{LATER_RUN_ID}/summary", opened)["event_count"] == 1
    assert [run["run_id"] for run in known_at(api, "/runs", opened)["runs"]] == [RUN_ID, LATER_RUN_ID]

    # The story's action was unknown before it was requested.
    assert_not_known(as_known_at(api, f"/actions/{story.letter_id}", story.steps["corrected"]))


def test_a_run_that_never_existed_is_not_found_at_any_point(api: TestClient, story: Story) -> None:
    # Now, it is simply not found; as of any step, nothing was known of it.
    problem_of(api, "/runs/never-opened", 404, "run-not-found")
    problem_of(api, "/runs/never-opened", 404, "nothing-known-yet", as_of_position=story.head)


def test_a_valid_time_before_the_first_effective_time_is_not_found(api: TestClient, story: Story) -> None:
    # The approval applies from when it occurred, and the decline from when it was back-dated to:
    # the history says from when each applies.
    path = f"/decisions/{story.approval['decision_id']}"
    history = api.get(f"{path}/history").json()["events"]
    decided_at = min(moment(event["effective_at"]) for event in history)
    just_before = (decided_at - ONE_MICROSECOND).isoformat()

    # Just before that, no outcome was in effect: as known now, and as known at each step since.
    problem_of(api, path, 404, "nothing-known-yet", valid_at=just_before)
    for step in story.since("decided"):
        assert_not_known(as_known_at(api, path, step, valid_at=just_before))
        assert_not_known(as_known_at(api, f"/runs/{RUN_ID}/decisions/app-1", step, valid_at=just_before))

    # From that instant on, it was.
    assert (
        known_at(api, path, story.steps["decided"], valid_at=decided_at.isoformat())["outcome"] == "approve"
    )
