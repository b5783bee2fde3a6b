"""What the console tests share: a ledger seeded through the API with one green and one
red run, the console's forms, and a real server for the browser."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient

from tests.support.api import MODEL, free_port

GREEN_RUN = "fraud-green"
RED_RUN = "fraud-red"
RED_INPUTS = [f"txn-r{number}" for number in range(1, 6)]
#: The red run decides these (two inputs stay missing) and fails the action of the first.
RED_DECIDED = RED_INPUTS[:3]


@dataclass
class Seeded:
    """Where the seeded runs stand: the red run's position once all its decisions were
    in, before its action failed and it was closed."""

    red_decided_position: int
    failed_action_id: str


def _post(api: TestClient | httpx.Client, path: str, key: str, body: Any, headers: dict[str, str]) -> Any:
    response = api.post(path, json=body, headers={"Idempotency-Key": key, **headers})
    assert response.status_code in (200, 201), response.text
    return response.json()


def seed_runs(api: TestClient | httpx.Client, headers: dict[str, str] | None = None) -> Seeded:
    """A green run (three inputs, all decided) and a red one (five admitted, three decided,
    one failed action), each closed. `headers` authenticate as an operator."""
    headers = headers or {}
    _post(api, "/runs", f"open-{GREEN_RUN}", {"run_id": GREEN_RUN, "lane": "fraud"}, headers)
    green_inputs = ["txn-g1", "txn-g2", "txn-g3"]
    _post(api, f"/runs/{GREEN_RUN}/basis", "basis-green", {"input_ids": green_inputs}, headers)
    for input_id in green_inputs:
        body = {"input_id": input_id, "outcome": "approve", "score": 0.1, "model": MODEL}
        _post(api, f"/runs/{GREEN_RUN}/decisions", f"decide-{input_id}", body, headers)
    _post(api, f"/runs/{GREEN_RUN}/close", "close-green", None, headers)

    _post(api, "/runs", f"open-{RED_RUN}", {"run_id": RED_RUN, "lane": "fraud"}, headers)
    _post(api, f"/runs/{RED_RUN}/basis", "basis-red", {"input_ids": RED_INPUTS}, headers)
    decisions = []
    for input_id in RED_DECIDED:
        body = {"input_id": input_id, "outcome": "decline", "score": 0.97, "model": MODEL}
        decisions.append(_post(api, f"/runs/{RED_RUN}/decisions", f"decide-{input_id}", body, headers))
    decided_at = decisions[-1]["position"]
    action = _post(
        api,
        f"/runs/{RED_RUN}/actions",
        "block-card-r1",
        {"decision_id": decisions[0]["decision_id"], "kind": "block-card"},
        headers,
    )
    _post(api, f"/actions/{action['action_id']}/fail", "fail-r1", {"error": "gateway timeout"}, headers)
    closed = _post(api, f"/runs/{RED_RUN}/close", "close-red", None, headers)
    # Read-your-writes: the read models have applied the last close before the pages are read.
    caught_up = api.get("/runs", params={"min_position": closed["position"]}, headers=headers)
    assert caught_up.status_code == 200, caught_up.text
    return Seeded(decided_at, action["action_id"])


CSRF_FIELD = re.compile(r'name="csrf_token" value="([^"]+)"')
IDEMPOTENCY_FIELD = re.compile(r'name="idempotency_key" value="([^"]+)"')


def csrf_of(html: str) -> str:
    match = CSRF_FIELD.search(html)
    assert match, "the page has no form with a CSRF token"
    return match.group(1)


def console_login(client: TestClient | httpx.Client, key: str) -> httpx.Response:
    """Log in through the form, as a browser would: the login page first, then the post."""
    page = client.get("/console/login")
    assert page.status_code == 200, page.text
    return client.post(
        "/console/login",
        data={"api_key": key, "csrf_token": csrf_of(page.text), "next": "/console"},
        follow_redirects=False,
    )


@contextmanager
def served(app: FastAPI) -> Iterator[str]:
    """The app on a free loopback port, in a thread; yields its base URL."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.05)
    try:
        yield base
    finally:
        server.should_exit = True
        thread.join(timeout=30)
