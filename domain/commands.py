"""Commands: what a caller asks the ledger to do, validated before anything runs.

Every command carries the idempotency `token` it was delivered under and the `actor`
who issued it. Its `fingerprint` covers what it asks for and nothing else, so a
redelivery of the same command under the same token is recognised as a replay.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar
from uuid import UUID

from domain.canonical import fingerprint
from domain.errors import InvalidCommand
from domain.fields import (
    optional_text,
    require_document,
    require_input_id,
    require_label,
    require_moment,
    require_text,
    require_token,
    validate_run_id,
)
from domain.limits import (
    MAX_BASIS_BATCH,
    MAX_NAME_LENGTH,
    MAX_REASON_CODES,
    MAX_TEXT_LENGTH,
    MAX_TOKEN_LENGTH,
)


@dataclass(frozen=True, kw_only=True)
class Command:
    """Fields every command has."""

    name: ClassVar[str] = "command"
    token: str
    actor: str
    #: What the command asks for, hashed (worked out once: a command is frozen).
    fingerprint: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        require_token(self.token)
        require_text(self.actor, "actor", max_length=MAX_NAME_LENGTH)
        self.validate()
        object.__setattr__(self, "fingerprint", fingerprint(self.name, self.payload()))

    def validate(self) -> None:
        """Check the command's own fields; raise InvalidCommand."""

    def payload(self) -> dict[str, Any]:
        """What the command asks for, as plain JSON values."""
        raise NotImplementedError


@dataclass(frozen=True, kw_only=True)
class OpenRun(Command):
    name: ClassVar[str] = "open_run"
    run_id: str
    lane: str
    allow_empty: bool = False
    metadata: dict[str, Any] = field(default_factory=dict)

    def validate(self) -> None:
        validate_run_id(self.run_id)
        require_label(self.lane, "lane")
        if not isinstance(self.allow_empty, bool):
            raise InvalidCommand("allow_empty must be true or false", field="allow_empty")
        require_document(self.metadata, "metadata")

    def payload(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "lane": self.lane,
            "allow_empty": self.allow_empty,
            "metadata": self.metadata,
        }


@dataclass(frozen=True, kw_only=True)
class AdmitInputs(Command):
    name: ClassVar[str] = "admit_inputs"
    run_id: str
    input_ids: tuple[str, ...]

    def validate(self) -> None:
        validate_run_id(self.run_id)
        if not 1 <= len(self.input_ids) <= MAX_BASIS_BATCH:
            raise InvalidCommand(
                f"a basis batch holds 1 to {MAX_BASIS_BATCH} input IDs, got {len(self.input_ids)}",
                field="input_ids",
            )
        for index, input_id in enumerate(self.input_ids):
            require_input_id(input_id, f"input_ids[{index}]")

    def payload(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "input_ids": list(self.input_ids)}


@dataclass(frozen=True, kw_only=True)
class CloseRun(Command):
    name: ClassVar[str] = "close_run"
    run_id: str

    def validate(self) -> None:
        validate_run_id(self.run_id)

    def payload(self) -> dict[str, Any]:
        return {"run_id": self.run_id}


@dataclass(frozen=True, kw_only=True)
class ReopenRun(Command):
    name: ClassVar[str] = "reopen_run"
    run_id: str
    reason: str

    def validate(self) -> None:
        validate_run_id(self.run_id)
        require_text(self.reason, "reason")

    def payload(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "reason": self.reason}


@dataclass(frozen=True)
class ModelRef:
    name: str
    version: str

    def __post_init__(self) -> None:
        require_text(self.name, "model.name", max_length=MAX_NAME_LENGTH)
        require_text(self.version, "model.version", max_length=MAX_NAME_LENGTH)

    def as_dict(self) -> dict[str, str]:
        return {"name": self.name, "version": self.version}


def _validate_score(score: Any) -> None:
    if score is None:
        return
    if isinstance(score, bool) or not isinstance(score, (int, float)) or not math.isfinite(score):
        raise InvalidCommand("score must be a finite number", field="score")


def _validate_reason_codes(reasons: tuple[str, ...], field_name: str = "reasons") -> None:
    if len(reasons) > MAX_REASON_CODES:
        raise InvalidCommand(f"at most {MAX_REASON_CODES} reason codes", field=field_name)
    for index, code in enumerate(reasons):
        require_label(code, f"{field_name}[{index}]")


@dataclass(frozen=True, kw_only=True)
class RecordDecision(Command):
    name: ClassVar[str] = "record_decision"
    run_id: str
    input_id: str
    outcome: str
    model: ModelRef
    score: float | None = None
    policy_version: str | None = None
    reasons: tuple[str, ...] = ()
    features_digest: str | None = None

    def validate(self) -> None:
        validate_run_id(self.run_id)
        require_input_id(self.input_id)
        require_label(self.outcome, "outcome")
        if not isinstance(self.model, ModelRef):
            raise InvalidCommand("model must have a name and a version", field="model")
        _validate_score(self.score)
        optional_text(self.policy_version, "policy_version", max_length=MAX_NAME_LENGTH)
        _validate_reason_codes(self.reasons)
        optional_text(self.features_digest, "features_digest", max_length=MAX_NAME_LENGTH)

    def payload(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "input_id": self.input_id,
            "outcome": self.outcome,
            "model": self.model.as_dict(),
            "score": None if self.score is None else float(self.score),
            "policy_version": self.policy_version,
            "reasons": list(self.reasons),
            "features_digest": self.features_digest,
        }


@dataclass(frozen=True, kw_only=True)
class CorrectDecision(Command):
    name: ClassVar[str] = "correct_decision"
    decision_id: UUID
    outcome: str
    reason: str
    score: float | None = None
    reasons: tuple[str, ...] | None = None
    effective_at: datetime | None = None

    def validate(self) -> None:
        require_label(self.outcome, "outcome")
        require_text(self.reason, "reason")
        _validate_score(self.score)
        if self.reasons is not None:
            _validate_reason_codes(self.reasons)
        if self.effective_at is not None:
            require_moment(self.effective_at, "effective_at")

    def payload(self) -> dict[str, Any]:
        return {
            "decision_id": str(self.decision_id),
            "outcome": self.outcome,
            "reason": self.reason,
            "score": None if self.score is None else float(self.score),
            "reasons": None if self.reasons is None else list(self.reasons),
            "effective_at": None if self.effective_at is None else self.effective_at.isoformat(),
        }


@dataclass(frozen=True, kw_only=True)
class RequestAction(Command):
    """`action_key` is the client's idempotency key: with the run, it names the action."""

    name: ClassVar[str] = "request_action"
    run_id: str
    action_key: str
    decision_id: UUID
    kind: str
    target: str | None = None
    params: dict[str, Any] = field(default_factory=dict)

    def validate(self) -> None:
        validate_run_id(self.run_id)
        require_text(self.action_key, "action_key", max_length=MAX_TOKEN_LENGTH)
        require_label(self.kind, "kind")
        optional_text(self.target, "target")
        require_document(self.params, "params")

    def payload(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "decision_id": str(self.decision_id),
            "kind": self.kind,
            "target": self.target,
            "params": self.params,
        }


@dataclass(frozen=True, kw_only=True)
class CommitAction(Command):
    name: ClassVar[str] = "commit_action"
    action_id: UUID
    external_ref: str | None = None
    result: dict[str, Any] | None = None

    def validate(self) -> None:
        optional_text(self.external_ref, "external_ref", max_length=MAX_TEXT_LENGTH)
        if self.result is not None:
            require_document(self.result, "result")

    def payload(self) -> dict[str, Any]:
        return {
            "action_id": str(self.action_id),
            "external_ref": self.external_ref,
            "result": self.result,
        }


@dataclass(frozen=True, kw_only=True)
class FailAction(Command):
    name: ClassVar[str] = "fail_action"
    action_id: UUID
    error: str
    retryable: bool = True

    def validate(self) -> None:
        require_text(self.error, "error")
        if not isinstance(self.retryable, bool):
            raise InvalidCommand("retryable must be true or false", field="retryable")

    def payload(self) -> dict[str, Any]:
        return {"action_id": str(self.action_id), "error": self.error, "retryable": self.retryable}


@dataclass(frozen=True, kw_only=True)
class WaiveAction(Command):
    name: ClassVar[str] = "waive_action"
    action_id: UUID
    reason: str

    def validate(self) -> None:
        require_text(self.reason, "reason")

    def payload(self) -> dict[str, Any]:
        return {"action_id": str(self.action_id), "reason": self.reason}


@dataclass(frozen=True, kw_only=True)
class RedeliverAction(Command):
    """Start a fresh delivery schedule for a failed action (operators only)."""

    name: ClassVar[str] = "redeliver_action"
    action_id: UUID

    def payload(self) -> dict[str, Any]:
        return {"action_id": str(self.action_id)}
