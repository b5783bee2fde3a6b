"""The ledger is total over what it accepts: for any command the API accepts, every
projection applies it and every read answers 200. Hypothesis sends lanes, metadata,
decisions, corrections and actions drawn from the whole input space (extreme times and
offsets, Unicode edge cases, control characters, deep and wide documents, maximum
lengths, extreme numbers). A refusal must be a 4xx problem; then the run must close
(both projections reach its seal) and every read of what was stored must answer 200.

On SQLite and on PostgreSQL. CI runs a bounded number of examples; set
DECISION_LEDGER_PROPERTY_EXAMPLES (for example 500) for a longer search.
"""

from __future__ import annotations

import json
import os
import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import httpx
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from domain.limits import MAX_INPUT_ID_LENGTH, MAX_NAME_LENGTH, MAX_TEXT_LENGTH

EXAMPLES = int(os.environ.get("DECISION_LEDGER_PROPERTY_EXAMPLES", "8"))

#: Any character at all, surrogates and controls included: the API must sort them out.
any_character = st.characters(codec=None, categories=None)
edge_characters = st.sampled_from(
    ["\x00", "\t", "\n", "\x1f", "\x7f", "\u2028", "\ufeff", "\U0010ffff", "é", "😀"]
)
text = st.text(st.one_of(any_character, edge_characters), min_size=0, max_size=40) | st.sampled_from(
    ["", " ", "x" * MAX_TEXT_LENGTH, "x" * (MAX_TEXT_LENGTH + 1), "é" * MAX_NAME_LENGTH]
)
labels = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._:/-]{0,63}", fullmatch=True) | text
input_ids = (
    st.text(st.one_of(any_character, edge_characters), min_size=1, max_size=12)
    | st.just("i" * MAX_INPUT_ID_LENGTH)
    | st.just("i" * (MAX_INPUT_ID_LENGTH + 1))
)
numbers = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([0.0, -0.0, 1e308, -1e308, 5e-324]),
)
json_values = st.recursive(
    st.none() | st.booleans() | numbers | text,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(text, children, max_size=4),
    max_leaves=30,
)


def deep_document(depth: int) -> dict[str, Any]:
    document: dict[str, Any] = {}
    level = document
    for _ in range(depth - 1):
        level["d"] = {}
        level = level["d"]
    return document


documents = st.dictionaries(text, json_values, max_size=6) | st.integers(30, 34).map(deep_document)
offsets = st.integers(-(23 * 60 + 59), 23 * 60 + 59).map(lambda minutes: timezone(timedelta(minutes=minutes)))
times = st.one_of(
    st.datetimes(
        min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.just(UTC) | offsets
    ),
    st.sampled_from(["1970-01-01T00:00:00Z", "1969-12-31T23:59:59Z", "0001-01-01T00:00:00+23:59"]),
)


@st.composite
def lanes(draw: st.DrawFn) -> dict[str, Any]:
    """One run's worth of commands, each drawn from the whole input space."""
    inputs = draw(st.lists(input_ids, min_size=1, max_size=3, unique=True))
    return {
        "lane": draw(labels),
        "metadata": draw(documents),
        "inputs": inputs,
        "decisions": [
            {
                "input_id": input_id,
                "outcome": draw(labels),
                "score": draw(st.none() | numbers),
                "model": {"name": draw(text), "version": draw(text)},
                "reasons": draw(st.lists(labels, max_size=3)),
                "policy_version": draw(st.none() | text),
                "features_digest": draw(st.none() | text),
            }
            for input_id in inputs
        ],
        "correction": {
            "outcome": draw(labels),
            "reason": draw(text),
            "effective_at": draw(st.none() | times.map(lambda t: t if isinstance(t, str) else t.isoformat())),
        },
        "action": {"kind": draw(labels), "target": draw(st.none() | text), "params": draw(documents)},
        "failure": {"error": draw(text), "retryable": draw(st.booleans())},
        "commit": {"external_ref": draw(st.none() | text), "result": draw(st.none() | documents)},
    }


class Client:
    """Sends commands; a refusal must be a 4xx problem, never a 5xx nor a dropped connection."""

    def __init__(self, api: TestClient) -> None:
        self.api = api

    def send(self, path: str, body: dict[str, Any]) -> httpx.Response | None:
        # ASCII-escaped JSON: lone surrogates travel as \ud800, as any client could send them.
        response = self.api.post(
            path,
            content=json.dumps(body).encode(),
            headers={"Idempotency-Key": str(uuid.uuid4()), "content-type": "application/json"},
        )
        assert response.status_code < 500, (path, body, response.text)
        if response.status_code >= 400:
            assert response.headers["content-type"].startswith("application/problem+json")
            return None
        return response

    def read(self, path: str) -> Any:
        response = self.api.get(path)
        assert response.status_code == 200, (path, response.text)
        return response.json()


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)
@given(lane=lanes())
def test_everything_the_api_accepts_is_projected_and_readable(api: TestClient, lane: dict[str, Any]) -> None:
    client = Client(api)
    run_id = f"run-{uuid.uuid4().hex[:12]}"
    opened = client.send("/runs", {"run_id": run_id, "lane": lane["lane"], "metadata": lane["metadata"]})
    if opened is None:
        return
    client.send(f"/runs/{run_id}/basis", {"input_ids": lane["inputs"]})
    decisions = [
        answer.json()
        for body in lane["decisions"]
        if (answer := client.send(f"/runs/{run_id}/decisions", body)) is not None
    ]
    actions = []
    if decisions:
        decision_id = decisions[0]["decision_id"]
        client.send(f"/decisions/{decision_id}/corrections", lane["correction"])
        requested = client.send(f"/runs/{run_id}/actions", {"decision_id": decision_id, **lane["action"]})
        if requested is not None:
            action_id = requested.json()["action_id"]
            actions.append(action_id)
            client.send(f"/actions/{action_id}/fail", lane["failure"])
            client.send(f"/actions/{action_id}/commit", lane["commit"])

    # Both projections apply everything stored: the close reaches its seal and decides.
    closed = client.send(f"/runs/{run_id}/close", {})
    assert closed is not None
    assert closed.json()["verdict"] in ("committed", "rejected")

    # Every read of what was stored answers 200, now and as of each write.
    client.read(f"/runs/{run_id}")
    client.read(f"/runs/{run_id}/summary")
    client.read(f"/runs/{run_id}/reconciliation")
    client.read(f"/audit?run_id={run_id}")
    for decision in decisions:
        client.read(f"/decisions/{decision['decision_id']}")
        client.read(f"/decisions/{decision['decision_id']}/history")
        client.read(f"/decisions/{decision['decision_id']}?as_of_position={decision['position']}")
    for action_id in actions:
        client.read(f"/actions/{action_id}")
    if closed.json()["verdict"] == "committed":
        client.read(f"/runs/{run_id}/proof")
        for decision in decisions:
            client.read(f"/decisions/{decision['decision_id']}/proof")
