"""Redeliveries answered from the bytes of the first answer, before routing or validation.

A POST that comes again with the same principal, route, Idempotency-Key and body bytes
gets the status, headers and body that were sent the first time, marked
`Idempotent-Replayed: true`. Only answers the routes marked as idempotent (2xx, with the
header) are kept, after their transaction committed. With several API processes the
answers are shared (infrastructure/answer_stores.py), so this holds whichever process a
redelivery reaches. Anything else (another body, even by a byte, an unknown key, an
answer the store no longer holds) goes the usual way, where the ledger compares the
command's fingerprint with the token's receipt.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from application.ports import AnswerKey, AnswerStore, StoredAnswer
from interfaces.api.problems import HttpProblem
from interfaces.api.security import Authenticator

REPLAYED_HEADER = b"idempotent-replayed"


@dataclass(frozen=True)
class _ReplayedRoute:
    """What the metrics read of a route (its path template), for an answer replayed
    before routing."""

    path: str


class ReplayedAnswers:
    """ASGI middleware. It runs on the event loop, so a process's own store needs no lock."""

    def __init__(self, app: ASGIApp, authenticator: Authenticator, store: AnswerStore) -> None:
        self.app = app
        self.authenticator = authenticator
        self.store = store

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or self.store.max_bytes == 0:
            await self.app(scope, receive, send)
            return
        idempotency_key = _header(scope, b"idempotency-key")
        principal = self._principal(scope) if idempotency_key else None
        if idempotency_key is None or principal is None:
            await self.app(scope, receive, send)
            return
        body, more = await _read_body(receive)
        key = (principal, scope["path"], idempotency_key)
        digest = hashlib.sha256(body).digest()
        answer = self.store.get(key)
        if answer is not None and answer.body_digest == digest:
            if answer.route_path is not None:
                scope["route"] = _ReplayedRoute(answer.route_path)  # for the metrics' route label
            await send({"type": "http.response.start", "status": answer.status, "headers": answer.headers})
            await send({"type": "http.response.body", "body": answer.body})
            return
        await self._answer_and_keep(scope, _replaying(body, more, receive), send, key, digest)

    async def _answer_and_keep(
        self, scope: Scope, receive: Receive, send: Send, key: AnswerKey, digest: bytes
    ) -> None:
        start: Message | None = None
        chunks: list[bytes] = []

        async def keeping_send(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                start = message
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))
            await send(message)

        await self.app(scope, receive, keeping_send)
        if start is None or not 200 <= start["status"] < 300:
            return
        headers = list(start.get("headers", []))
        if not any(name == REPLAYED_HEADER for name, _ in headers):
            return  # not an idempotent command's answer
        replay_headers = [(name, b"true" if name == REPLAYED_HEADER else value) for name, value in headers]
        route_path = getattr(scope.get("route"), "path", None)
        self.store.put(
            key, StoredAnswer(digest, start["status"], replay_headers, b"".join(chunks), route_path)
        )

    def _principal(self, scope: Scope) -> str | None:
        try:
            return self.authenticator.authenticate(Request(scope)).name
        except HttpProblem:
            return None  # the app answers 401 itself


def _header(scope: Scope, name: bytes) -> bytes | None:
    for header, value in scope["headers"]:
        if header == name:
            return bytes(value)
    return None


async def _read_body(receive: Receive) -> tuple[bytes, bool]:
    """The request body; and whether the client went away before sending all of it."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return b"".join(chunks), True
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks), False


def _replaying(body: bytes, disconnected: bool, receive: Receive) -> Receive:
    """A receive that hands the app the body already read, then defers to the client."""
    delivered = False

    async def replay() -> Message:
        nonlocal delivered
        if not delivered:
            delivered = True
            if disconnected:
                return {"type": "http.disconnect"}
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
