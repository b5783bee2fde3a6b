"""One attempt over real HTTP, and the receiver's side: what is sent, how each answer is
classified, and what `verify` refuses."""

from __future__ import annotations

import asyncio
import json
import math
import time
from datetime import UTC, datetime, timedelta

import pytest

from infrastructure.effectors import Effector
from infrastructure.webhook_sender import AttemptOutcome, WebhookSender, retry_after_seconds
from interfaces.webhooks import DedupeReceiver, WebhookRejected, verify
from tests.support.webhook_receiver import ScriptedReceiver, free_port, new_secret, serving

BODY = json.dumps({"type": "action.requested", "action_id": "a-1", "kind": "block-card"}).encode()


def effector(url: str, secret: str, timeout_s: float = 2.0) -> Effector:
    return Effector(
        name="card-service",
        url=url,
        kinds=frozenset({"block-card"}),
        secret=secret,
        timeout_s=timeout_s,
        retry_schedule_s=(0.0,),
    )


def send_all(
    target: Effector, times: int, message_id: str = "a-1", body: bytes = BODY
) -> list[AttemptOutcome]:
    async def run() -> list[AttemptOutcome]:
        sender = WebhookSender()
        try:
            return [await sender.send(target, message_id, body) for _ in range(times)]
        finally:
            await sender.aclose()

    return asyncio.run(run())


def test_every_attempt_carries_the_same_id_and_body_and_a_signature_that_verifies() -> None:
    receiver = ScriptedReceiver(script=["fail", "fail", "ok"])
    with serving(receiver) as url:
        outcomes = send_all(effector(url, receiver.secret), 3)

    assert [outcome.delivered for outcome in outcomes] == [False, False, True]
    assert [outcome.status_code for outcome in outcomes] == [500, 500, 200]
    assert outcomes[2].external_ref == "ref-a-1"
    assert len(receiver.requests) == 3
    for request in receiver.requests:
        assert request.headers["webhook-id"] == "a-1"
        assert request.body == BODY
        assert request.headers["content-type"] == "application/json"
        assert abs(int(request.headers["webhook-timestamp"]) - time.time()) < 60
        assert request.headers["webhook-signature"].startswith("v1,")
        assert verify(receiver.secret, request.headers, request.body)["action_id"] == "a-1"
    assert receiver.effects == {"a-1": 1}


def test_each_answer_is_classified() -> None:
    for script, expected in [
        (["gone"], (410, False, False)),
        (["fail"], (500, False, True)),
        (["busy:7"], (503, False, True)),
    ]:
        receiver = ScriptedReceiver(script=script)
        with serving(receiver) as url:
            (outcome,) = send_all(effector(url, receiver.secret), 1)
        assert (outcome.status_code, outcome.delivered, outcome.retryable) == expected
        assert outcome.error == f"the receiver answered {expected[0]}"
        assert outcome.latency_ms >= 0
        assert outcome.retry_after_s == (7.0 if script == ["busy:7"] else None)


def test_a_slow_receiver_is_a_timeout_and_a_closed_port_is_refused() -> None:
    receiver = ScriptedReceiver(script=["hang"], hang_s=3.0)
    with serving(receiver) as url:
        (slow,) = send_all(effector(url, receiver.secret, timeout_s=0.3), 1)
    assert slow.status_code is None and slow.error == "no answer within 0.3 s" and slow.retryable
    # The effect was applied even though the answer never came: a resend must dedupe.
    assert receiver.effects == {"a-1": 1}

    (refused,) = send_all(effector(f"http://127.0.0.1:{free_port()}/hooks", new_secret()), 1)
    assert refused.status_code is None and refused.error is not None
    assert refused.error.startswith("could not connect")


def test_verify_refuses_what_the_ledger_did_not_send() -> None:
    secret = new_secret()
    sender = WebhookSender()
    target = effector("http://127.0.0.1:1/hooks", secret)
    headers = sender.headers(target, "a-1", BODY, datetime.now(UTC))
    assert verify(secret, headers, BODY)["kind"] == "block-card"
    # Header names in any case.
    assert verify(secret, {key.upper(): value for key, value in headers.items()}, BODY)

    with pytest.raises(WebhookRejected, match="No matching signature"):
        verify(secret, headers, BODY.replace(b"block", b"unblk"))
    with pytest.raises(WebhookRejected, match="No matching signature"):
        verify(new_secret(), headers, BODY)
    with pytest.raises(WebhookRejected, match="No matching signature"):
        verify(secret, {**headers, "webhook-id": "a-2"}, BODY)
    with pytest.raises(WebhookRejected, match="Missing required headers"):
        verify(secret, {key: value for key, value in headers.items() if key != "webhook-signature"}, BODY)
    stale = sender.headers(target, "a-1", BODY, datetime.now(UTC) - timedelta(minutes=6))
    with pytest.raises(WebhookRejected, match="too old"):
        verify(secret, stale, BODY)
    # A garbled signature list, or a body that is not UTF-8, is refused: standardwebhooks
    # 1.1 raises ValueError on them (answered as malformed), 1.3 finds no signature.
    for garbled_headers, garbled_body in (
        ({**headers, "webhook-signature": "garbage"}, BODY),
        (headers, b"\xff\xfe"),
    ):
        with pytest.raises(WebhookRejected, match=r"malformed|No matching signature"):
            verify(secret, garbled_headers, garbled_body)
    with pytest.raises(WebhookRejected, match="not a JSON object"):
        verify(secret, sender.headers(target, "a-1", b"[1]", datetime.now(UTC)), b"[1]")


def test_the_dedupe_receiver_applies_an_id_once_and_refuses_forgeries() -> None:
    secret = new_secret()
    applied: list[str] = []
    receiver = DedupeReceiver(secret, lambda action: applied.append(action["action_id"]) or "ref-1")
    headers = WebhookSender().headers(effector("http://127.0.0.1:1/", secret), "a-1", BODY, datetime.now(UTC))

    assert receiver.receive(headers, BODY) == (200, {"ref": "ref-1"})
    assert receiver.receive(headers, BODY) == (200, {"ref": "ref-1"})
    status, answer = receiver.receive(headers, BODY + b" ")
    assert status == 401 and "signature" in answer["error"]
    assert applied == ["a-1"] and receiver.applied == {"a-1": "ref-1"}


def test_retry_after_is_seconds_or_a_date_and_is_capped() -> None:
    now = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)
    assert retry_after_seconds(None, now) is None
    assert retry_after_seconds("120", now) == 120.0
    assert retry_after_seconds("Wed, 02 Dec 2026 09:01:30 GMT", now) == 90.0
    assert retry_after_seconds("Wed, 02 Dec 2026 08:00:00 GMT", now) == 0.0
    assert retry_after_seconds("99999999", now) == 86_400.0
    assert retry_after_seconds("soon", now) is None
    assert math.isclose(retry_after_seconds(" 5 ", now) or 0, 5.0)


def test_the_example_receiver_app_verifies_dedupes_and_answers_a_ref() -> None:
    from fastapi.testclient import TestClient

    from interfaces.webhooks import receiver_app

    secret = new_secret()
    applied: list[str] = []
    app = receiver_app(DedupeReceiver(secret, lambda action: applied.append(action["kind"]) or "ref-42"))
    sender = WebhookSender()
    headers = sender.headers(effector("http://127.0.0.1:1/", secret), "a-1", BODY, datetime.now(UTC))
    with TestClient(app) as client:
        first = client.post("/hooks", content=BODY, headers=headers)
        again = client.post("/hooks", content=BODY, headers=headers)
        forged = client.post("/hooks", content=BODY.replace(b"block", b"xxxxx"), headers=headers)
    assert (first.status_code, first.json()) == (200, {"ref": "ref-42"})
    assert (again.status_code, again.json()) == (200, {"ref": "ref-42"})
    assert forged.status_code == 401
    assert applied == ["block-card"]
