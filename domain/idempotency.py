"""The one rule of idempotency keys: a token answers only the request it was first
accepted for. Everything that replays an answer checks it here."""

from __future__ import annotations

from domain.errors import IdempotencyKeyReused


def require_same_request(accepted_fingerprint: str, fingerprint: str) -> None:
    if accepted_fingerprint != fingerprint:
        raise IdempotencyKeyReused("this idempotency key was already used for a different request")
