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
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from domain.basis import basis_digest
from tests.conftest import PostgresSchema, require_postgres

#: A run with no dispatched action: the dispatcher made no delivery.
NO_DELIVERIES = {"delivery_attempts": 0, "delivery_failures": 0, "dead_letters": 0}

RUN_ID = "tt-1"
MODEL = {"name": "scorecard", "version": "3"}
AS_OF_HEADER = "Ledger-As-Of-Position"
PROBLEM_MEDIA_TYPE = "application/problem+json"

#: The steps of the story, in the order they happen.
STEPS = (
    "opened",
    "admitted",
    "decided",
    "corrected",
    "letter requested",
    "letter sent",
    "sealed",
    "rejected",
    "reopened",
    "remediated",
    "sealed again",
    "committed",
)


@dataclass(frozen=True)
class Step:
    """One step of the story: where it landed in the log, and when that became known."""

    name: str
    position: int
    known_at: str


@dataclass
class Story:
    """What the story's writes answered, and when each step became known."""

    steps: dict[str, Step] = field(default_factory=dict)
    answers: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def approval(self) -> dict[str, Any]:
        return self.answers["decided"]

    @property
    def letter_id(self) -> str:
        return str(self.answers["letter requested"]["action_id"])

    @property
    def head(self) -> int:
        return self.steps["committed"].position

    def __iter__(self) -> Iterator[Step]:
        return iter(self.steps[name] for name in STEPS)

    def until(self, last: str) -> list[Step]:
        """The steps up to and including `last`."""
        return [self.steps[name] for name in STEPS[: STEPS.index(last) + 1]]

    def since(self, first: str) -> list[Step]:
        """The steps from `first` on."""
        return [self.steps[name] for name in STEPS[STEPS.index(first) :]]


# --- Telling the story -----------------------------------------------------------------


def write(api: TestClient, path: str, key: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    response = api.post(path, json=body, headers={"Idempotency-Key": key})
    assert response.status_code in (200, 201), response.text
    assert response.headers["Idempotent-Replayed"] == "false"
    return response.json()


def knowledge_times(api: TestClient, head: int) -> dict[int, str]:
    """Each position's knowledge time, as the audit log records it."""
    response = api.get("/audit", params={"min_position": head, "limit": 1000})
    assert response.status_code == 200, response.text
    return {record["position"]: record["recorded_at"] for record in response.json()["records"]}


def tell_the_story(api: TestClient, run_id: str = RUN_ID) -> Story:
    answers: dict[str, dict[str, Any]] = {}
    positions: dict[str, int] = {}

    def step(name: str, answer: dict[str, Any], position: int | None = None) -> dict[str, Any]:
        answers[name] = answer
        positions[name] = answer["position"] if position is None else position
        return answer

    # The scheduler opens a credit run and admits two applications.
    step("opened", write(api, "/runs", f"{run_id}-open", {"run_id": run_id, "lane": "credit"}))
    step(
        "admitted", write(api, f"/runs/{run_id}/basis", f"{run_id}-basis", {"input_ids": ["app-1", "app-2"]})
    )

    # The scorecard approves the first application.
    approval = step(
        "decided",
        write(
            api,
            f"/runs/{run_id}/decisions",
            f"{run_id}-d1",
            {"input_id": "app-1", "outcome": "approve", "model": MODEL},
        ),
    )

    # A reviewer corrects it: the decline should have applied from the moment of the approval.
    step(
        "corrected",
        write(
            api,
            f"/decisions/{approval['decision_id']}/corrections",
            f"{run_id}-c1",
            {"outcome": "decline", "reason": "income not verified", "effective_at": approval["recorded_at"]},
        ),
    )

    # The decline letter is requested, then sent.
    letter = step(
        "letter requested",
        write(
            api,
            f"/runs/{run_id}/actions",
            f"{run_id}-letter",
            {"decision_id": approval["decision_id"], "kind": "decline-letter"},
        ),
    )
    step(
        "letter sent",
        write(api, f"/actions/{letter['action_id']}/commit", f"{run_id}-sent", {"external_ref": "post-1"}),
    )

    # The first close is red: app-2 has no decision. It answers with its seal and its verdict.
    first_close = write(api, f"/runs/{run_id}/close", f"{run_id}-close-1")
    assert first_close["verdict"] == "rejected", first_close
    step("sealed", first_close, first_close["seal_position"])
    step("rejected", first_close)

    # The operator reopens the run and the scorecard decides app-2.
    step("reopened", write(api, f"/runs/{run_id}/reopen", f"{run_id}-reopen", {"reason": "decide app-2"}))
    step(
        "remediated",
        write(
            api,
            f"/runs/{run_id}/decisions",
            f"{run_id}-d2",
            {"input_id": "app-2", "outcome": "approve", "model": MODEL},
        ),
    )

    # The second close is green.
    second_close = write(api, f"/runs/{run_id}/close", f"{run_id}-close-2")
    assert second_close["verdict"] == "committed", second_close
    step("sealed again", second_close, second_close["seal_position"])
    step("committed", second_close)

    # Every step landed after the one before, and the audit log says when each became known.
    ordered = [positions[name] for name in STEPS]
    assert ordered == sorted(set(ordered)), positions
    known_at = knowledge_times(api, positions["committed"])
    return Story(
        steps={name: Step(name, positions[name], known_at[positions[name]]) for name in STEPS},
        answers=answers,
    )


def shared_client(database_url: str) -> TestClient:
    """What the conftest's `api` fixture builds: open local mode, a throwaway signing key."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from infrastructure.settings import Settings
    from interfaces.api.app import create_app

    signing_key = Ed25519PrivateKey.generate().private_bytes_raw().hex()
    settings = Settings(database_url=database_url, signing_key=signing_key, api_keys=[], api_keys_file=None)
    return TestClient(create_app(settings))


#: The back ends every story is told on.
BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@contextmanager
def story_told_on(
    backend: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[TestClient, Story]]:
    """The story, told on a fresh database of this back end; the client stays open."""
    schema = None
    if backend == "sqlite":
        database_url = f"sqlite:///{Path(tmp_path_factory.mktemp('time-travel')) / 'ledger.sqlite3'}"
    else:
        require_postgres()
        schema = PostgresSchema()
        schema.create()
        database_url = schema.url
    try:
        with shared_client(database_url) as client:
            yield client, tell_the_story(client)
    finally:
        if schema is not None:
            schema.drop()


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


# --- Asking as of a step ------------------------------------------------------------------


def as_known_at(api: TestClient, path: str, step: Step, **params: Any) -> httpx.Response:
    """GET `path` as of `step`, asked by position and by time. Both must give the same
    answer; a 200 must say, in its header, that it reflects the step's position."""
    by_position = api.get(path, params={**params, "as_of_position": step.position})
    by_time = api.get(path, params={**params, "as_of": step.known_at})
    assert by_time.status_code == by_position.status_code, (step, by_position.text, by_time.text)
    if by_position.status_code == 200:
        assert by_time.json() == by_position.json(), step
        assert by_position.headers[AS_OF_HEADER] == by_time.headers[AS_OF_HEADER] == str(step.position), step
    else:
        assert by_time.json()["type"] == by_position.json()["type"], step
    return by_position


def known_at(api: TestClient, path: str, step: Step, **params: Any) -> dict[str, Any]:
    response = as_known_at(api, path, step, **params)
    assert response.status_code == 200, (step, response.text)
    return response.json()


def assert_not_known(response: httpx.Response, slug: str = "nothing-known-yet") -> None:
    assert response.status_code == 404, response.text
    assert response.headers["content-type"].startswith(PROBLEM_MEDIA_TYPE)
    assert response.json()["type"] == f"/problems/{slug}"


def moment(text: str) -> datetime:
    return datetime.fromisoformat(text)


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
