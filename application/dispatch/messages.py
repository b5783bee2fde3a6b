"""The webhook an action is sent as: the same bytes on every attempt.

The body is built only from what the action's Requested event fixed, in canonical
JSON, so every attempt, by any dispatcher, after any restart, sends the same bytes."""

from __future__ import annotations

from datetime import UTC
from typing import Any

from domain.action import Action
from domain.canonical import canonical_json

MESSAGE_TYPE = "action.requested"


def action_message(action: Action) -> bytes:
    document: dict[str, Any] = {
        "type": MESSAGE_TYPE,
        "action_id": str(action.id),
        "run_id": action.run_id,
        "decision_id": action.decision_id,
        "input_id": action.input_id,
        "kind": action.kind,
        "target": action.target,
        "params": action.params,
        "requested_at": action.created_on.astimezone(UTC).isoformat(timespec="microseconds"),
    }
    return canonical_json(document)
