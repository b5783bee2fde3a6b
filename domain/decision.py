"""The Decision aggregate: one per (run, input), corrected only by new events.

Each decision keeps its outcome history in bitemporal form: every entry says when it
was recorded (knowledge time) and from when it applies (valid time).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from eventsourcing.domain import event

from domain.commands import CorrectDecision, RecordDecision
from domain.errors import DecisionAlreadyRecorded, InvalidCommand
from domain.identity import decision_uuid
from domain.ledger_aggregate import LedgerAggregate


class Decision(LedgerAggregate):
    # --- Events (frozen; each records what its command decided) ---

    class Recorded(LedgerAggregate.Created, LedgerAggregate.Event):
        input_id: str
        outcome: str
        score: float | None
        model: dict[str, str]
        policy_version: str | None
        reasons: list[str]
        features_digest: str | None

    class Corrected(LedgerAggregate.Event):
        outcome: str
        reason: str
        score: float | None
        reasons: list[str]
        effective_at: datetime

    @staticmethod
    def create_id(run_id: str, input_id: str) -> UUID:
        return decision_uuid(run_id, input_id)

    @classmethod
    def record(cls, command: RecordDecision, attempt: int, now: datetime) -> Decision:
        return cls(
            **cls.attribution(command, command.run_id, attempt),
            input_id=command.input_id,
            outcome=command.outcome,
            score=command.payload()["score"],
            model=command.model.as_dict(),
            policy_version=command.policy_version,
            reasons=list(command.reasons),
            features_digest=command.features_digest,
            timestamp=now,
        )

    @event(Recorded)
    def __init__(
        self,
        run_id: str,
        attempt: int,
        actor: str,
        token: str,
        fingerprint: str,
        input_id: str,
        outcome: str,
        score: float | None,
        model: dict[str, str],
        policy_version: str | None,
        reasons: list[str],
        features_digest: str | None,
        timestamp: datetime,
    ) -> None:
        self.run_id = run_id
        self.input_id = input_id
        self.outcome = outcome
        self.score = score
        self.model = model
        self.policy_version = policy_version
        self.reasons = reasons
        self.features_digest = features_digest
        self.recorded_attempt = attempt
        self.creation_fingerprint = fingerprint
        self.receipts = {}
        self.outcome_history: list[dict[str, Any]] = [
            {
                "version": self.INITIAL_VERSION,
                "kind": "recorded",
                "outcome": outcome,
                "score": score,
                "reasons": reasons,
                "reason": None,
                "actor": actor,
                "recorded_at": timestamp,
                "effective_at": timestamp,
            }
        ]

    def replay_of_record(self, command: RecordDecision) -> int:
        """Recording the same decision again is a replay; a different one is a conflict."""
        replayed = self.replayed_version(command)
        if replayed is not None:
            return replayed
        if command.fingerprint == self.creation_fingerprint:
            return self.INITIAL_VERSION
        raise DecisionAlreadyRecorded(
            f"a different decision is already recorded for input {self.input_id!r}; send a correction instead"
        )

    def correct(self, command: CorrectDecision, attempt: int, now: datetime) -> int | None:
        replayed = self.replayed_version(command)
        if replayed is not None:
            return replayed
        if command.effective_at is not None and command.effective_at > now:
            raise InvalidCommand(
                "effective_at is when the corrected outcome should have applied: it cannot be in the future",
                field="effective_at",
            )
        self._correct(
            **self.attribution(command, self.run_id, attempt),
            outcome=command.outcome,
            reason=command.reason,
            score=self.score if command.score is None else float(command.score),
            reasons=self.reasons if command.reasons is None else list(command.reasons),
            effective_at=command.effective_at or now,
            timestamp=now,
        )
        return None

    @event(Corrected)
    def _correct(
        self,
        run_id: str,
        attempt: int,
        actor: str,
        token: str,
        fingerprint: str,
        outcome: str,
        reason: str,
        score: float | None,
        reasons: list[str],
        effective_at: datetime,
        timestamp: datetime,
    ) -> None:
        self.outcome_history.append(
            {
                "version": self.version + 1,
                "kind": "corrected",
                "outcome": outcome,
                "score": score,
                "reasons": reasons,
                "reason": reason,
                "actor": actor,
                "recorded_at": timestamp,
                "effective_at": effective_at,
            }
        )
        current = self.entry_valid_at(None)
        self.outcome = current["outcome"]
        self.score = current["score"]
        self.reasons = current["reasons"]

    @property
    def corrections(self) -> list[dict[str, Any]]:
        return [entry for entry in self.outcome_history if entry["kind"] == "corrected"]

    def entry_valid_at(self, valid_at: datetime | None) -> dict[str, Any]:
        """The history entry that applies at `valid_at` (None: now).

        Each entry asserts its outcome from its effective time on. Newer knowledge wins:
        among the entries in effect at that time, the one recorded last applies. Since no
        entry takes effect in the future, the entry recorded last is the one in force now."""
        candidates = [
            entry for entry in self.outcome_history if valid_at is None or entry["effective_at"] <= valid_at
        ]
        if not candidates:
            return {}
        return max(candidates, key=lambda entry: entry["version"])
