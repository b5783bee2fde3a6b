"""Sending one attempt of an action to its effector, as a Standard Webhook.

One pooled httpx.AsyncClient serves every effector. Each attempt is signed afresh
(`webhook-timestamp` is the attempt's own), but the body bytes and the `webhook-id`
are the caller's, the same on every attempt, so the receiver can dedupe on the id.
The answer is classified here and nothing else is decided: the dispatcher schedules.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import httpx
from standardwebhooks import Webhook

from infrastructure.effectors import Effector

#: The most of an answer read to find its `ref` (the rest is not read).
MAX_ANSWER_BYTES = 64 * 1024
#: The longest Retry-After honoured (a day): a floor, not a way to park an action forever.
MAX_RETRY_AFTER_S = 86_400.0
MAX_REF_LENGTH = 2_000
_PRINTABLE_REF = re.compile(r"^[^\x00-\x1f\x7f]+$")
#: 410 Gone: the receiver says never to send this again.
GONE = 410


@dataclass(frozen=True)
class AttemptOutcome:
    """What one attempt came to."""

    status_code: int | None
    error: str | None
    latency_ms: float
    external_ref: str | None = None
    retry_after_s: float | None = None

    @property
    def delivered(self) -> bool:
        return self.error is None

    @property
    def retryable(self) -> bool:
        return self.status_code != GONE


class WebhookSender:
    """Signs and posts attempts over one connection pool."""

    def __init__(self, *, max_connections: int = 16, client: httpx.AsyncClient | None = None) -> None:
        self._client = client or httpx.AsyncClient(
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
            follow_redirects=False,
            trust_env=False,
        )
        self._signers: dict[str, Webhook] = {}

    async def aclose(self) -> None:
        await self._client.aclose()

    def headers(self, effector: Effector, message_id: str, body: bytes, now: datetime) -> dict[str, str]:
        """The Standard Webhooks headers of one attempt."""
        signer = self._signers.get(effector.secret)
        if signer is None:
            signer = self._signers[effector.secret] = Webhook(effector.secret)
        return {
            "content-type": "application/json",
            "webhook-id": message_id,
            "webhook-timestamp": str(math.floor(now.timestamp())),
            "webhook-signature": signer.sign(message_id, now, body.decode("utf-8")),
        }

    async def send(self, effector: Effector, message_id: str, body: bytes) -> AttemptOutcome:
        headers = self.headers(effector, message_id, body, datetime.now(UTC))
        started = time.perf_counter()

        def elapsed() -> float:
            return round((time.perf_counter() - started) * 1000, 3)

        try:
            async with asyncio.timeout(effector.timeout_s):
                async with self._client.stream(
                    "POST", effector.url, content=body, headers=headers, timeout=effector.timeout_s
                ) as response:
                    answer = await _read_capped(response)
        except (TimeoutError, httpx.TimeoutException):
            return AttemptOutcome(None, f"no answer within {effector.timeout_s:g} s", elapsed())
        except httpx.HTTPError as error:
            return AttemptOutcome(None, _describe(error), elapsed())
        latency = elapsed()
        if 200 <= response.status_code < 300:
            return AttemptOutcome(response.status_code, None, latency, external_ref=_ref_of(answer))
        return AttemptOutcome(
            response.status_code,
            f"the receiver answered {response.status_code}",
            latency,
            retry_after_s=retry_after_seconds(response.headers.get("retry-after"), datetime.now(UTC)),
        )


async def _read_capped(response: httpx.Response) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        chunks.append(chunk)
        size += len(chunk)
        if size >= MAX_ANSWER_BYTES:
            break
    return b"".join(chunks)[:MAX_ANSWER_BYTES]


def _describe(error: httpx.HTTPError) -> str:
    if isinstance(error, httpx.ConnectError):
        return f"could not connect: {error}" if str(error) else "could not connect"
    name = type(error).__name__
    return f"{name}: {error}" if str(error) else name


def _ref_of(answer: bytes) -> str | None:
    """The answer's string `ref`, when it is a JSON object with one fit to keep."""
    try:
        document = json.loads(answer)
    except ValueError:
        return None
    ref = document.get("ref") if isinstance(document, dict) else None
    if isinstance(ref, str) and len(ref) <= MAX_REF_LENGTH and _PRINTABLE_REF.match(ref) and ref.strip():
        return ref
    return None


def retry_after_seconds(value: str | None, now: datetime) -> float | None:
    """A Retry-After header (delay-seconds or an HTTP date) as seconds from now, capped."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return min(float(value), MAX_RETRY_AFTER_S)
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return min(max((moment - now).total_seconds(), 0.0), MAX_RETRY_AFTER_S)
