"""Redeliveries answered from the bytes of the first answer (interfaces/api/replays.py):
byte for byte, without reaching the ledger, and never for another body, another
principal, an unauthenticated caller, or an answer that was an error."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from infrastructure.settings import Settings
from interfaces.api.app import create_app
from interfaces.api.replays import ReplayedAnswers
from tests.support.api import (
    OPERATOR_KEY,
    RUN_ID,
    SECOND_WRITER_KEY,
    WRITER_KEY,
    assert_executed,
    assert_problem,
    assert_replayed,
    bearer,
    decision_body,
    event_count,
    keyed,
    open_run,
)

DECISIONS = f"/runs/{RUN_ID}/decisions"


@pytest.fixture(params=["own-answers", "shared-answers"])
def api_settings(request: pytest.FixtureRequest, api_settings: Settings, tmp_path: Path) -> Settings:
    """Each test with a process's own answers, and with answers shared by API processes."""
    if request.param == "shared-answers":
        return api_settings.model_copy(update={"shared_answers_dir": tmp_path / "answers"})
    return api_settings


class LedgerCalls:
    """Counts the ledger's record_async calls for decisions (and can forbid them)."""

    def __init__(self, api: TestClient, monkeypatch: pytest.MonkeyPatch, *, forbid: bool = False) -> None:
        decisions = api.app.state.service.commands.decisions  # type: ignore[attr-defined]
        original = decisions.record_async
        self.count = 0

        async def counted(command: Any) -> Any:
            self.count += 1
            if forbid:
                raise AssertionError("the ledger was reached for a redelivery")
            return await original(command)

        monkeypatch.setattr(decisions, "record_async", counted)


def raw(body: dict[str, Any], *, indent: int | None = None) -> bytes:
    return json.dumps(body, indent=indent).encode()


def post_raw(api: TestClient, path: str, content: bytes, key: str, **headers: str) -> Any:
    return api.post(
        path, content=content, headers=keyed(key, **{"content-type": "application/json", **headers})
    )


def test_a_redelivery_gets_the_first_answer_byte_for_byte_without_reaching_the_ledger(
    api: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    open_run(api)
    first = post_raw(api, DECISIONS, raw(decision_body("txn-1")), "d-1")
    assert_executed(first, 201)
    written = event_count(api)
    LedgerCalls(api, monkeypatch, forbid=True)

    again = post_raw(api, DECISIONS, raw(decision_body("txn-1")), "d-1")

    assert_replayed(again, 201)
    assert again.content == first.content
    assert again.headers["content-type"] == first.headers["content-type"]
    assert again.headers["content-length"] == first.headers["content-length"]
    assert event_count(api) == written


def test_the_same_payload_in_other_bytes_replays_through_the_ledger(
    api: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    open_run(api)
    first = post_raw(api, DECISIONS, raw(decision_body("txn-1")), "d-1")
    calls = LedgerCalls(api, monkeypatch)

    again = post_raw(api, DECISIONS, raw(decision_body("txn-1"), indent=2), "d-1")

    assert calls.count == 1
    assert assert_replayed(again, 201) == first.json()


def test_another_payload_under_the_key_is_refused_not_replayed(api: TestClient) -> None:
    open_run(api)
    assert_executed(post_raw(api, DECISIONS, raw(decision_body("txn-1")), "d-1"), 201)
    written = event_count(api)

    other = post_raw(api, DECISIONS, raw(decision_body("txn-1", outcome="approve")), "d-1")

    assert_problem(other, 422, "idempotency-key-reused")
    assert event_count(api) == written


def test_an_error_is_not_kept_so_the_corrected_situation_executes(api: TestClient) -> None:
    body = raw(decision_body("txn-1"))
    assert_problem(post_raw(api, DECISIONS, body, "d-1"), 404, "run-not-found")
    open_run(api)

    assert_executed(post_raw(api, DECISIONS, body, "d-1"), 201)


def test_a_batch_redelivery_gets_the_first_answer_byte_for_byte(
    api: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    open_run(api)
    items = [{"idempotency_key": f"item-{n}", **decision_body(f"txn-{n}")} for n in range(3)]
    first = post_raw(api, f"{DECISIONS}/batch", raw({"decisions": items}), "batch-1")
    assert_executed(first, 200)
    monkeypatch.setattr(
        api.app.state.service.commands.batches,  # type: ignore[attr-defined]
        "record",
        lambda *args: pytest.fail("the ledger was reached for a redelivered batch"),
    )

    again = post_raw(api, f"{DECISIONS}/batch", raw({"decisions": items}), "batch-1")

    assert_replayed(again, 200)
    assert again.content == first.content


def test_with_no_memory_for_answers_every_redelivery_reaches_the_ledger(
    api_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = api_settings.model_copy(update={"replay_cache_bytes": 0})
    with TestClient(create_app(settings)) as api:
        open_run(api)
        first = post_raw(api, DECISIONS, raw(decision_body("txn-1")), "d-1")
        calls = LedgerCalls(api, monkeypatch)

        again = post_raw(api, DECISIONS, raw(decision_body("txn-1")), "d-1")

        assert calls.count == 1
        assert assert_replayed(again, 201) == first.json()


@pytest.fixture
def lanes_api(secured_api: TestClient) -> TestClient:
    """The secured app, with the run opened by its operator."""
    response = secured_api.post(
        "/runs", json={"run_id": RUN_ID, "lane": "fraud"}, headers=keyed("open", **bearer(OPERATOR_KEY))
    )
    assert response.status_code == 201, response.text
    return secured_api


def test_another_principals_redelivery_is_never_answered_from_the_first_answer(
    lanes_api: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    body = raw(decision_body("txn-1"))
    assert_executed(post_raw(lanes_api, DECISIONS, body, "d-1", **bearer(WRITER_KEY)), 201)
    calls = LedgerCalls(lanes_api, monkeypatch)

    post_raw(lanes_api, DECISIONS, body, "d-1", **bearer(SECOND_WRITER_KEY))

    # lane-b's key is its own: its command goes to the ledger, which judges it there.
    assert calls.count == 1


def test_a_redelivery_without_credentials_is_refused(lanes_api: TestClient) -> None:
    body = raw(decision_body("txn-1"))
    assert_executed(post_raw(lanes_api, DECISIONS, body, "d-1", **bearer(WRITER_KEY)), 201)

    assert_problem(post_raw(lanes_api, DECISIONS, body, "d-1"), 401, "unauthorized")
    unknown = post_raw(lanes_api, DECISIONS, body, "d-1", Authorization="Bearer dlk_not-a-key")
    assert_problem(unknown, 401, "unauthorized")


def test_the_app_closes_its_answer_store_when_it_stops(api_settings: Settings) -> None:
    app = create_app(api_settings)
    [store] = [entry.kwargs["store"] for entry in app.user_middleware if entry.cls is ReplayedAnswers]
    closed = []
    original_close = store.close

    def close() -> None:
        closed.append(True)
        original_close()

    store.close = close  # type: ignore[method-assign]
    with TestClient(app):
        assert not closed

    assert closed == [True]
