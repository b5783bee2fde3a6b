"""Every error the API gives, and the status it maps to, on SQLite and on PostgreSQL.

Each answer is checked to be an RFC 9457 problem (`application/problem+json` with type,
title, status and detail). The TestClient re-raises any unhandled exception, so a request
that would have been a 500 fails its test.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from domain.identity import action_uuid, decision_uuid
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

ONE_MEBIBYTE = 1024 * 1024


# --- 404: what is not there ----------------------------------------------------------------


def test_an_unknown_run_is_404(api: TestClient) -> None:
    # Reading it, writing into it, and closing it all say the run is not found.
    assert_problem(api.get("/runs/no-such-run"), 404, "run-not-found")
    write = api.post("/runs/no-such-run/decisions", json=decision_body(), headers=keyed("decide-1"))
    assert_problem(write, 404, "run-not-found")
    assert_problem(api.post("/runs/no-such-run/close", headers=keyed("close-1")), 404, "run-not-found")


def test_an_unknown_decision_is_404(api: TestClient) -> None:
    # A well-formed decision ID that names nothing: reading, its history, correcting it.
    open_run(api)
    unknown = decision_uuid(RUN_ID, "never-decided")
    assert_problem(api.get(f"/decisions/{unknown}"), 404, "decision-not-found")
    assert_problem(api.get(f"/decisions/{unknown}/history"), 404, "decision-not-found")
    assert_problem(api.get(f"/runs/{RUN_ID}/decisions/never-decided"), 404, "decision-not-found")
    correction = api.post(
        f"/decisions/{unknown}/corrections",
        json={"outcome": "approve", "reason": "typo"},
        headers=keyed("fix-1"),
    )
    assert_problem(correction, 404, "decision-not-found")

    # An action cannot be requested for it either.
    request = api.post(
        f"/runs/{RUN_ID}/actions",
        json={"decision_id": str(unknown), "kind": "block-card"},
        headers=keyed("block-1"),
    )
    assert_problem(request, 404, "decision-not-found")


def test_an_unknown_action_is_404(api: TestClient) -> None:
    unknown = action_uuid(RUN_ID, "never-requested")
    assert_problem(api.get(f"/actions/{unknown}"), 404, "action-not-found")
    for transition, body in (("commit", {}), ("fail", {"error": "timeout"}), ("waive", {"reason": "manual"})):
        response = api.post(f"/actions/{unknown}/{transition}", json=body, headers=keyed(f"{transition}-1"))
        assert_problem(response, 404, "action-not-found")


def test_an_unknown_route_and_a_wrong_method_are_problems_too(api: TestClient) -> None:
    assert_problem(api.get("/no/such/route"), 404, "not-found")
    assert_problem(api.delete("/runs"), 405, "method-not-allowed")


# --- 409: what the current state forbids ---------------------------------------------------


def test_recording_into_a_closed_run_is_409(api: TestClient) -> None:
    # The run is closed (rejected: its basis is empty).
    open_run(api)
    close_run(api)
    events_before = event_count(api)

    # A decision arriving after the close is refused, and nothing is written.
    late = api.post(f"/runs/{RUN_ID}/decisions", json=decision_body(), headers=keyed("late-1"))
    assert_problem(late, 409, "run-not-open")
    assert event_count(api) == events_before


def test_a_different_decision_for_a_recorded_input_is_409(api: TestClient) -> None:
    # txn-1 was declined.
    open_run(api)
    record_decision(api, "txn-1", "decline")

    # Another client approves the same input under another key: refused, send a correction.
    other = api.post(
        f"/runs/{RUN_ID}/decisions", json=decision_body("txn-1", "approve"), headers=keyed("other")
    )
    problem = assert_problem(other, 409, "decision-already-recorded")
    assert "correction" in problem["detail"]

    # The same decision under another key is the same fact: a replay, not a conflict.
    same = api.post(
        f"/runs/{RUN_ID}/decisions", json=decision_body("txn-1", "decline"), headers=keyed("same")
    )
    assert same.status_code == 201 and same.headers["Idempotent-Replayed"] == "true"


def test_committing_a_committed_action_again_is_409(api: TestClient) -> None:
    # The card was blocked and the block committed.
    open_run(api)
    decision = record_decision(api)
    action = request_action(api, decision["decision_id"])
    commit = api.post(
        f"/actions/{action['action_id']}/commit", json={"external_ref": "psp-1"}, headers=keyed("c-1")
    )
    assert commit.status_code == 200

    # A second commit, or a failure report, under new keys: refused.
    again = api.post(
        f"/actions/{action['action_id']}/commit", json={"external_ref": "psp-2"}, headers=keyed("c-2")
    )
    assert_problem(again, 409, "action-already-committed")
    failed = api.post(f"/actions/{action['action_id']}/fail", json={"error": "timeout"}, headers=keyed("f-1"))
    assert_problem(failed, 409, "action-already-committed")


def test_waiving_an_action_that_did_not_fail_is_409(api: TestClient) -> None:
    open_run(api)
    action = request_action(api, record_decision(api)["decision_id"])
    waive = api.post(f"/actions/{action['action_id']}/waive", json={"reason": "manual"}, headers=keyed("w-1"))
    assert_problem(waive, 409, "action-transition-refused")


def test_reopening_a_run_that_is_not_rejected_is_409(api: TestClient) -> None:
    open_run(api)
    reopen = api.post(f"/runs/{RUN_ID}/reopen", json={"reason": "why not"}, headers=keyed("r-1"))
    assert_problem(reopen, 409, "run-not-rejected")


def test_opening_an_existing_run_with_other_settings_is_409(api: TestClient) -> None:
    open_run(api, lane="fraud")
    other = api.post("/runs", json={"run_id": RUN_ID, "lane": "credit"}, headers=keyed("open-again"))
    assert_problem(other, 409, "run-already-exists")


# --- 422: what breaks the schema ------------------------------------------------------------


def test_a_key_reused_for_another_request_is_422(api: TestClient) -> None:
    open_run(api)
    record_decision(api, "txn-1")
    reused = api.post(f"/runs/{RUN_ID}/decisions", json=decision_body("txn-2"), headers=keyed("decide-txn-1"))
    assert_problem(reused, 422, "idempotency-key-reused")


def test_schema_violations_list_the_offending_field_paths(api: TestClient) -> None:
    open_run(api)

    # A blank model name and a missing outcome, in the body.
    body = {"input_id": "txn-1", "model": {"name": "", "version": "7"}}
    problem = assert_problem(
        api.post(f"/runs/{RUN_ID}/decisions", json=body, headers=keyed("d-1")), 422, "validation-error"
    )
    assert {"body.model.name", "body.outcome"} <= set(field_paths(problem))

    # An unknown field is refused, not ignored.
    body = {**decision_body(), "colour": "red"}
    problem = assert_problem(
        api.post(f"/runs/{RUN_ID}/decisions", json=body, headers=keyed("d-2")), 422, "validation-error"
    )
    assert field_paths(problem) == ["body.colour"]

    # A path parameter and a query parameter.
    assert field_paths(assert_problem(api.get("/runs/not a run id"), 422, "validation-error")) == [
        "path.run_id"
    ]
    assert field_paths(assert_problem(api.get("/audit", params={"limit": 0}), 422, "validation-error")) == [
        "query.limit"
    ]
    problem = assert_problem(api.get("/decisions/not-a-uuid"), 422, "validation-error")
    assert field_paths(problem) == ["path.decision_id"]


def test_a_body_that_is_not_json_is_422(api: TestClient) -> None:
    open_run(api)
    response = api.post(
        f"/runs/{RUN_ID}/decisions",
        content=b"{not json",
        headers=keyed("d-1", **{"content-type": "application/json"}),
    )
    assert_problem(response, 422, "validation-error")


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_a_non_finite_score_is_422(api: TestClient, literal: str) -> None:
    # Python's JSON parser reads these literals as floats; the schema must still refuse them.
    open_run(api)
    decision = json.dumps(decision_body(score=0.5)).replace("0.5", literal)
    response = api.post(
        f"/runs/{RUN_ID}/decisions",
        content=decision,
        headers=keyed("d-1", **{"content-type": "application/json"}),
    )
    assert field_paths(assert_problem(response, 422, "validation-error")) == ["body.score"]

    # A correction's score is held to the same rule.
    record_decision(api, "txn-2")
    correction = json.dumps({"outcome": "approve", "reason": "rescored", "score": 0.5}).replace(
        "0.5", literal
    )
    response = api.post(
        f"/decisions/{decision_uuid(RUN_ID, 'txn-2')}/corrections",
        content=correction,
        headers=keyed("fix-1", **{"content-type": "application/json"}),
    )
    assert field_paths(assert_problem(response, 422, "validation-error")) == ["body.score"]


def test_strings_over_their_limits_are_422_and_at_their_limits_are_accepted(api: TestClient) -> None:
    open_run(api)

    # A 257-character input ID and a 65-character outcome are refused.
    too_long_input = api.post(
        f"/runs/{RUN_ID}/decisions", json=decision_body("i" * 257), headers=keyed("d-1")
    )
    assert field_paths(assert_problem(too_long_input, 422, "validation-error")) == ["body.input_id"]
    too_long_outcome = api.post(
        f"/runs/{RUN_ID}/decisions", json=decision_body("txn-1", "o" * 65), headers=keyed("d-2")
    )
    assert field_paths(assert_problem(too_long_outcome, 422, "validation-error")) == ["body.outcome"]

    # 256 and 64 characters are exactly allowed.
    at_limit = api.post(
        f"/runs/{RUN_ID}/decisions", json=decision_body("i" * 256, "o" * 64), headers=keyed("d-3")
    )
    assert at_limit.status_code == 201, at_limit.text


def test_a_basis_batch_over_ten_thousand_is_422(api: TestClient) -> None:
    open_run(api)
    events_before = event_count(api)
    inputs = [f"txn-{number}" for number in range(10_001)]
    response = api.post(f"/runs/{RUN_ID}/basis", json={"input_ids": inputs}, headers=keyed("basis-1"))
    assert field_paths(assert_problem(response, 422, "validation-error")) == ["body.input_ids"]
    assert event_count(api) == events_before


def test_a_decision_batch_over_a_thousand_is_422(api: TestClient) -> None:
    open_run(api)
    items = [{**decision_body(f"txn-{number}"), "idempotency_key": f"d-{number}"} for number in range(1_001)]
    response = api.post(
        f"/runs/{RUN_ID}/decisions/batch", json={"decisions": items}, headers=keyed("batch-1")
    )
    assert field_paths(assert_problem(response, 422, "validation-error")) == ["body.decisions"]
    assert event_count(api) == 1


def test_too_many_reason_codes_are_422(api: TestClient) -> None:
    open_run(api)
    body = decision_body(reasons=[f"r{number}" for number in range(65)])
    response = api.post(f"/runs/{RUN_ID}/decisions", json=body, headers=keyed("d-1"))
    assert field_paths(assert_problem(response, 422, "validation-error")) == ["body.reasons"]


def test_a_time_without_an_offset_is_422(api: TestClient) -> None:
    # Times are only meaningful with an offset: a naive one is refused, wherever it appears.
    open_run(api)
    decision = record_decision(api)
    assert_problem(api.get("/audit", params={"as_of": "2026-01-31T14:00:00"}), 422, "invalid-command")
    naive = api.post(
        f"/decisions/{decision['decision_id']}/corrections",
        json={"outcome": "approve", "reason": "typo", "effective_at": "2026-01-31T14:00:00"},
        headers=keyed("fix-1"),
    )
    assert_problem(naive, 422, "invalid-command")


# --- 413: what is too large to read --------------------------------------------------------


def oversized_basis() -> bytes:
    """A well-formed basis just over 1 MiB."""
    ids = ",".join(f'"{number:09d}"' for number in range(ONE_MEBIBYTE // 11 + 10))
    body = f'{{"input_ids": [{ids}]}}'.encode()
    assert len(body) > ONE_MEBIBYTE
    return body


def test_a_body_declared_over_one_mebibyte_is_413(api: TestClient) -> None:
    open_run(api)
    events_before = event_count(api)
    response = api.post(
        f"/runs/{RUN_ID}/basis",
        content=oversized_basis(),
        headers=keyed("basis-1", **{"content-type": "application/json"}),
    )
    assert_problem(response, 413, "payload-too-large")
    assert event_count(api) == events_before


def test_a_streamed_body_over_one_mebibyte_is_413(api: TestClient) -> None:
    # No Content-Length: the body arrives in chunks, as a proxy or a streaming client sends it.
    open_run(api)
    body = oversized_basis()

    def chunks() -> Iterator[bytes]:
        for start in range(0, len(body), 64 * 1024):
            yield body[start : start + 64 * 1024]

    response = api.post(
        f"/runs/{RUN_ID}/basis",
        content=chunks(),
        headers=keyed("basis-1", **{"content-type": "application/json"}),
    )
    assert_problem(response, 413, "payload-too-large")


def test_a_body_at_the_limit_is_read(api: TestClient) -> None:
    # Under the limit, the same route answers on its merits (here, the basis is admitted).
    open_run(api)
    admit(api, ["txn-1"])
    body = b'{"input_ids": ["txn-2"]}' + b" " * (ONE_MEBIBYTE - 24)
    assert len(body) == ONE_MEBIBYTE
    response = api.post(
        f"/runs/{RUN_ID}/basis",
        content=body,
        headers=keyed("basis-2", **{"content-type": "application/json"}),
    )
    assert response.status_code == 200, response.text
    assert response.json()["admitted_total"] == 2


def test_a_wrong_method_is_answered_with_every_allowed_method(api: TestClient) -> None:
    # /runs is listed (GET) and opened (POST): a DELETE must name both.
    response = api.delete("/runs")
    assert_problem(response, 405, "method-not-allowed")
    assert {method.strip() for method in response.headers["Allow"].split(",")} >= {"GET", "POST"}


def test_text_blank_in_any_regex_dialect_is_refused_by_the_schema(api: TestClient) -> None:
    open_run(api)
    decision = record_decision(api)

    # Information separators (blank to Python) and a byte-order mark (blank to JSON Schema's \s).
    for number, blank in enumerate(["\x1e", "\x1c\x1f", "\ufeff"]):
        correction = api.post(
            f"/decisions/{decision['decision_id']}/corrections",
            json={"outcome": "approve", "reason": blank},
            headers=keyed(f"fix-{number}"),
        )
        assert field_paths(assert_problem(correction, 422, "validation-error")) == ["body.reason"]


def test_a_time_given_as_a_number_is_refused(api: TestClient) -> None:
    open_run(api)
    decision = record_decision(api)

    # A client sends epoch seconds instead of RFC 3339: refused, not read as 1970.
    correction = api.post(
        f"/decisions/{decision['decision_id']}/corrections",
        json={"outcome": "approve", "reason": "false positive", "effective_at": 0},
        headers=keyed("fix-1"),
    )
    assert field_paths(assert_problem(correction, 422, "validation-error")) == ["body.effective_at"]

    # The same in a query.
    assert_problem(api.get("/audit", params={"as_of": "4102444800"}), 422, "validation-error")
    assert_problem(
        api.get(f"/decisions/{decision['decision_id']}", params={"valid_at": "0"}), 422, "validation-error"
    )


def test_values_of_another_json_type_are_refused(api: TestClient) -> None:
    open_run(api)

    # A boolean or a string where the document says number.
    for number, score in enumerate([False, "0.5"]):
        response = api.post(
            f"/runs/{RUN_ID}/decisions",
            json=decision_body(f"txn-{number}", score=score),
            headers=keyed(f"d-{number}"),
        )
        assert field_paths(assert_problem(response, 422, "validation-error")) == ["body.score"]

    # A number or a string where the document says boolean.
    opening = api.post(
        "/runs", json={"run_id": "other-run", "lane": "fraud", "allow_empty": "true"}, headers=keyed("o-2")
    )
    assert field_paths(assert_problem(opening, 422, "validation-error")) == ["body.allow_empty"]
    action = request_action(api, record_decision(api, "txn-9")["decision_id"])
    failure = api.post(
        f"/actions/{action['action_id']}/fail",
        json={"error": "timeout", "retryable": 0},
        headers=keyed("f-1"),
    )
    assert field_paths(assert_problem(failure, 422, "validation-error")) == ["body.retryable"]
