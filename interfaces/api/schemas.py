"""Request and response bodies: XCreate for what comes in, XPublic for what goes out."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from domain.fields import INPUT_ID_PATTERN, LABEL_PATTERN, RUN_ID_PATTERN, TEXT_PATTERN
from domain.limits import (
    MAX_BASIS_BATCH,
    MAX_DECISION_BATCH,
    MAX_NAME_LENGTH,
    MAX_REASON_CODES,
    MAX_TEXT_LENGTH,
)
from interfaces.api.problems import Problem

RunId = Annotated[str, Field(pattern=RUN_ID_PATTERN, max_length=128, examples=["fraud-2026-11-27"])]
InputId = Annotated[str, Field(pattern=INPUT_ID_PATTERN, max_length=256, examples=["txn-000123"])]
Label = Annotated[str, Field(pattern=LABEL_PATTERN, max_length=64)]
#: At least one character that no regex dialect, nor Python's str.strip, calls blank.
Name = Annotated[str, Field(min_length=1, max_length=MAX_NAME_LENGTH, pattern=TEXT_PATTERN)]
Text = Annotated[str, Field(min_length=1, max_length=MAX_TEXT_LENGTH, pattern=TEXT_PATTERN)]
#: Strict: pydantic would otherwise take false as 0.0 and "0.5" as 0.5; the document says number.
Score = Annotated[float, Field(allow_inf_nan=False, strict=True)]
Flag = Annotated[bool, Field(strict=True)]
_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}")


def _rfc3339_only(value: Any) -> Any:
    """Pydantic would also read a number as a Unix time; a time here is RFC 3339 text."""
    if isinstance(value, datetime):
        return value
    if not isinstance(value, str) or not _RFC3339.match(value):
        raise ValueError("must be an RFC 3339 date-time with an offset, e.g. 2026-01-31T14:00:00Z")
    return value


Moment = Annotated[datetime, BeforeValidator(_rfc3339_only)]


class Incoming(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Outgoing(BaseModel):
    model_config = ConfigDict(from_attributes=True)


# --- Runs ----------------------------------------------------------------------------


class RunCreate(Incoming):
    run_id: RunId
    lane: Label
    allow_empty: Flag = False
    metadata: dict[str, Any] = Field(default_factory=dict)


class VerdictPublic(Outgoing):
    attempt: int
    verdict: Literal["committed", "rejected"]
    seal_position: int
    reasons: list[dict[str, Any]]
    summary: dict[str, Any]
    proof_digest: str | None


class RunPublic(Outgoing):
    run_id: str
    lane: str
    status: Literal["open", "sealed", "committed", "rejected"]
    attempt: int
    allow_empty: bool
    metadata: dict[str, Any]
    admitted_count: int
    basis_digest: str
    verdicts: list[VerdictPublic]
    opened_at: datetime
    updated_at: datetime
    version: int
    position: int


class BasisCreate(Incoming):
    input_ids: list[InputId] = Field(min_length=1, max_length=MAX_BASIS_BATCH)


class AdmissionPublic(Outgoing):
    run_id: str
    admitted_total: int
    newly_admitted: int
    basis_digest: str
    version: int
    position: int


class ReopenCreate(Incoming):
    reason: Text


class CloseCreate(Incoming):
    """Closing takes no fields; an empty object is accepted."""


class ReasonPublic(BaseModel):
    code: str
    count: int
    sample_ids: list[str]


class ClosePublic(Outgoing):
    run_id: str
    verdict: Literal["committed", "rejected"]
    attempt: int
    seal_position: int
    reasons: list[ReasonPublic]
    summary: dict[str, Any]
    proof_digest: str | None
    position: int = Field(description="Position of the verdict; pass it as min_position to read it back")


class SummaryPublic(Outgoing):
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


class RunListPublic(BaseModel):
    runs: list[SummaryPublic]
    next_after: str | None
    as_of_position: int


class CategoryPublic(Outgoing):
    count: int
    ids: list[str]
    next_after: str | None


class ReconciliationPublic(Outgoing):
    run_id: str
    as_of_position: int
    categories: dict[str, CategoryPublic]


# --- Decisions -------------------------------------------------------------------------


class ModelRefSchema(Incoming):
    name: Name
    version: Name


class DecisionCreate(Incoming):
    input_id: InputId
    outcome: Label
    score: Score | None = None
    model: ModelRefSchema
    policy_version: Name | None = None
    reasons: list[Label] = Field(default_factory=list, max_length=MAX_REASON_CODES)
    features_digest: Name | None = None


class DecisionBatchItem(DecisionCreate):
    idempotency_key: Annotated[str, Field(pattern=r"^[\x21-\x7e]{1,255}$")]


class DecisionBatchCreate(Incoming):
    decisions: list[dict[str, Any]] = Field(
        min_length=1,
        max_length=MAX_DECISION_BATCH,
        description="Each item should be a DecisionBatchItem; items are validated one by one, and an item"
        " that is not one is answered in-line as 'invalid' (the batch itself is still 200)",
    )


class CorrectionEntryPublic(BaseModel):
    version: int
    outcome: str
    score: float | None
    reasons: list[str]
    reason: str | None
    actor: str
    recorded_at: datetime
    effective_at: datetime


class DecisionPublic(Outgoing):
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
    corrections: list[CorrectionEntryPublic]
    recorded_at: datetime
    updated_at: datetime
    version: int
    position: int
    valid_at: datetime | None = None


class BatchItemPublic(BaseModel):
    """Where an item's decision is (read it with GET /decisions/{decision_id}), or why not."""

    index: int
    status: Literal["created", "replayed", "conflict", "invalid"]
    decision_id: str | None = None
    input_id: str | None = None
    version: int | None = None
    position: int | None = None
    problem: Problem | None = None


class BatchPublic(BaseModel):
    run_id: str
    counts: dict[str, int]
    items: list[BatchItemPublic]


class CorrectionCreate(Incoming):
    outcome: Label
    reason: Text
    score: Score | None = None
    reasons: list[Label] | None = Field(default=None, max_length=MAX_REASON_CODES)
    effective_at: Moment | None = Field(
        default=None,
        description="From when the corrected outcome applies (valid time), never in the future; defaults to now",
    )


class HistoryEntryPublic(Outgoing):
    version: int
    position: int
    event_type: str
    actor: str
    attempt: int
    recorded_at: datetime
    occurred_at: datetime
    effective_at: datetime | None
    data: dict[str, Any]


class HistoryPublic(BaseModel):
    decision_id: UUID
    events: list[HistoryEntryPublic]


# --- Actions ----------------------------------------------------------------------------


class ActionCreate(Incoming):
    decision_id: UUID
    kind: Label
    target: Text | None = None
    params: dict[str, Any] = Field(default_factory=dict)


class ActionCommit(Incoming):
    external_ref: Text | None = None
    result: dict[str, Any] | None = None


class ActionFail(Incoming):
    error: Text
    retryable: Flag = True


class ActionWaive(Incoming):
    reason: Text


class DeliveryPublic(Outgoing):
    """One attempt to carry an action out (see "Receiving actions" in the README)."""

    attempt: int
    effector: str
    started_at: datetime
    status_code: int | None
    error: str | None
    latency_ms: float | None
    #: None while in flight; then delivered, failed, or lost (no outcome was recorded).
    outcome: Literal["delivered", "failed", "lost", "abandoned"] | None


class RedeliverCreate(Incoming):
    """Redelivering takes no fields; an empty object is accepted."""


class ActionPublic(Outgoing):
    action_id: str
    run_id: str
    decision_id: str
    input_id: str
    kind: str
    target: str | None
    params: dict[str, Any]
    status: Literal["requested", "committed", "failed", "waived"]
    failures: int
    retryable: bool
    last_error: str | None
    external_ref: str | None
    result: dict[str, Any] | None
    waive_reason: str | None
    #: waiting, in_flight, delivered, dead_lettered, stopped (410), or none (settled by a caller).
    dispatch: Literal["waiting", "in_flight", "delivered", "dead_lettered", "stopped", "none"]
    deliveries: list[DeliveryPublic]
    requested_at: datetime
    updated_at: datetime
    version: int
    position: int


class ActionListPublic(BaseModel):
    actions: list[ActionPublic]
    next_after: str | None
    as_of_position: int


class ActionHistoryPublic(BaseModel):
    action_id: UUID
    events: list[HistoryEntryPublic]


# --- Audit, keys, health ----------------------------------------------------------------


class AuditRecordPublic(Outgoing):
    position: int
    recorded_at: str
    run_id: str
    aggregate_id: str
    aggregate_version: int
    event_type: str
    actor: str
    attempt: int
    run_sequence: int = Field(description="This record's number within its run (1, 2, ...)")
    summary: str
    leaf_hash: str
    chain_hash: str


class AuditPagePublic(Outgoing):
    records: list[AuditRecordPublic]
    next_after: int | None
    as_of_position: int


class KeysPublic(BaseModel):
    algorithm: str
    public_key: str
    key_id: str


class HealthPublic(BaseModel):
    status: str
    detail: dict[str, Any] = Field(default_factory=dict)
