"""Dispatch through the REST API, with the dispatcher running inside the app (as in
`serve`) and a real receiver on 127.0.0.1, on both back ends."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from infrastructure.settings import ApiKeyEntry, Role, Settings
from interfaces.api.app import create_app
from interfaces.api.security import hash_api_key
from tests.support.api import (
    OPERATOR_KEY,
    RUN_ID,
    SECOND_WRITER_KEY,
    WRITER_KEY,
    admit,
    assert_executed,
    assert_problem,
    assert_replayed,
    bearer,
    event_count,
    keyed,
    open_run,
    record_decision,
    request_action,
)
from tests.support.webhook_receiver import ScriptedReceiver, serving


def effectors_file(tmp_path: Path, url: str, secret: str, schedule: str = "[0, 0.05]") -> Path:
    path = tmp_path / "effectors.toml"
    path.write_text(
        f'[[effectors]]\nname = "card-service"\nurl = "{url}"\nkinds = ["block-card"]\n'
        f'secret = "{secret}"\ntimeout_s = 2\nretry_schedule_s = {schedule}\n'
    )
    return path


@pytest.fixture
def receiver() -> Iterator[tuple[ScriptedReceiver, str]]:
    scripted = ScriptedReceiver(script=["fail", "fail", "ok"])
    with serving(scripted) as url:
        yield scripted, url


@pytest.fixture
def dispatch_api(
    database_url: str, signing_key_hex: str, tmp_path: Path, receiver: tuple[ScriptedReceiver, str]
) -> Iterator[TestClient]:
    """The secured app (lane-a writes and operates, lane-b only writes) with an effector for `block-card` whose schedule is two quick attempts."""
    scripted, url = receiver
    settings = Settings(
        database_url=database_url,
        signing_key=signing_key_hex,
        api_keys_file=None,
        effectors_file=effectors_file(tmp_path, url, scripted.secret),
        api_keys=[
            # The walk-through's steps need both roles; lane-b only writes.
            ApiKeyEntry(
                principal="lane-a", roles=[Role.WRITER, Role.OPERATOR], key_sha256=hash_api_key(WRITER_KEY)
            ),
            ApiKeyEntry(principal="lane-b", roles=[Role.WRITER], key_sha256=hash_api_key(SECOND_WRITER_KEY)),
            ApiKeyEntry(principal="ops", roles=[Role.OPERATOR], key_sha256=hash_api_key(OPERATOR_KEY)),
        ],
    )
    with TestClient(create_app(settings), headers=bearer(WRITER_KEY)) as client:
        yield client


def wait_for(api: TestClient, action_id: str, until: Any, timeout: float = 30.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        action = api.get(f"/actions/{action_id}").json()
        if until(action):
            return action
        assert time.monotonic() < deadline, action
        time.sleep(0.02)


def test_a_dead_letter_is_listed_and_an_operator_redelivers_it(
    dispatch_api: TestClient, receiver: tuple[ScriptedReceiver, str]
) -> None:
    api, (scripted, _) = dispatch_api, receiver
    open_run(api)
    admit(api, ["txn-1", "txn-2"])
    decision = record_decision(api, "txn-1")
    action = request_action(api, decision["decision_id"])

    # Two attempts fail: the schedule is used up; the action is failed and dead-lettered.
    failed = wait_for(api, action["action_id"], lambda a: a["dispatch"] == "dead_lettered")
    assert failed["status"] == "failed" and failed["retryable"]
    assert [(d["attempt"], d["status_code"], d["outcome"]) for d in failed["deliveries"]] == [
        (1, 500, "failed"),
        (2, 500, "failed"),
    ]

    # It is listed among the failed actions (and filters and paging work).
    # (min_position: read your writes, once the views have applied the failure.)
    listed = api.get("/actions", params={"status": "failed", "min_position": failed["position"]})
    assert listed.status_code == 200, listed.text
    assert [a["action_id"] for a in listed.json()["actions"]] == [action["action_id"]]
    assert listed.json()["next_after"] is None
    assert api.get("/actions", params={"status": "failed", "kind": "refund"}).json()["actions"] == []
    assert api.get("/actions", params={"run_id": "other-run"}).json()["actions"] == []
    assert len(api.get("/actions", params={"run_id": RUN_ID, "limit": 1}).json()["actions"]) == 1

    # Redelivery is for operators, with an Idempotency-Key like every write.
    url = f"/actions/{action['action_id']}/redeliver"
    assert_problem(api.post(url, headers=keyed("redeliver-1", **bearer(SECOND_WRITER_KEY))), 403, "forbidden")
    operator = {**bearer(OPERATOR_KEY)}
    assert_problem(api.post(url, headers=operator), 400, "idempotency-key-missing")
    events_before = event_count(api)
    redelivered = assert_executed(api.post(url, headers=keyed("redeliver-1", **operator)), 200)
    assert redelivered["status"] == "failed" and redelivered["dispatch"] in (
        "waiting",
        "in_flight",
        "delivered",
    )
    replayed = assert_replayed(api.post(url, headers=keyed("redeliver-1", **operator)), 200)
    assert replayed["version"] == redelivered["version"]
    assert event_count(api) > events_before

    # The third attempt succeeds: committed, with the same webhook-id as the first two.
    committed = wait_for(api, action["action_id"], lambda a: a["status"] == "committed")
    assert committed["external_ref"] == f"ref-{action['action_id'][:8]}"
    assert [d["attempt"] for d in committed["deliveries"]] == [1, 2, 3]
    assert {r.headers["webhook-id"] for r in scripted.requests} == {action["action_id"]}
    assert scripted.effects == {action["action_id"]: 1}

    # Its history shows every attempt; the metrics count them.
    history = api.get(f"/actions/{action['action_id']}/history").json()["events"]
    assert [event["event_type"] for event in history] == [
        "Requested",
        "DeliveryStarted",
        "DeliveryFailed",
        "DeliveryStarted",
        "Failed",
        "RedeliveryRequested",
        "DeliveryStarted",
        "Committed",
    ]
    metrics = api.get("/metrics").text
    assert 'decision_ledger_deliveries_total{effector="card-service",outcome="delivered"} 1.0' in metrics
    assert 'decision_ledger_dead_letters_total{effector="card-service"} 1.0' in metrics
    assert "decision_ledger_dispatch_lag_positions" in metrics


def test_bad_redeliveries_and_listings_write_nothing(dispatch_api: TestClient) -> None:
    api = dispatch_api
    open_run(api)
    admit(api, ["txn-1"])
    decision = record_decision(api, "txn-1")
    # A kind no effector receives: it stays requested, and nothing is written meanwhile.
    response = api.post(
        f"/runs/{RUN_ID}/actions",
        json={"decision_id": decision["decision_id"], "kind": "send-letter"},
        headers=keyed("letter-1"),
    )
    action = assert_executed(response, 201)
    operator = bearer(OPERATOR_KEY)
    before = event_count(api)

    # Unknown action: 404. Not failed (requested or in flight): 409.
    missing = "00000000-0000-0000-0000-000000000001"
    assert_problem(
        api.post(f"/actions/{missing}/redeliver", headers=keyed("r-1", **operator)), 404, "action-not-found"
    )
    assert_problem(
        api.post(f"/actions/{action['action_id']}/redeliver", headers=keyed("r-2", **operator)),
        409,
        "action-transition-refused",
    )
    assert_problem(
        api.post("/actions/not-a-uuid/redeliver", headers=keyed("r-3", **operator)), 422, "validation-error"
    )
    assert event_count(api) == before

    # Listings: a status, limit or cursor that cannot be is refused.
    # A kind is a label, as the document says: the schema refuses one that is not.
    for params in (
        {"status": "lost"},
        {"limit": 0},
        {"limit": 201},
        {"after": "x"},
        {"run_id": "bad run"},
        {"kind": "bad kind"},
    ):
        assert_problem(api.get("/actions", params=params), 422, "validation-error")
    # As of a position before the action existed, it is not listed yet.
    as_of = api.get("/actions", params={"as_of_position": action["position"] - 1})
    assert as_of.status_code == 200 and action["action_id"] not in [
        a["action_id"] for a in as_of.json()["actions"]
    ]
