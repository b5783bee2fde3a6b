"""Who may do what: API keys, roles, the actor on every event, and the fail-closed open
local mode that never binds to anything but a loopback address."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from infrastructure.settings import ConfigurationError
from interfaces.api.security import refuse_open_mode_off_loopback
from tests.support.api import (
    AUDITOR_KEY,
    OPERATOR_KEY,
    RUN_ID,
    SECOND_WRITER_KEY,
    WRITER_KEY,
    assert_problem,
    bearer,
    decision_body,
    event_count,
    keyed,
    serve_refused,
)


def open_run_as_operator(api: TestClient) -> None:
    response = api.post(
        "/runs", json={"run_id": RUN_ID, "lane": "fraud"}, headers=keyed("open-1", **bearer(OPERATOR_KEY))
    )
    assert response.status_code == 201, response.text


# --- Authentication ---------------------------------------------------------------------------


def test_a_request_without_a_key_is_401(secured_api: TestClient) -> None:
    # Neither a read nor a write is answered without a key, and the answer says how to send one.
    for response in (
        secured_api.get(f"/runs/{RUN_ID}"),
        secured_api.post("/runs", json={"run_id": RUN_ID, "lane": "fraud"}, headers=keyed("open-1")),
    ):
        assert_problem(response, 401, "unauthorized")
        assert response.headers["WWW-Authenticate"].startswith("Bearer")

    # Authentication comes first: a missing Idempotency-Key does not leak past it.
    assert_problem(secured_api.post("/runs", json={"run_id": RUN_ID, "lane": "fraud"}), 401, "unauthorized")


def test_an_unknown_key_is_401_and_writes_nothing(secured_api: TestClient) -> None:
    events_before = event_count(secured_api)
    forged = secured_api.post(
        "/runs", json={"run_id": RUN_ID, "lane": "fraud"}, headers=keyed("open-1", **bearer("dlk_guessed"))
    )
    assert_problem(forged, 401, "unauthorized")
    assert_problem(
        secured_api.get(f"/runs/{RUN_ID}", headers={"X-Api-Key": "dlk_guessed"}), 401, "unauthorized"
    )
    assert event_count(secured_api) == events_before


def test_liveness_and_the_proof_key_need_no_key(secured_api: TestClient) -> None:
    # Orchestrators and offline verifiers reach these without credentials.
    assert secured_api.get("/healthz").status_code == 200
    assert secured_api.get("/keys").json()["algorithm"]


# --- Authorisation ------------------------------------------------------------------------------


def test_an_auditor_reads_but_never_writes(secured_api: TestClient) -> None:
    open_run_as_operator(secured_api)
    events_before = event_count(secured_api)

    # The auditor's key reads the run (also sent as X-Api-Key) ...
    assert secured_api.get(f"/runs/{RUN_ID}", headers=bearer(AUDITOR_KEY)).status_code == 200
    assert secured_api.get(f"/runs/{RUN_ID}", headers={"X-Api-Key": AUDITOR_KEY}).status_code == 200

    # ... but recording a decision or opening a run is forbidden, and nothing is written.
    decision = secured_api.post(
        f"/runs/{RUN_ID}/decisions", json=decision_body(), headers=keyed("decide-1", **bearer(AUDITOR_KEY))
    )
    assert_problem(decision, 403, "forbidden")
    opening = secured_api.post(
        "/runs", json={"run_id": "other-run", "lane": "fraud"}, headers=keyed("open-2", **bearer(AUDITOR_KEY))
    )
    assert_problem(opening, 403, "forbidden")
    assert event_count(secured_api) == events_before


def test_a_writer_records_decisions_but_may_not_open_runs(secured_api: TestClient) -> None:
    # The scoring lane may not open its own run: that is an operator's job.
    opening = secured_api.post(
        "/runs", json={"run_id": RUN_ID, "lane": "fraud"}, headers=keyed("open-1", **bearer(WRITER_KEY))
    )
    assert "operator" in assert_problem(opening, 403, "forbidden")["detail"]

    # The operator opens it; the writer then records into it.
    open_run_as_operator(secured_api)
    decision = secured_api.post(
        f"/runs/{RUN_ID}/decisions", json=decision_body(), headers=keyed("decide-1", **bearer(WRITER_KEY))
    )
    assert decision.status_code == 201, decision.text

    # Corrections and closes are the operator's too.
    correction = secured_api.post(
        f"/decisions/{decision.json()['decision_id']}/corrections",
        json={"outcome": "approve", "reason": "false positive"},
        headers=keyed("fix-1", **bearer(WRITER_KEY)),
    )
    assert_problem(correction, 403, "forbidden")
    assert_problem(
        secured_api.post(f"/runs/{RUN_ID}/close", headers=keyed("close-1", **bearer(WRITER_KEY))),
        403,
        "forbidden",
    )


def test_the_principal_is_recorded_as_the_actor_of_each_event(secured_api: TestClient) -> None:
    # The operator opens the run, the lane records a decision, the operator corrects it.
    open_run_as_operator(secured_api)
    decision = secured_api.post(
        f"/runs/{RUN_ID}/decisions", json=decision_body(), headers=keyed("decide-1", **bearer(WRITER_KEY))
    ).json()
    correction = secured_api.post(
        f"/decisions/{decision['decision_id']}/corrections",
        json={"outcome": "approve", "reason": "false positive"},
        headers=keyed("fix-1", **bearer(OPERATOR_KEY)),
    )
    assert correction.status_code == 201, correction.text

    # The decision's history names who did what; the auditor may read it.
    history = secured_api.get(
        f"/decisions/{decision['decision_id']}/history", headers=bearer(AUDITOR_KEY)
    ).json()
    assert [(event["event_type"], event["actor"]) for event in history["events"]] == [
        ("Recorded", "lane-a"),
        ("Corrected", "ops"),
    ]


def test_the_same_key_from_two_principals_does_not_collide(secured_api: TestClient) -> None:
    # Two lanes happen to use the same Idempotency-Key for different inputs.
    open_run_as_operator(secured_api)
    first = secured_api.post(
        f"/runs/{RUN_ID}/decisions",
        json=decision_body("txn-1"),
        headers=keyed("decide", **bearer(WRITER_KEY)),
    )
    second = secured_api.post(
        f"/runs/{RUN_ID}/decisions",
        json=decision_body("txn-2"),
        headers=keyed("decide", **bearer(SECOND_WRITER_KEY)),
    )

    # Keys are scoped to their principal: both execute, neither is a "key reused".
    assert (first.status_code, first.headers["Idempotent-Replayed"]) == (201, "false")
    assert (second.status_code, second.headers["Idempotent-Replayed"]) == (201, "false")


# --- Open local mode never leaves the loopback --------------------------------------------------


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1", "localhost"])
def test_open_mode_may_bind_to_a_loopback_address(host: str) -> None:
    refuse_open_mode_off_loopback(host, open_local_mode=True)


@pytest.mark.parametrize(
    "host", ["0.0.0.0", "::", "192.168.1.20", "10.0.0.1", "ledger.example.com", "", "[::1]"]
)
def test_open_mode_refuses_any_other_address(host: str) -> None:
    with pytest.raises(ConfigurationError, match="refusing to serve without API keys"):
        refuse_open_mode_off_loopback(host, open_local_mode=True)


def test_with_keys_any_address_is_allowed() -> None:
    refuse_open_mode_off_loopback("0.0.0.0", open_local_mode=False)


def test_serve_refuses_open_mode_on_a_public_address(tmp_path: Path) -> None:
    # No API key anywhere in the environment, and a database of the test's own.
    database = tmp_path / "ledger.sqlite3"

    # Serving on every interface is refused (the process exits: it never serves) before
    # anything is bound or created.
    result = serve_refused(tmp_path, "--host", "0.0.0.0")
    assert result.returncode != 0

    # One line on stderr says why, and how to fix it.
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: refusing to serve without API keys on 0.0.0.0")
    assert not database.exists()
