"""Deterministic aggregate IDs from the clients' natural keys."""

from __future__ import annotations

import re
from uuid import UUID, uuid5

from domain.errors import InvalidCommand

#: The ledger's own namespace for uuid5 IDs. Never change it: every stored ID depends on it.
LEDGER_NAMESPACE = UUID("7f1c1d2e-5b3a-5e0f-9a57-3c1d0b6a9e41")

RUN_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$"
_RUN_ID = re.compile(RUN_ID_PATTERN)


def validate_run_id(run_id: str, *, field: str = "run_id") -> str:
    if not isinstance(run_id, str) or not _RUN_ID.fullmatch(run_id):
        raise InvalidCommand(f"{field} must match {RUN_ID_PATTERN}, got {run_id!r}", field=field)
    return run_id


def run_uuid(run_id: str) -> UUID:
    return uuid5(LEDGER_NAMESPACE, f"run:{run_id}")


def decision_uuid(run_id: str, input_id: str) -> UUID:
    # The run ID can't contain a NUL byte, so the pair maps to one name only.
    return uuid5(LEDGER_NAMESPACE, f"decision:{run_id}\x00{input_id}")


def action_uuid(run_id: str, idempotency_key: str) -> UUID:
    return uuid5(LEDGER_NAMESPACE, f"action:{run_id}\x00{idempotency_key}")
