"""What the application returns: plain data, never aggregates."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, TypeVar

ViewT = TypeVar("ViewT")


@dataclass(frozen=True)
class CommandResult(Generic[ViewT]):
    """The answer to a command: what it produced, where it was written, and whether
    this delivery was a replay of an earlier one."""

    view: ViewT
    version: int
    position: int
    replayed: bool


@dataclass(frozen=True)
class RunView:
    run_id: str
    lane: str
    status: str
    attempt: int
    allow_empty: bool
    metadata: dict[str, Any]
    admitted_count: int
    basis_digest: str
    verdicts: list[dict[str, Any]]
    opened_at: datetime
    updated_at: datetime
    version: int
    position: int


@dataclass(frozen=True)
class AdmissionView:
    run_id: str
    admitted_total: int
    newly_admitted: int
    basis_digest: str
    version: int
    position: int


@dataclass(frozen=True)
class DecisionView:
    decision_id: str
    run_id: str
    input_id: str
    outcome: str
    score: float | None
    model: dict[str, str]
    policy_version: str | None
    reasons: list[str]
    features_digest: str | None
    recorded_attempt: int
    corrections: list[dict[str, Any]]
    recorded_at: datetime
    updated_at: datetime
    version: int
    position: int
    valid_at: datetime | None = None


@dataclass(frozen=True)
class ActionView:
    action_id: str
    run_id: str
    decision_id: str
    input_id: str
    kind: str
    target: str | None
    params: dict[str, Any]
    status: str
    failures: int
    retryable: bool
    last_error: str | None
    external_ref: str | None
    result: dict[str, Any] | None
    waive_reason: str | None
    requested_at: datetime
    updated_at: datetime
    version: int
    position: int


@dataclass(frozen=True)
class HistoryEntry:
    """One stored event of an aggregate, with both of its times."""

    version: int
    position: int
    event_type: str
    actor: str
    attempt: int
    recorded_at: datetime
    occurred_at: datetime
    effective_at: datetime | None
    data: dict[str, Any]


@dataclass(frozen=True)
class BatchItemResult:
    """One item's answer: where its decision is (created or replayed), or why not."""

    status: str  # created | replayed | conflict | invalid
    decision_id: str | None = None
    input_id: str | None = None
    version: int | None = None
    position: int | None = None
    error: Exception | None = None


@dataclass(frozen=True)
class BatchResult:
    run_id: str
    items: list[BatchItemResult] = field(default_factory=list)

    def count(self, status: str) -> int:
        return sum(1 for item in self.items if item.status == status)
