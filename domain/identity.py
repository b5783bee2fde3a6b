"""Deterministic aggregate IDs from the clients' natural keys."""

from __future__ import annotations

from uuid import UUID, uuid5

#: The ledger's own namespace for uuid5 IDs. Never change it: every stored ID depends on it.
LEDGER_NAMESPACE = UUID("7f1c1d2e-5b3a-5e0f-9a57-3c1d0b6a9e41")


def run_uuid(run_id: str) -> UUID:
    return uuid5(LEDGER_NAMESPACE, f"run:{run_id}")


def decision_uuid(run_id: str, input_id: str) -> UUID:
    # The run ID can't contain a NUL byte, so the pair maps to one name only.
    return uuid5(LEDGER_NAMESPACE, f"decision:{run_id}\x00{input_id}")


def action_uuid(run_id: str, idempotency_key: str) -> UUID:
    return uuid5(LEDGER_NAMESPACE, f"action:{run_id}\x00{idempotency_key}")
