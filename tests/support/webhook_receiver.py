"""A real HTTP receiver on 127.0.0.1 for the dispatch tests: it records every request,
answers from a script, and applies effects through the shipped DedupeReceiver."""

from __future__ import annotations

import asyncio
import base64
import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from interfaces.threaded_server import free_port, serving_in_thread
from interfaces.webhooks import DedupeReceiver


def new_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


@dataclass(frozen=True)
class Received:
    headers: dict[str, str]
    body: bytes
    at: float


@dataclass
class ScriptedReceiver:
    """Answers the n-th request for one webhook-id with script[n] (the last entry repeats):
    "ok" applies (deduped) and answers the ref; "fail" answers 500; "gone" 410;
    "busy:<s>" 503 with Retry-After <s>; "hang" applies, then answers only after `hang_s`."""

    secret: str = field(default_factory=new_secret)
    script: list[str] = field(default_factory=lambda: ["ok"])
    hang_s: float = 5.0
    requests: list[Received] = field(default_factory=list)
    effects: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.lock = threading.Lock()
        self.dedupe = DedupeReceiver(self.secret, self._apply)

    def _apply(self, action: dict[str, Any]) -> str:
        with self.lock:
            self.effects[action["action_id"]] = self.effects.get(action["action_id"], 0) + 1
        return f"ref-{action['action_id'][:8]}"

    def requests_for(self, message_id: str) -> list[Received]:
        with self.lock:
            return [request for request in self.requests if request.headers.get("webhook-id") == message_id]

    async def handle(self, request: Request) -> Response:
        body = await request.body()
        headers = {key.lower(): value for key, value in request.headers.items()}
        with self.lock:
            seen = sum(
                1
                for earlier in self.requests
                if earlier.headers.get("webhook-id") == headers.get("webhook-id")
            )
            self.requests.append(Received(headers, body, time.monotonic()))
        step = self.script[min(seen, len(self.script) - 1)]
        if step == "fail":
            return JSONResponse({"error": "try later"}, status_code=500)
        if step == "gone":
            return Response(status_code=410)
        if step.startswith("busy:"):
            return Response(status_code=503, headers={"retry-after": step.removeprefix("busy:")})
        status, answer = await asyncio.to_thread(self.dedupe.receive, headers, body)
        if step == "hang":
            await asyncio.sleep(self.hang_s)
        return JSONResponse(answer, status_code=status)


@contextmanager
def serving(receiver: ScriptedReceiver) -> Iterator[str]:
    """Serve the receiver on 127.0.0.1 in a thread; yields its URL."""
    port = free_port()
    app = Starlette(routes=[Route("/hooks", receiver.handle, methods=["POST"])])
    with serving_in_thread(
        app, port=port, name="test-receiver", start_timeout=10, stop_timeout=10, lifespan="off"
    ):
        yield f"http://127.0.0.1:{port}/hooks"
