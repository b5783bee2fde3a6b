"""For the other side: receiving the actions the ledger dispatches.

The ledger posts each action as a Standard Webhook (standardwebhooks.com). Delivery is
at least once: a timeout, a crash or a redelivery sends the same action again, with
the same `webhook-id` and the same body bytes. A correct receiver therefore

1. verifies the signature over the raw body (`verify` below), and
2. applies each `webhook-id` once, answering a resend with the first answer
   (`DedupeReceiver` below shows the pattern; keep the seen ids in your own database,
   in the same transaction as the effect), and
3. answers 2xx with `{"ref": "..."}` to commit the action with that external reference,
   410 to say "never send this again", anything else to be retried later.

Run `python -m interfaces.webhooks --port 9100` for a receiver to try the ledger with:
it verifies, dedupes and answers a ref (its secret comes from RECEIVER_SECRET).
"""

from __future__ import annotations

import argparse
import json
import os
import threading
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from standardwebhooks import Webhook, WebhookVerificationError


class WebhookRejected(Exception):
    """The request is not a genuine, fresh webhook from the ledger: answer 400 or 401."""


def verify(secret: str, headers: Mapping[str, str], body: bytes) -> dict[str, Any]:
    """Check a webhook's signature and freshness and return its JSON body.

    `secret` is the effector's `whsec_...` secret, `headers` the request headers (any
    case), `body` the raw bytes as received (never a re-serialised copy: one changed
    byte breaks the signature). Raises WebhookRejected when a header is missing, the
    timestamp is more than five minutes off, or no signature matches."""
    try:
        document = Webhook(secret).verify(body, dict(headers))
    except WebhookVerificationError as error:
        raise WebhookRejected(str(error)) from None
    except (ValueError, UnicodeDecodeError):  # a malformed signature list, bad base64, not UTF-8
        raise WebhookRejected("malformed webhook headers or body") from None
    if not isinstance(document, dict):
        raise WebhookRejected("the body is not a JSON object")
    return document


Apply = Callable[[dict[str, Any]], str]
"""Carry out one action (the verified body) and return its reference."""


class DedupeReceiver:
    """Applies each webhook-id once, and answers a resend with the first answer.

    This one keeps the seen ids in memory, which is enough for an example and for tests;
    a real receiver keeps them in its database, written with the effect itself."""

    def __init__(self, secret: str, apply: Apply) -> None:
        self.secret = secret
        self.apply = apply
        self._answers: dict[str, str] = {}
        self._lock = threading.Lock()
        self._in_progress: dict[str, threading.Lock] = {}

    @property
    def applied(self) -> dict[str, str]:
        """The ref of every webhook-id applied so far."""
        with self._lock:
            return dict(self._answers)

    def receive(self, headers: Mapping[str, str], body: bytes) -> tuple[int, dict[str, Any]]:
        """(status, JSON answer) for one request."""
        try:
            action = verify(self.secret, headers, body)
        except WebhookRejected as error:
            return 401, {"error": str(error)}
        message_id = {key.lower(): value for key, value in headers.items()}["webhook-id"]
        with self._lock:
            guard = self._in_progress.setdefault(message_id, threading.Lock())
        with guard:  # a resend waits for the first delivery of the same id
            with self._lock:
                known = self._answers.get(message_id)
            if known is None:
                known = self.apply(action)
                with self._lock:
                    self._answers[message_id] = known
        return 200, {"ref": known}


def receiver_app(receiver: DedupeReceiver) -> FastAPI:
    """A minimal FastAPI app around a DedupeReceiver: POST /hooks."""
    app = FastAPI(title="decision-ledger example receiver")

    @app.post("/hooks")
    async def hooks(request: Request) -> JSONResponse:
        body = await request.body()
        status, answer = receiver.receive(request.headers, body)
        return JSONResponse(answer, status_code=status)

    return app


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description="An example receiver of the ledger's actions.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9100)
    arguments = parser.parse_args()
    secret = os.environ.get("RECEIVER_SECRET")
    if not secret:
        raise SystemExit("set RECEIVER_SECRET to the effector's whsec_... secret")

    def apply(action: dict[str, Any]) -> str:
        print(json.dumps({"applied": action["action_id"], "kind": action["kind"]}), flush=True)
        return f"ref-{uuid.uuid4().hex[:12]}"

    uvicorn.run(receiver_app(DedupeReceiver(secret, apply)), host=arguments.host, port=arguments.port)


if __name__ == "__main__":
    main()
