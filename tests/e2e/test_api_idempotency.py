"""The idempotency contract of every write, over HTTP, on SQLite and on PostgreSQL.

| request                                         | answer                                       |
|-------------------------------------------------|----------------------------------------------|
| no Idempotency-Key (or an empty one)            | 400 idempotency-key-missing, nothing written |
| a malformed key (256 chars, a space, non-ASCII) | 400 idempotency-key-malformed, nothing written |
| a new key                                       | executed, `Idempotent-Replayed: false`       |
| the same key and payload again                  | the first status and body, `true`, no event  |
| the same key, another payload                   | 422 idempotency-key-reused, nothing written  |
| refused before execution (schema, unknown id)   | not remembered: a corrected retry executes   |

Each row is one test, run against every write endpoint of the table below.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from domain.identity import action_uuid, decision_uuid
from tests.support.api import (
    RUN_ID,
    admit,
    assert_executed,
    assert_problem,
    assert_replayed,
    close_run,
    decision_body,
    event_count,
    fail_action,
    keyed,
    open_run,
    record_decision,
    request_action,
)

ACTION_KEY = "block-card-txn-1"
DECISION_ID = str(decision_uuid(RUN_ID, "txn-1"))
ACTION_ID = str(action_uuid(RUN_ID, ACTION_KEY))


# --- The state each endpoint needs before it can execute ---------------------------------


def nothing(api: TestClient) -> None:
    pass


def an_open_run(api: TestClient) -> None:
    open_run(api)


def a_decision(api: TestClient) -> None:
    open_run(api)
    record_decision(api, "txn-1")


def an_action(api: TestClient) -> None:
    a_decision(api)
    request_action(api, DECISION_ID, ACTION_KEY)


def a_failed_action(api: TestClient) -> None:
    an_action(api)
    fail_action(api, ACTION_ID)


def a_rejected_run(api: TestClient) -> None:
    # An empty basis is always red, so the close rejects the run.
    open_run(api)
    assert close_run(api)["verdict"] == "rejected"


@dataclass(frozen=True)
class WriteEndpoint:
    """One POST route: what it needs, what it accepts, and what it must refuse."""

    name: str
    path: str
    status: int
    prepare: Callable[[TestClient], None]
    body: dict[str, Any] | None
    other_body: dict[str, Any] | None
    invalid_body: dict[str, Any]
    #: The problem a path naming a run, decision or action that does not exist yet gets.
    unknown_target: str | None = "run-not-found"

    def post(
        self, api: TestClient, body: dict[str, Any] | None, headers: dict[str, Any] | None = None
    ) -> httpx.Response:
        if body is None:
            return api.post(self.path, headers=headers)
        return api.post(self.path, json=body, headers=headers)


def batch_item(input_id: str, outcome: str = "decline") -> dict[str, Any]:
    return {**decision_body(input_id, outcome), "idempotency_key": f"decide-{input_id}"}


ENDPOINTS = [
    WriteEndpoint(
        "open-run",
        "/runs",
        201,
        nothing,
        body={"run_id": RUN_ID, "lane": "fraud"},
        other_body={"run_id": RUN_ID, "lane": "credit"},
        invalid_body={"run_id": RUN_ID},
        unknown_target=None,
    ),
    WriteEndpoint(
        "admit-basis",
        f"/runs/{RUN_ID}/basis",
        200,
        an_open_run,
        body={"input_ids": ["txn-1", "txn-2"]},
        other_body={"input_ids": ["txn-3"]},
        invalid_body={"input_ids": []},
    ),
    WriteEndpoint(
        "record-decision",
        f"/runs/{RUN_ID}/decisions",
        201,
        an_open_run,
        body=decision_body("txn-1", "decline"),
        other_body=decision_body("txn-1", "approve"),
        invalid_body={"input_id": "txn-1", "outcome": "decline", "model": {"name": "gbm"}},
    ),
    WriteEndpoint(
        "request-action",
        f"/runs/{RUN_ID}/actions",
        201,
        a_decision,
        body={"decision_id": DECISION_ID, "kind": "block-card"},
        other_body={"decision_id": DECISION_ID, "kind": "notify-customer"},
        invalid_body={"decision_id": "not-a-uuid", "kind": "block-card"},
    ),
    WriteEndpoint(
        "commit-action",
        f"/actions/{ACTION_ID}/commit",
        200,
        an_action,
        body={"external_ref": "psp-4711"},
        other_body={"external_ref": "psp-4712"},
        invalid_body={"external_ref": ""},
        unknown_target="action-not-found",
    ),
    WriteEndpoint(
        "fail-action",
        f"/actions/{ACTION_ID}/fail",
        200,
        an_action,
        body={"error": "gateway timeout"},
        other_body={"error": "gateway timeout", "retryable": False},
        invalid_body={"retryable": False},
        unknown_target="action-not-found",
    ),
    WriteEndpoint(
        "waive-action",
        f"/actions/{ACTION_ID}/waive",
        200,
        a_failed_action,
        body={"reason": "refunded by hand"},
        other_body={"reason": "customer cancelled"},
        invalid_body={},
        unknown_target="action-not-found",
    ),
    WriteEndpoint(
        # Redelivering carries no payload either: the path names the action.
        "redeliver-action",
        f"/actions/{ACTION_ID}/redeliver",
        200,
        a_failed_action,
        body=None,
        other_body=None,
        invalid_body={"force": True},
        unknown_target="action-not-found",
    ),
    WriteEndpoint(
        "correct-decision",
        f"/decisions/{DECISION_ID}/corrections",
        201,
        a_decision,
        body={"outcome": "approve", "reason": "false positive, confirmed by phone"},
        other_body={"outcome": "review", "reason": "false positive, confirmed by phone"},
        invalid_body={"outcome": "approve"},
        unknown_target="decision-not-found",
    ),
    WriteEndpoint(
        # Closing carries no payload: its path is all it asks for (see the test below).
        "close-run",
        f"/runs/{RUN_ID}/close",
        200,
        an_open_run,
        body=None,
        other_body=None,
        invalid_body={"force": True},
    ),
    WriteEndpoint(
        "reopen-run",
        f"/runs/{RUN_ID}/reopen",
        200,
        a_rejected_run,
        body={"reason": "admit the basis this time"},
        other_body={"reason": "another reason"},
        invalid_body={"reason": ""},
    ),
    WriteEndpoint(
        "record-batch",
        f"/runs/{RUN_ID}/decisions/batch",
        200,
        an_open_run,
        body={"decisions": [batch_item("txn-1"), batch_item("txn-2", "approve")]},
        other_body={"decisions": [batch_item("txn-1")]},
        invalid_body={"decisions": []},
    ),
]

EVERY_ENDPOINT = pytest.mark.parametrize("endpoint", ENDPOINTS, ids=lambda endpoint: endpoint.name)
WITH_A_PAYLOAD = pytest.mark.parametrize(
    "endpoint", [e for e in ENDPOINTS if e.other_body is not None], ids=lambda endpoint: endpoint.name
)
WITH_A_TARGET = pytest.mark.parametrize(
    "endpoint", [e for e in ENDPOINTS if e.unknown_target], ids=lambda endpoint: endpoint.name
)


# --- The table, row by row -----------------------------------------------------------------


@EVERY_ENDPOINT
def test_a_write_without_an_idempotency_key_is_refused_and_writes_nothing(
    api: TestClient, endpoint: WriteEndpoint
) -> None:
    # Everything the write needs is in place.
    endpoint.prepare(api)
    events_before = event_count(api)

    # Without the header, and with an empty one, the request is refused up front.
    assert_problem(endpoint.post(api, endpoint.body), 400, "idempotency-key-missing")
    assert_problem(endpoint.post(api, endpoint.body, keyed("")), 400, "idempotency-key-missing")

    # Nothing was written.
    assert event_count(api) == events_before


@EVERY_ENDPOINT
def test_a_malformed_idempotency_key_is_refused_and_writes_nothing(
    api: TestClient, endpoint: WriteEndpoint
) -> None:
    # Everything the write needs is in place.
    endpoint.prepare(api)
    events_before = event_count(api)

    # Too long, with a space, and not ASCII (sent as raw UTF-8 octets): all refused.
    for malformed in ("k" * 256, "open demo", "clé-1".encode()):
        assert_problem(endpoint.post(api, endpoint.body, keyed(malformed)), 400, "idempotency-key-malformed")

    # Nothing was written.
    assert event_count(api) == events_before


@EVERY_ENDPOINT
def test_a_redelivery_under_the_same_key_replays_the_first_answer(
    api: TestClient, endpoint: WriteEndpoint
) -> None:
    # Everything the write needs is in place.
    endpoint.prepare(api)
    events_before = event_count(api)

    # The first delivery executes: it is not a replay, and it writes events.
    first = endpoint.post(api, endpoint.body, keyed("delivery-1"))
    original = assert_executed(first, endpoint.status)
    events_after_first = event_count(api)
    assert events_after_first > events_before

    # An at-least-once queue delivers it again: same status, equal body, marked as a replay.
    again = endpoint.post(api, endpoint.body, keyed("delivery-1"))
    assert assert_replayed(again, endpoint.status) == original

    # The redelivery wrote nothing.
    assert event_count(api) == events_after_first


@WITH_A_PAYLOAD
def test_a_key_reused_for_another_payload_is_refused_and_writes_nothing(
    api: TestClient, endpoint: WriteEndpoint
) -> None:
    # The write was executed under a key.
    endpoint.prepare(api)
    assert_executed(endpoint.post(api, endpoint.body, keyed("delivery-1")), endpoint.status)
    events_after_first = event_count(api)

    # The same key now comes with another payload: a client bug, refused.
    assert_problem(
        endpoint.post(api, endpoint.other_body, keyed("delivery-1")), 422, "idempotency-key-reused"
    )

    # Nothing was written, and the key still replays its first request.
    assert event_count(api) == events_after_first
    assert_replayed(endpoint.post(api, endpoint.body, keyed("delivery-1")), endpoint.status)


def test_closing_has_no_payload_so_the_same_key_always_replays(api: TestClient) -> None:
    # A run is closed with no body at all.
    open_run(api)
    first = assert_executed(api.post(f"/runs/{RUN_ID}/close", headers=keyed("close-1")), 200)
    events_after_first = event_count(api)

    # The same key with an empty object asks for the same thing: a replay, not a reuse.
    again = api.post(f"/runs/{RUN_ID}/close", json={}, headers=keyed("close-1"))
    assert assert_replayed(again, 200) == first
    assert event_count(api) == events_after_first


@EVERY_ENDPOINT
def test_a_request_refused_by_the_schema_is_not_remembered(api: TestClient, endpoint: WriteEndpoint) -> None:
    # Everything the write needs is in place.
    endpoint.prepare(api)
    events_before = event_count(api)

    # The first try breaks the schema: refused before anything executes.
    assert_problem(endpoint.post(api, endpoint.invalid_body, keyed("delivery-1")), 422, "validation-error")
    assert event_count(api) == events_before

    # The corrected retry under the same key executes as a first delivery.
    assert_executed(endpoint.post(api, endpoint.body, keyed("delivery-1")), endpoint.status)
    assert event_count(api) > events_before


@WITH_A_TARGET
def test_a_request_for_an_unknown_target_is_not_remembered(api: TestClient, endpoint: WriteEndpoint) -> None:
    # The run, decision or action the path names does not exist yet.
    events_before = event_count(api)
    assert_problem(endpoint.post(api, endpoint.body, keyed("delivery-1")), 404, endpoint.unknown_target)
    assert event_count(api) == events_before

    # Once it exists, the retry under the same key executes as a first delivery.
    endpoint.prepare(api)
    assert_executed(endpoint.post(api, endpoint.body, keyed("delivery-1")), endpoint.status)


# --- The batch endpoint: one answer per item ---------------------------------------------------


def test_a_batch_answers_each_item_with_its_own_status(api: TestClient) -> None:
    # txn-1 was already recorded on its own, under the key its batch item carries.
    open_run(api)
    admit(api, ["txn-1", "txn-2", "txn-3", "txn-4"])
    single = record_decision(api, "txn-1", "decline")
    record_decision(api, "txn-2", "approve")
    events_before = event_count(api)

    # The batch: a new decision, a redelivery, a conflicting outcome, and an invalid item.
    items = [
        batch_item("txn-3"),
        batch_item("txn-1", "decline"),
        {**batch_item("txn-2", "decline"), "idempotency_key": "decide-txn-2-again"},
        {"input_id": "txn-4", "outcome": "decline", "idempotency_key": "decide-txn-4"},
    ]
    response = api.post(
        f"/runs/{RUN_ID}/decisions/batch", json={"decisions": items}, headers=keyed("batch-1")
    )
    answer = assert_executed(response, 200)

    # Each item has its own status; refused items carry a problem object.
    assert [item["status"] for item in answer["items"]] == ["created", "replayed", "conflict", "invalid"]
    assert answer["counts"] == {"created": 1, "replayed": 1, "conflict": 1, "invalid": 1}
    created, replayed, conflict, invalid = answer["items"]
    # Created and replayed items say where their decision is; the decision reads back whole.
    assert created["input_id"] == "txn-3" and created["version"] == 1 and created["problem"] is None
    assert created["position"] > single["position"]
    assert (replayed["decision_id"], replayed["version"], replayed["position"]) == (
        single["decision_id"],
        single["version"],
        single["position"],
    )
    assert api.get(f"/decisions/{replayed['decision_id']}").json() == single
    assert conflict["decision_id"] is None
    assert conflict["problem"]["type"] == "/problems/decision-already-recorded"
    assert conflict["problem"]["status"] == 409
    assert invalid["problem"]["type"] == "/problems/invalid-command"
    assert invalid["problem"]["status"] == 422
    assert "body.decisions.3.model" in [error["field"] for error in invalid["problem"]["errors"]]
    assert {"type", "title", "status", "detail"} <= conflict["problem"].keys() & invalid["problem"].keys()

    # Only the new decision was written.
    assert event_count(api) == events_before + 1


def test_a_batch_replayed_under_its_key_returns_an_equal_body(api: TestClient) -> None:
    open_run(api)
    items = [batch_item("txn-1"), batch_item("txn-1", "approve"), {"input_id": "txn-2"}]
    first = api.post(f"/runs/{RUN_ID}/decisions/batch", json={"decisions": items}, headers=keyed("batch-1"))
    original = assert_executed(first, 200)
    events_after_first = event_count(api)

    # The whole batch is delivered again under the same header key: the same answers, item by item.
    again = api.post(f"/runs/{RUN_ID}/decisions/batch", json={"decisions": items}, headers=keyed("batch-1"))
    assert assert_replayed(again, 200) == original
    assert event_count(api) == events_after_first


def test_a_batch_item_retried_alone_replays_its_decision(api: TestClient) -> None:
    # A batch records txn-1 under the item's own key.
    open_run(api)
    batch = api.post(
        f"/runs/{RUN_ID}/decisions/batch", json={"decisions": [batch_item("txn-1")]}, headers=keyed("batch-1")
    )
    recorded = assert_executed(batch, 200)["items"][0]
    events_after_batch = event_count(api)

    # The same decision sent alone under that item key is a replay of it, not a new event.
    alone = api.post(f"/runs/{RUN_ID}/decisions", json=decision_body("txn-1"), headers=keyed("decide-txn-1"))
    replayed = assert_replayed(alone, 201)
    assert (replayed["decision_id"], replayed["version"], replayed["position"]) == (
        recorded["decision_id"],
        recorded["version"],
        recorded["position"],
    )
    assert event_count(api) == events_after_batch


def test_every_write_route_is_in_the_table() -> None:
    # A new POST route must join the table above, or this suite silently stops covering it.
    from infrastructure.settings import Settings
    from interfaces.api.app import create_app

    app = create_app(Settings(database_url="sqlite:///unused.sqlite3", api_keys=[], api_keys_file=None))
    post_paths = {path for path, operations in app.openapi()["paths"].items() if "post" in operations}
    tabled = {
        endpoint.path.replace(RUN_ID, "{run_id}")
        .replace(DECISION_ID, "{decision_id}")
        .replace(ACTION_ID, "{action_id}")
        for endpoint in ENDPOINTS
    }
    assert post_paths == tabled
