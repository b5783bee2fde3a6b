"""What the application answers: plain data, never aggregates. Commands answer a
CommandResult around one of these; queries answer them directly."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, Literal, TypeVar

ViewT = TypeVar("ViewT")
BatchItemStatus = Literal["created", "replayed", "conflict", "invalid"]


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
    #: Where the action stands with the dispatcher (domain.delivery.DispatchState).
    dispatch: str
    #: Every delivery attempt: attempt, effector, started_at, status_code, error, latency_ms, outcome.
    deliveries: list[dict[str, Any]]
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

    status: BatchItemStatus
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


@dataclass(frozen=True)
class CloseView:
    run_id: str
    verdict: str
    attempt: int
    seal_position: int
    reasons: list[dict[str, Any]]
    summary: dict[str, Any]
    proof_digest: str | None
    position: int


@dataclass(frozen=True)
class RunSummaryView:
    run_id: str
    attempt: int
    status: str
    lane: str
    allow_empty: bool
    admitted_count: int
    basis_digest: str
    decision_count: int
    outcome_counts: dict[str, int]
    corrected_count: int
    missing_count: int
    unexpected_count: int
    actions: dict[str, int]
    audit_records: int
    event_count: int
    first_position: int
    last_position: int
    opened_at: str
    updated_at: str
    as_of_position: int

    def counts(self) -> dict[str, Any]:
        """The counts a verdict records."""
        return {
            "admitted": self.admitted_count,
            "basis_digest": self.basis_digest,
            "decisions": self.decision_count,
            "outcomes": self.outcome_counts,
            "corrected": self.corrected_count,
            "missing": self.missing_count,
            "unexpected": self.unexpected_count,
            "actions": self.actions,
            "audit_records": self.audit_records,
            "events": self.event_count,
        }


@dataclass(frozen=True)
class CategoryPage:
    count: int
    ids: list[str]
    next_after: str | None


@dataclass(frozen=True)
class ReconciliationView:
    run_id: str
    as_of_position: int
    categories: dict[str, CategoryPage] = field(default_factory=dict)


@dataclass(frozen=True)
class RunListPage:
    runs: list[RunSummaryView]
    next_after: str | None
    as_of_position: int


@dataclass(frozen=True)
class AuditRecordView:
    position: int
    recorded_at: str
    run_id: str
    aggregate_id: str
    aggregate_version: int
    event_type: str
    actor: str
    attempt: int
    run_sequence: int
    summary: str
    leaf_hash: str
    chain_hash: str


@dataclass(frozen=True)
class AuditPage:
    records: list[AuditRecordView]
    next_after: int | None
    as_of_position: int
