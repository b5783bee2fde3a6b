"""The commands the lifecycle tests send, one builder each: a valid command for one
credit run, with any field changed by keyword."""

from __future__ import annotations

from domain.commands import (
    AdmitInputs,
    CloseRun,
    CorrectDecision,
    ModelRef,
    OpenRun,
    RecordDecision,
    RequestAction,
)
from domain.decision import Decision
from domain.identity import decision_uuid

RUN_ID = "credit-2024-06-01"
MODEL = ModelRef("scorecard", "7.1")
DECISION_ID = decision_uuid(RUN_ID, "applicant-17")


def open_command(token: str = "open-1", **changes: object) -> OpenRun:
    fields: dict[str, object] = {"run_id": RUN_ID, "lane": "credit", "actor": "scheduler"}
    fields.update(changes)
    return OpenRun(token=token, **fields)  # type: ignore[arg-type]


def admit_command(token: str, *input_ids: str) -> AdmitInputs:
    return AdmitInputs(token=token, actor="loader", run_id=RUN_ID, input_ids=input_ids)


def close_command(token: str = "close-1") -> CloseRun:
    return CloseRun(token=token, actor="scheduler", run_id=RUN_ID)


def record_command(token: str = "record-1", **changes: object) -> RecordDecision:
    fields: dict[str, object] = {
        "actor": "scorer",
        "run_id": RUN_ID,
        "input_id": "applicant-17",
        "outcome": "approve",
        "model": MODEL,
        "score": 0.82,
        "reasons": ("income_ok",),
    }
    fields.update(changes)
    return RecordDecision(token=token, **fields)  # type: ignore[arg-type]


def correct_command(decision: Decision, token: str = "correct-1", **changes: object) -> CorrectDecision:
    fields: dict[str, object] = {
        "actor": "reviewer",
        "decision_id": decision.id,
        "outcome": "decline",
        "reason": "the income proof was forged",
    }
    fields.update(changes)
    return CorrectDecision(token=token, **fields)  # type: ignore[arg-type]


def request_command(token: str = "request-1", **changes: object) -> RequestAction:
    fields: dict[str, object] = {
        "actor": "dispatcher",
        "run_id": RUN_ID,
        "action_key": "send-offer-17",
        "decision_id": DECISION_ID,
        "kind": "send_letter",
        "target": "applicant-17@example.org",
        "params": {"template": "offer"},
    }
    fields.update(changes)
    return RequestAction(token=token, **fields)  # type: ignore[arg-type]
