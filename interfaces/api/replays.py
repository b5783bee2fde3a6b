"""Redeliveries answered from the bytes of the first answer, before routing or validation.

A POST that comes again with the same principal, route, Idempotency-Key and body bytes
gets the status, headers and body this process sent the first time, marked
`Idempotent-Replayed: true`. Only answers the routes marked as idempotent (2xx, with the
header) are kept, after their transaction committed. Anything else (another body, even
by a byte, an unknown key, another process's answer) goes the usual way, where the
ledger compares the command's fingerprint with the token's receipt.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from interfaces.api.problems import HttpProblem
from interfaces.api.security import Authenticator

REPLAYED_HEADER = b"idempotent-replayed"


@dataclass(frozen=True)
class _Answer:
    body_digest: bytes
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes
    route: Any

    @property
    def size(self) -> int:
        return len(self.body) + sum(len(name) + len(value) for name, value in self.headers) + 256


class AnswerStore:
    """First answers by (principal, path, key), least recently used dropped beyond a byte budget."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.bytes = 0
        self._answers: OrderedDict[tuple[str, str, bytes], _Answer] = OrderedDict()

    def __len__(self) -> int:
        return len(self._answers)

    def get(self, key: tuple[str, str, bytes]) -> _Answer | None:
        answer = self._answers.get(key)
        if answer is not None:
            self._answers.move_to_end(key)
        return answer

    def put(self, key: tuple[str, str, bytes], answer: _Answer) -> None:
        if answer.size > self.max_bytes:
            return
        previous = self._answers.pop(key, None)
        if previous is not None:
            self.bytes -= previous.size
        self._answers[key] = answer
        self.bytes += answer.size
        while self.bytes > self.max_bytes:
            _, dropped = self._answers.popitem(last=False)
            self.bytes -= dropped.size


class ReplayedAnswers:
    """ASGI middleware; it runs on the event loop, so the store needs no lock."""

    def __init__(self, app: ASGIApp, authenticator: Authenticator, max_bytes: int) -> None:
        self.app = app
        self.authenticator = authenticator
        self.store = AnswerStore(max_bytes)

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
            scope["route"] = answer.route  # for the metrics' route label
            await send({"type": "http.response.start", "status": answer.status, "headers": answer.headers})
            await send({"type": "http.response.body", "body": answer.body})
            return
        await self._answer_and_keep(scope, _replaying(body, more, receive), send, key, digest)

    async def _answer_and_keep(
        self, scope: Scope, receive: Receive, send: Send, key: tuple[str, str, bytes], digest: bytes
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
        self.store.put(
            key, _Answer(digest, start["status"], replay_headers, b"".join(chunks), scope.get("route"))
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
    chunks = []
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
