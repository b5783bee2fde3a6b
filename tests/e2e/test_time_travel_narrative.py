"""What did we know then? The README's time-travel story, asked at every step.

A credit run admits two applications. The first is approved, then the approval is
corrected to a decline that applied all along (a back-dated `effective_at`), and the
decline letter goes out. The first close is red (the second application has no
decision); the run is reopened, remediated and closed green.

Each write answers with its position; the audit log gives each position's knowledge
time. Every read is then asked as of every step, both ways (`as_of_position` and an
RFC 3339 `as_of`), and must give exactly what was known at that step, with the
`Ledger-As-Of-Position` header naming that step's position.

The story is told once per back end (SQLite and PostgreSQL) and shared by the tests of
this module, which only read: `api` here is built as the conftest's is (the real app,
open local mode, projections running in-process) but kept for the whole module.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from domain.basis import basis_digest
from tests.support.story import (
    AS_OF_HEADER,
    BACKENDS,
    RUN_ID,
    Story,
    as_known_at,
    assert_not_known,
    known_at,
    moment,
    story_told_on,
)

#: A run with no dispatched action: the dispatcher made no delivery.
NO_DELIVERIES = {"delivery_attempts": 0, "delivery_failures": 0, "dead_letters": 0}


@pytest.fixture(scope="module", params=BACKENDS)
def told(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[TestClient, Story]]:
    with story_told_on(request.param, tmp_path_factory) as told_story:
        yield told_story


@pytest.fixture
def api(told: tuple[TestClient, Story]) -> TestClient:
    return told[0]


@pytest.fixture
def story(told: tuple[TestClient, Story]) -> Story:
    return told[1]


# --- The run --------------------------------------------------------------------------------


def test_the_run_is_shown_as_it_stood_at_each_step(api: TestClient, story: Story) -> None:
    # Which status, attempt and verdicts the run had at each step ...
    expected = {
        "opened": ("open", 1, []),
        "admitted": ("open", 1, []),
        "decided": ("open", 1, []),
        "corrected": ("open", 1, []),
        "letter requested": ("open", 1, []),
        "letter sent": ("open", 1, []),
        "sealed": ("sealed", 1, []),
        "rejected": ("rejected", 1, [(1, "rejected")]),
        "reopened": ("open", 2, [(1, "rejected")]),
        "remediated": ("open", 2, [(1, "rejected")]),
        "sealed again": ("sealed", 2, [(1, "rejected")]),
        "committed": ("committed", 2, [(1, "rejected"), (2, "committed")]),
    }
    # ... and the step of the run's own latest event then (decisions and actions are not its events).
    latest_run_event = {
        "opened": "opened",
        "admitted": "admitted",
        "decided": "admitted",
        "corrected": "admitted",
        "letter requested": "admitted",
        "letter sent": "admitted",
        "sealed": "sealed",
        "rejected": "rejected",
        "reopened": "reopened",
        "remediated": "reopened",
        "sealed again": "sealed again",
        "committed": "committed",
    }
    for step in story:
        run = known_at(api, f"/runs/{RUN_ID}", step)
        verdicts = [(verdict["attempt"], verdict["verdict"]) for verdict in run["verdicts"]]
        assert (run["status"], run["attempt"], verdicts) == expected[step.name], step
        assert run["position"] == story.steps[latest_run_event[step.name]].position, step
        assert run["admitted_count"] == (0 if step.name == "opened" else 2), step

    # The first verdict, as known when it was given, names the missing application.
    [rejection] = known_at(api, f"/runs/{RUN_ID}", story.steps["rejected"])["verdicts"]
    assert [(reason["code"], reason["sample_ids"]) for reason in rejection["reasons"]] == [
        ("missing", ["app-2"])
    ]
    assert rejection["seal_position"] == story.steps["sealed"].position


def test_the_summary_counts_what_was_known_at_each_step(api: TestClient, story: Story) -> None:
    no_actions = {"requested": 0, "pending": 0, "committed": 0, "failed": 0, "waived": 0, **NO_DELIVERIES}
    requested = {**no_actions, "requested": 1, "pending": 1}
    sent = {**no_actions, "requested": 1, "committed": 1}
    # (status, attempt, admitted, decisions, outcomes, corrected, missing, actions) at each step.
    expected = {
        "opened": ("open", 1, 0, 0, {}, 0, 0, no_actions),
        "admitted": ("open", 1, 2, 0, {}, 0, 2, no_actions),
        "decided": ("open", 1, 2, 1, {"approve": 1}, 0, 1, no_actions),
        "corrected": ("open", 1, 2, 1, {"decline": 1}, 1, 1, no_actions),
        "letter requested": ("open", 1, 2, 1, {"decline": 1}, 1, 1, requested),
        "letter sent": ("open", 1, 2, 1, {"decline": 1}, 1, 1, sent),
        "sealed": ("sealed", 1, 2, 1, {"decline": 1}, 1, 1, sent),
        "rejected": ("rejected", 1, 2, 1, {"decline": 1}, 1, 1, sent),
        "reopened": ("open", 2, 2, 1, {"decline": 1}, 1, 1, sent),
        "remediated": ("open", 2, 2, 2, {"decline": 1, "approve": 1}, 1, 0, sent),
        "sealed again": ("sealed", 2, 2, 2, {"decline": 1, "approve": 1}, 1, 0, sent),
        "committed": ("committed", 2, 2, 2, {"decline": 1, "approve": 1}, 1, 0, sent),
    }
    for step in story:
        summary = known_at(api, f"/runs/{RUN_ID}/summary", step)
        assert (
            summary["status"],
            summary["attempt"],
            summary["admitted_count"],
            summary["decision_count"],
            summary["outcome_counts"],
            summary["corrected_count"],
            summary["missing_count"],
            summary["actions"],
        ) == expected[step.name], step
        assert summary["unexpected_count"] == 0
        # The body names the position it reflects; every event so far is the run's, and audited.
        assert summary["as_of_position"] == step.position
        assert summary["event_count"] == summary["audit_records"] == step.position
        assert summary["basis_digest"] == basis_digest([] if step.name == "opened" else ["app-1", "app-2"])


def test_the_reconciliation_names_what_was_missing_at_each_step(api: TestClient, story: Story) -> None:
    for step in story:
        view = known_at(api, f"/runs/{RUN_ID}/reconciliation", step)
        ids = {name: category["ids"] for name, category in view["categories"].items()}
        counts = {name: category["count"] for name, category in view["categories"].items()}

        # Both applications were missing once admitted; app-2 until it was decided.
        if step.name == "opened":
            missing: list[str] = []
        elif step.name == "admitted":
            missing = ["app-1", "app-2"]
        elif step.position < story.steps["remediated"].position:
            missing = ["app-2"]
        else:
            missing = []
        # The letter was pending only between its request and its sending.
        pending = [story.letter_id] if step.name == "letter requested" else []

        assert ids == {"missing": missing, "unexpected": [], "pending": pending, "failed": []}, step
        assert counts == {"missing": len(missing), "unexpected": 0, "pending": len(pending), "failed": 0}, (
            step
        )
        assert view["as_of_position"] == step.position


# --- The decision and its history ------------------------------------------------------------


def test_the_decision_is_shown_as_it_was_known_at_each_step(api: TestClient, story: Story) -> None:
    approval_id = story.approval["decision_id"]
    remediation_id = story.answers["remediated"]["decision_id"]
    for step in story:
        by_id = as_known_at(api, f"/decisions/{approval_id}", step)
        by_input = as_known_at(api, f"/runs/{RUN_ID}/decisions/app-1", step)

        # Before it was recorded, nothing was known of it, by its ID or by its input.
        if step.position < story.steps["decided"].position:
            assert_not_known(by_id)
            assert_not_known(by_input)
            continue

        # Once recorded it was an approval; from the correction on, a decline.
        decision = by_id.json()
        assert by_input.json() == decision
        corrected = step.position >= story.steps["corrected"].position
        assert (decision["outcome"], decision["version"]) == (
            ("decline", 2) if corrected else ("approve", 1)
        ), step
        assert [entry["outcome"] for entry in decision["corrections"]] == (
            ["decline"] if corrected else []
        ), step
        assert decision["position"] == story.steps["corrected" if corrected else "decided"].position

    # The remediating decision for app-2 was unknown until the run was remediated.
    for step in story:
        answer = as_known_at(api, f"/runs/{RUN_ID}/decisions/app-2", step)
        if step.position < story.steps["remediated"].position:
            assert_not_known(answer)
        else:
            assert answer.json()["decision_id"] == remediation_id
            assert (answer.json()["outcome"], answer.json()["recorded_attempt"]) == ("approve", 2)


def test_the_decision_history_holds_only_the_events_known_then_with_both_times(
    api: TestClient, story: Story
) -> None:
    approval_id = story.approval["decision_id"]
    for step in story:
        answer = as_known_at(api, f"/decisions/{approval_id}/history", step)

        # Before the decision there is no history to show.
        if step.position < story.steps["decided"].position:
            assert_not_known(answer)
            continue

        # Before the correction the history holds the approval alone; then both events.
        events = answer.json()["events"]
        corrected = step.position >= story.steps["corrected"].position
        expected = [("Recorded", "approve", "decided")] + (
            [("Corrected", "decline", "corrected")] if corrected else []
        )
        assert [(event["event_type"], event["data"]["outcome"], event["version"]) for event in events] == [
            (event_type, outcome, version)
            for version, (event_type, outcome, _) in enumerate(expected, start=1)
        ], step

        # Every event shows when it became known (the audit log agrees) and from when it applied.
        for event, (_, _, step_name) in zip(events, expected, strict=True):
            assert event["position"] == story.steps[step_name].position
            assert moment(event["recorded_at"]) == moment(story.steps[step_name].known_at)
            assert event["effective_at"] is not None

    # The approval applied from when it occurred; the decline was back-dated to the time the
    # approval's answer gave, so it took effect well before it became known.
    recorded, correction = known_at(api, f"/decisions/{approval_id}/history", story.steps["committed"])[
        "events"
    ]
    assert moment(recorded["effective_at"]) == moment(recorded["occurred_at"])
    assert moment(correction["effective_at"]) == moment(story.approval["recorded_at"])
    assert (
        moment(recorded["effective_at"])
        <= moment(correction["effective_at"])
        < moment(correction["recorded_at"])
    )


# --- The action, the listing and the proof -------------------------------------------------------


def test_the_action_is_shown_as_it_stood_at_each_step(api: TestClient, story: Story) -> None:
    for step in story:
        answer = as_known_at(api, f"/actions/{story.letter_id}", step)

        # Unknown before its request, requested until it was sent, committed after.
        if step.position < story.steps["letter requested"].position:
            assert_not_known(answer)
            continue
        action = answer.json()
        sent = step.position >= story.steps["letter sent"].position
        assert (action["status"], action["version"], action["external_ref"]) == (
            ("committed", 2, "post-1") if sent else ("requested", 1, None)
        ), step


def test_the_run_listing_shows_each_run_with_its_status_then(api: TestClient, story: Story) -> None:
    for step in story:
        # The listing holds the run with the status it had at that step.
        listing = known_at(api, "/runs", step)
        status = known_at(api, f"/runs/{RUN_ID}", step)["status"]
        assert [(run["run_id"], run["status"]) for run in listing["runs"]] == [(RUN_ID, status)], step
        assert listing["as_of_position"] == step.position

        # Filtered by status, it holds the run only under the status it had then.
        for candidate in ("open", "sealed", "rejected", "committed"):
            filtered = known_at(api, "/runs", step, status=candidate)
            assert [run["run_id"] for run in filtered["runs"]] == ([RUN_ID] if candidate == status else []), (
                step,
                candidate,
            )


def test_the_proofs_exist_only_from_the_commit_on(api: TestClient, story: Story) -> None:
    decision_proof = f"/decisions/{story.approval['decision_id']}/proof"
    # Before the green verdict, even when the run was rejected, there is no run proof to give ...
    for step in story.until("sealed again"):
        assert_not_known(as_known_at(api, f"/runs/{RUN_ID}/proof", step), slug="proof-not-found")
    # ... nor a proof that the decision is included in one (and before the decision, nothing at all).
    for step in story.until("admitted"):
        assert_not_known(as_known_at(api, decision_proof, step))
    for step in story.since("decided")[:-1]:
        assert_not_known(as_known_at(api, decision_proof, step), slug="proof-not-found")

    # As of the commit, the run proof is the one served now: attempt 2, sealed where the second close sealed.
    proof = known_at(api, f"/runs/{RUN_ID}/proof", story.steps["committed"])
    assert (proof["run_id"], proof["attempt"], proof["verdict"]) == (RUN_ID, 2, "committed")
    assert proof["seal_position"] == story.steps["sealed again"].position
    current = api.get(f"/runs/{RUN_ID}/proof")
    assert current.status_code == 200 and current.json() == proof

    # And the decision's inclusion proof, as of the commit, rests on that run proof.
    inclusion = known_at(api, decision_proof, story.steps["committed"])
    assert inclusion["decision_id"] == story.approval["decision_id"]
    assert inclusion["run_proof"] == proof


def test_the_present_is_the_last_step(api: TestClient, story: Story) -> None:
    # Asked with no point in time, every read gives what the last step gives, at the head.
    last = story.steps["committed"]
    for path in (
        f"/runs/{RUN_ID}",
        f"/runs/{RUN_ID}/summary",
        f"/runs/{RUN_ID}/reconciliation",
        f"/decisions/{story.approval['decision_id']}",
        f"/decisions/{story.approval['decision_id']}/history",
        f"/actions/{story.letter_id}",
        "/runs",
    ):
        now = api.get(path, params={"min_position": story.head})
        assert now.status_code == 200, now.text
        assert now.headers[AS_OF_HEADER] == str(story.head)
        assert now.json() == known_at(api, path, last), path
