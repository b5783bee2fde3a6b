"""What the REST API tests share: requests that read like the README's curl walk-through,
and the checks every answer must pass (problem+json on errors, replay headers on writes)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
from fastapi.testclient import TestClient

from interfaces.threaded_server import free_port

PROBLEM_MEDIA_TYPE = "application/problem+json"
RUN_ID = "fraud-2026-11-27"
MODEL = {"name": "gbm", "version": "7"}
#: The console script installed next to the interpreter running the tests.
CONSOLE_SCRIPT = Path(sys.executable).with_name("decision-ledger")


#: API keys of the secured app (conftest's `secured_api`): two scoring lanes, an operator, an auditor.
WRITER_KEY = "dlk_writer-lane-a-0123456789"
SECOND_WRITER_KEY = "dlk_writer-lane-b-0123456789"
OPERATOR_KEY = "dlk_operator-ops-0123456789"
AUDITOR_KEY = "dlk_auditor-audit-0123456789"


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def serve_refused(workdir: Path, *arguments: str, **settings: str) -> subprocess.CompletedProcess[str]:
    """Run `decision-ledger serve` on a free port and a database of its own, with no
    DECISION_LEDGER_ setting but these, when it is expected to refuse to start."""
    environment = {
        name: value for name, value in os.environ.items() if not name.startswith("DECISION_LEDGER_")
    }
    environment |= {f"DECISION_LEDGER_{name.upper()}": value for name, value in settings.items()}
    command = [str(CONSOLE_SCRIPT), "serve", "--port", str(free_port()), *arguments]
    command += ["--database-url", f"sqlite:///{workdir / 'ledger.sqlite3'}"]
    return subprocess.run(command, cwd=workdir, env=environment, capture_output=True, text=True, timeout=120)


def keyed(key: str | bytes, **headers: str) -> dict[str, Any]:
    """Headers carrying an Idempotency-Key (bytes send octets the client would refuse to encode)."""
    return {"Idempotency-Key": key, **headers}


def assert_problem(response: httpx.Response, status: int, slug: str) -> dict[str, Any]:
    """An RFC 9457 problem of this status and type, with every mandatory field."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM_MEDIA_TYPE), response.headers
    problem = response.json()
    assert {"type", "title", "status", "detail"} <= problem.keys(), problem
    assert problem["type"] == f"/problems/{slug}", problem
    assert problem["status"] == status
    assert problem["title"] and problem["detail"]
    return problem


def field_paths(problem: dict[str, Any]) -> list[str]:
    return [entry["field"] for entry in problem.get("errors") or []]


def event_count(api: TestClient) -> int:
    """How many events are stored: it grows if and only if something was written. (Not the
    head position: PostgreSQL sequences leave gaps where a transaction rolled back.)"""
    return api.app.state.service.ledger.index.count_after(0)  # type: ignore[attr-defined]


def assert_executed(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["Idempotent-Replayed"] == "false"
    return response.json()


def assert_replayed(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["Idempotent-Replayed"] == "true"
    return response.json()


# --- The README's steps, one call each ------------------------------------------------


def decision_body(input_id: str = "txn-1", outcome: str = "decline", **fields: Any) -> dict[str, Any]:
    return {"input_id": input_id, "outcome": outcome, "score": 0.97, "model": MODEL, **fields}


def open_run(api: TestClient, run_id: str = RUN_ID, lane: str = "fraud", **fields: Any) -> dict[str, Any]:
    response = api.post(
        "/runs", json={"run_id": run_id, "lane": lane, **fields}, headers=keyed(f"open-{run_id}")
    )
    assert response.status_code == 201, response.text
    return response.json()


def admit(api: TestClient, input_ids: list[str], run_id: str = RUN_ID) -> dict[str, Any]:
    response = api.post(
        f"/runs/{run_id}/basis",
        json={"input_ids": input_ids},
        headers=keyed(f"basis-{run_id}-{input_ids[0]}"),
    )
    assert response.status_code == 200, response.text
    return response.json()


def record_decision(
    api: TestClient, input_id: str = "txn-1", outcome: str = "decline", run_id: str = RUN_ID
) -> dict[str, Any]:
    response = api.post(
        f"/runs/{run_id}/decisions",
        json=decision_body(input_id, outcome),
        headers=keyed(f"decide-{input_id}"),
    )
    assert response.status_code == 201, response.text
    return response.json()


def request_action(
    api: TestClient, decision_id: str, action_key: str = "block-card-txn-1", run_id: str = RUN_ID
) -> dict[str, Any]:
    response = api.post(
        f"/runs/{run_id}/actions",
        json={"decision_id": decision_id, "kind": "block-card"},
        headers=keyed(action_key),
    )
    assert response.status_code == 201, response.text
    return response.json()


def fail_action(api: TestClient, action_id: str) -> dict[str, Any]:
    response = api.post(
        f"/actions/{action_id}/fail", json={"error": "gateway timeout"}, headers=keyed(f"fail-{action_id}")
    )
    assert response.status_code == 200, response.text
    return response.json()


def close_run(api: TestClient, run_id: str = RUN_ID, key: str | None = None) -> dict[str, Any]:
    response = api.post(f"/runs/{run_id}/close", headers=keyed(key or f"close-{run_id}"))
    assert response.status_code == 200, response.text
    return response.json()
