"""The README's time-travel story, told through the REST API, and the ways to ask what
was known at one of its steps. Shared by the time-travel tests.

A credit run admits two applications. The first is approved, then the approval is
corrected to a decline that applied all along (a back-dated `effective_at`), and the
decline letter goes out. The first close is red (the second application has no
decision); the run is reopened, remediated and closed green.
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

from tests.support.databases import PostgresSchema, require_postgres

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
