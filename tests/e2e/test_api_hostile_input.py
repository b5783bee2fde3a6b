"""What a hostile client sent, and what the ledger must do instead of storing it: each
case is a row of the hardening issue's table. Every refusal is a 422 problem naming the
field, and nothing is written; a bad batch item is an `invalid` item, never a 5xx. On
SQLite and on PostgreSQL, with a close afterwards proving the projections still apply
everything that was stored."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
from fastapi.testclient import TestClient

from tests.support.api import (
    RUN_ID,
    admit,
    assert_problem,
    close_run,
    decision_body,
    event_count,
    field_paths,
    keyed,
    open_run,
    record_decision,
    request_action,
)


def post_raw(api: TestClient, path: str, body: str, key: str) -> httpx.Response:
    """A body sent as written: JSON that Python's parser takes but a strict one would not."""
    return api.post(path, content=body.encode(), headers=keyed(key, **{"content-type": "application/json"}))


def assert_refused(response: httpx.Response, field: str) -> dict[str, Any]:
    """A 422 naming the field: from the schema where JSON Schema can say the rule, else the ledger's."""
    slug = (
        "validation-error"
        if response.json().get("type") == "/problems/validation-error"
        else "invalid-command"
    )
    problem = assert_problem(response, 422, slug)
    assert any(path.endswith(field) for path in field_paths(problem)), problem
    return problem


def assert_the_run_still_closes(api: TestClient) -> None:
    """Every projection applied what was stored: the run closes with a verdict, not a 503."""
    assert close_run(api, key=f"close-{uuid.uuid4()}")["verdict"] in ("committed", "rejected")


def test_an_action_failure_whose_error_holds_a_nul_is_refused(api: TestClient) -> None:
    open_run(api)
    admit(api, ["txn-1"])
    action = request_action(api, record_decision(api)["decision_id"])
    before = event_count(api)

    response = post_raw(api, f"/actions/{action['action_id']}/fail", '{"error": "x\\u0000y"}', "fail-nul")

    assert_refused(response, "error")
    assert event_count(api) == before
    assert_the_run_still_closes(api)


def test_a_correction_effective_before_the_epoch_once_in_utc_is_refused(api: TestClient) -> None:
    open_run(api)
    admit(api, ["txn-1"])
    decision_id = record_decision(api)["decision_id"]
    before = event_count(api)

    for key, moment in (
        ("year-one", "0001-01-01T00:00:00+23:59"),
        ("before-epoch", "1969-12-31T23:59:59Z"),
    ):
        response = api.post(
            f"/decisions/{decision_id}/corrections",
            json={"outcome": "approve", "reason": "late", "effective_at": moment},
            headers=keyed(key),
        )
        assert_refused(response, "effective_at")

    assert event_count(api) == before
    assert_the_run_still_closes(api)


def test_metadata_nested_deeper_than_the_limit_is_refused_and_no_run_is_opened(api: TestClient) -> None:
    deep: dict[str, Any] = {}
    level = deep
    for _ in range(300):
        level["next"] = {}
        level = level["next"]

    response = api.post(
        "/runs", json={"run_id": RUN_ID, "lane": "fraud", "metadata": deep}, headers=keyed("o")
    )

    assert_refused(response, "metadata")
    assert event_count(api) == 0
    assert_problem(api.get(f"/runs/{RUN_ID}"), 404, "run-not-found")


def test_metadata_at_the_depth_limit_is_kept_and_read_back(api: TestClient) -> None:
    deep: dict[str, Any] = {}
    level = deep
    for _ in range(31):  # 32 levels with the outer object
        level["next"] = {}
        level = level["next"]

    open_run(api, metadata=deep)

    assert api.get(f"/runs/{RUN_ID}").json()["metadata"] == deep


def test_a_batch_item_with_a_nan_score_is_answered_invalid(api: TestClient) -> None:
    open_run(api)
    admit(api, ["txn-1", "txn-2"])
    body = (
        '{"decisions": ['
        '{"idempotency_key": "item-1", "input_id": "txn-1", "outcome": "approve", "score": NaN,'
        ' "model": {"name": "gbm", "version": "7"}},'
        '{"idempotency_key": "item-2", "input_id": "txn-2", "outcome": "approve", "score": 0.1,'
        ' "model": {"name": "gbm", "version": "7"}}]}'
    )

    response = post_raw(api, f"/runs/{RUN_ID}/decisions/batch", body, "batch-nan")

    assert response.status_code == 200, response.text
    assert [item["status"] for item in response.json()["items"]] == ["invalid", "created"]


def test_a_lone_surrogate_is_refused_in_a_batch_item_and_in_a_single_decision(api: TestClient) -> None:
    open_run(api)
    admit(api, ["txn-1"])
    item = '{"idempotency_key": "item-1", "input_id": "txn-\\ud800", "outcome": "approve", "model": {"name": "gbm", "version": "7"}}'

    batch = post_raw(
        api, f"/runs/{RUN_ID}/decisions/batch", '{"decisions": [' + item + "]}", "batch-surrogate"
    )
    single = post_raw(
        api,
        f"/runs/{RUN_ID}/decisions",
        '{"input_id": "txn-1", "outcome": "approve", "model": {"name": "gbm\\udfff", "version": "7"}}',
        "single-surrogate",
    )

    assert batch.status_code == 200, batch.text
    assert [entry["status"] for entry in batch.json()["items"]] == ["invalid"]
    # The schema itself refuses text that is not Unicode, naming the field.
    problem = assert_problem(single, 422, "validation-error")
    assert field_paths(problem) == ["body.model.name"]
    assert_the_run_still_closes(api)


def test_one_correction_however_the_decision_id_is_spelt(api: TestClient) -> None:
    open_run(api)
    admit(api, ["txn-1"])
    decision_id = record_decision(api)["decision_id"]
    body = {"outcome": "approve", "reason": "second look"}
    before = event_count(api)

    answers = [
        api.post(f"/decisions/{spelling}/corrections", json=body, headers=keyed("correct-once"))
        for spelling in (decision_id, decision_id.upper(), decision_id.replace("-", ""))
    ]

    assert [answer.status_code for answer in answers] == [201, 201, 201]
    assert [answer.headers["Idempotent-Replayed"] for answer in answers] == ["false", "true", "true"]
    assert event_count(api) == before + 1
    assert len(api.get(f"/decisions/{decision_id}").json()["corrections"]) == 1


def test_a_batch_that_wrote_nothing_still_keeps_its_key(api: TestClient) -> None:
    open_run(api)
    admit(api, ["txn-1"])
    record_decision(api)  # under the single route's key "decide-txn-1"
    replayed_item = {"idempotency_key": "decide-txn-1", **decision_body("txn-1")}

    first = api.post(
        f"/runs/{RUN_ID}/decisions/batch", json={"decisions": [replayed_item]}, headers=keyed("b")
    )
    again = api.post(
        f"/runs/{RUN_ID}/decisions/batch", json={"decisions": [replayed_item]}, headers=keyed("b")
    )
    other = api.post(
        f"/runs/{RUN_ID}/decisions/batch",
        json={"decisions": [{**replayed_item, "outcome": "approve"}]},
        headers=keyed("b"),
    )

    assert [entry["status"] for entry in first.json()["items"]] == ["replayed"]
    assert again.status_code == 200 and again.headers["Idempotent-Replayed"] == "true"
    assert_problem(other, 422, "idempotency-key-reused")


def test_an_action_kind_the_ledger_would_refuse_is_refused_by_the_listing_as_documented(
    api: TestClient,
) -> None:
    # The listing's `kind` filter follows the label rule the document states (its pattern),
    # so a client generating requests from the document never meets an undocumented 422.
    parameter = next(
        parameter
        for parameter in api.get("/openapi.json").json()["paths"]["/actions"]["get"]["parameters"]
        if parameter["name"] == "kind"
    )
    assert "[A-Za-z0-9._:/-]" in str(parameter["schema"])
    assert_refused(api.get("/actions", params={"kind": "Form refused"}), "kind")
    assert api.get("/actions", params={"kind": "block-card"}).status_code == 200
