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
#: A run whose one action an effector receives (a kind the other runs do not use).
DISPATCH_RUN = "fraud-dispatch"
DISPATCHED_KIND = "hold-account"


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


def effectors_toml(url: str, secret: str) -> str:
    """One effector for DISPATCHED_KIND whose schedule allows one attempt: a failed
    attempt dead-letters the action at once."""
    return (
        "[[effectors]]\n"
        'name = "account-service"\n'
        f'url = "{url}"\n'
        f'kinds = ["{DISPATCHED_KIND}"]\n'
        f'secret = "{secret}"\n'
        "timeout_s = 5\n"
        "retry_schedule_s = [0]\n"
    )


def seed_dead_letter(api: TestClient | httpx.Client, headers: dict[str, str]) -> str:
    """An open run with one dispatched action, dead-lettered (its receiver failed the one
    attempt the schedule allows); answers the action's ID."""
    _post(api, "/runs", f"open-{DISPATCH_RUN}", {"run_id": DISPATCH_RUN, "lane": "fraud"}, headers)
    _post(api, f"/runs/{DISPATCH_RUN}/basis", "basis-dispatch", {"input_ids": ["txn-d1"]}, headers)
    body = {"input_id": "txn-d1", "outcome": "decline", "score": 0.97, "model": MODEL}
    decision = _post(api, f"/runs/{DISPATCH_RUN}/decisions", "decide-txn-d1", body, headers)
    action = _post(
        api,
        f"/runs/{DISPATCH_RUN}/actions",
        "hold-d1",
        {"decision_id": decision["decision_id"], "kind": DISPATCHED_KIND, "target": "acct-d1"},
        headers,
    )
    deadline = time.monotonic() + 30
    while True:  # listed as failed once the run views have it too
        listed = api.get("/actions", params={"run_id": DISPATCH_RUN, "status": "failed"}, headers=headers)
        assert listed.status_code == 200, listed.text
        if [a["dispatch"] for a in listed.json()["actions"]] == ["dead_lettered"]:
            return str(action["action_id"])
        assert time.monotonic() < deadline, "the dispatched action was never dead-lettered"
        time.sleep(0.05)


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
