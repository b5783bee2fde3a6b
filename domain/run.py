"""The Run aggregate: a lane's unit of work, its admitted basis, and its verdicts.

The set of admitted input IDs is not held here: a run may admit a million inputs.
The membership index lives in the event store's database and is written in the same
transaction as each BasisAdmitted event (see infrastructure/ledger_tables.py). The
aggregate keeps only the distinct count and the order-independent digest, and each
BasisAdmitted event carries the input IDs it newly admitted, so the full set can
always be rebuilt from history.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any
from uuid import UUID

from eventsourcing.domain import event

from domain.basis import EMPTY_BASIS_DIGEST, extend_basis_digest
from domain.commands import AdmitInputs, CloseRun, OpenRun, ReopenRun
from domain.errors import RunAlreadyExists, RunNotOpen, RunNotRejected, RunNotSealed
from domain.identity import run_uuid
from domain.ledger_aggregate import LedgerAggregate


class RunStatus(StrEnum):
    OPEN = "open"
    SEALED = "sealed"
    COMMITTED = "committed"
    REJECTED = "rejected"


@dataclass(frozen=True)
class RejectionReason:
    """Why a run is red: a machine-readable code, how many, and some of the IDs."""

    code: str
    count: int
    sample_ids: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"code": self.code, "count": self.count, "sample_ids": list(self.sample_ids)}


@dataclass(frozen=True)
class Reconciliation:
    """What the read models say about a run as of its seal position."""

    seal_position: int
    admitted_count: int
    basis_digest: str
    decision_count: int
    missing: RejectionReason
    unexpected: RejectionReason
    pending: RejectionReason
    failed: RejectionReason
    events_expected: int
    audit_records: int
    summary: dict[str, Any] = field(default_factory=dict)


class Run(LedgerAggregate):
    # --- Events (frozen; each records what its command decided) ---

    class Opened(LedgerAggregate.Created, LedgerAggregate.Event):
        lane: str
        allow_empty: bool
        metadata: dict[str, Any]

    class BasisAdmitted(LedgerAggregate.Event):
        input_ids: list[str]
        batch_size: int
        admitted_total: int
        basis_digest: str

    class Sealed(LedgerAggregate.Event):
        pass

    class Committed(LedgerAggregate.Event):
        seal_position: int
        summary: dict[str, Any]
        basis_digest: str
        proof: dict[str, Any] | None
        proof_digest: str | None

    class Rejected(LedgerAggregate.Event):
        seal_position: int
        summary: dict[str, Any]
        reasons: list[dict[str, Any]]

    class Reopened(LedgerAggregate.Event):
        reason: str

    @staticmethod
    def create_id(run_id: str) -> UUID:
        return run_uuid(run_id)

    # --- Opening ------------------------------------------------------------------

    @classmethod
    def open(cls, command: OpenRun) -> Run:
        return cls(
            **cls.attribution(command, command.run_id, attempt=1),
            lane=command.lane,
            allow_empty=command.allow_empty,
            metadata=command.metadata,
        )

    @event(Opened)
    def __init__(
        self,
        run_id: str,
        attempt: int,
        actor: str,
        token: str,
        fingerprint: str,
        lane: str,
        allow_empty: bool,
        metadata: dict[str, Any],
    ) -> None:
        self.run_id = run_id
        self.lane = lane
        self.allow_empty = allow_empty
        self.metadata = metadata
        self.status = RunStatus.OPEN.value
        self.attempt = attempt
        self.admitted_count = 0
        self.basis_digest = EMPTY_BASIS_DIGEST
        self.creation_fingerprint = fingerprint
        self.seal_position: int | None = None
        self.sealed_version: int | None = None
        self.verdicts: list[dict[str, Any]] = []
        self.receipts = {}

    def replay_of_open(self, command: OpenRun) -> int:
        """Opening an existing run again is a replay if it asks for the same run."""
        replayed = self.replayed_version(command)
        if replayed is not None:
            return replayed
        if command.fingerprint == self.creation_fingerprint:
            return self.INITIAL_VERSION
        raise RunAlreadyExists(f"run {self.run_id!r} already exists with other settings")

    def require_open(self) -> None:
        if self.status != RunStatus.OPEN:
            raise RunNotOpen(f"run {self.run_id!r} is {self.status}, not open")

    # --- Basis --------------------------------------------------------------------

    def admit(self, command: AdmitInputs, already_admitted: Collection[str]) -> int | None:
        """Admit a batch of inputs. `already_admitted` holds the batch's IDs that the
        membership index already knows. Returns the replayed version, or None."""
        replayed = self.replayed_version(command)
        if replayed is not None:
            return replayed
        self.require_open()
        new_input_ids = [
            input_id for input_id in dict.fromkeys(command.input_ids) if input_id not in already_admitted
        ]
        self._admit(
            **self.attribution(command, self.run_id, self.attempt),
            input_ids=new_input_ids,
            batch_size=len(command.input_ids),
            admitted_total=self.admitted_count + len(new_input_ids),
            basis_digest=extend_basis_digest(self.basis_digest, new_input_ids),
        )
        return None

    @event(BasisAdmitted)
    def _admit(
        self,
        run_id: str,
        attempt: int,
        actor: str,
        token: str,
        fingerprint: str,
        input_ids: list[str],
        batch_size: int,
        admitted_total: int,
        basis_digest: str,
    ) -> None:
        self.admitted_count = admitted_total
        self.basis_digest = basis_digest

    # --- Closing ------------------------------------------------------------------

    def seal(self, command: CloseRun) -> int | None:
        replayed = self.replayed_version(command)
        if replayed is not None:
            return replayed
        self.require_open()
        self._seal(**self.attribution(command, self.run_id, self.attempt))
        return None

    @event(Sealed)
    def _seal(self, run_id: str, attempt: int, actor: str, token: str, fingerprint: str) -> None:
        self.status = RunStatus.SEALED.value
        self.sealed_version = self.version + 1

    def rejection_reasons(self, evidence: Reconciliation) -> list[RejectionReason]:
        """Fail closed: every rule that is not proven to hold is a reason to reject."""
        reasons = [
            check
            for check in (evidence.missing, evidence.unexpected, evidence.pending, evidence.failed)
            if check.count
        ]
        if evidence.admitted_count == 0 and not self.allow_empty:
            reasons.append(RejectionReason("empty_basis", 0))
        if evidence.decision_count == 0 and evidence.admitted_count > 0:
            reasons.append(RejectionReason("no_decisions", evidence.admitted_count))
        if (evidence.admitted_count, evidence.basis_digest) != (
            self.admitted_count,
            self.basis_digest,
        ):
            reasons.append(
                RejectionReason("basis_mismatch", abs(self.admitted_count - evidence.admitted_count))
            )
        if evidence.audit_records != evidence.events_expected:
            reasons.append(
                RejectionReason("audit_incomplete", abs(evidence.events_expected - evidence.audit_records))
            )
        return reasons

    def commit(
        self,
        command: CloseRun,
        evidence: Reconciliation,
        proof: dict[str, Any] | None,
        proof_digest: str | None,
    ) -> None:
        self.require_sealed()
        reasons = self.rejection_reasons(evidence)
        if reasons:
            raise RunNotSealed(f"run {self.run_id!r} does not reconcile and cannot commit")
        self._commit(
            **self.verdict_attribution(command),
            seal_position=evidence.seal_position,
            summary=evidence.summary,
            basis_digest=self.basis_digest,
            proof=proof,
            proof_digest=proof_digest,
        )

    @event(Committed)
    def _commit(
        self,
        run_id: str,
        attempt: int,
        actor: str,
        token: str,
        fingerprint: str,
        seal_position: int,
        summary: dict[str, Any],
        basis_digest: str,
        proof: dict[str, Any] | None,
        proof_digest: str | None,
    ) -> None:
        self.status = RunStatus.COMMITTED.value
        self.seal_position = seal_position
        self.verdicts.append(
            {
                "attempt": attempt,
                "verdict": RunStatus.COMMITTED.value,
                "seal_position": seal_position,
                "reasons": [],
                "summary": summary,
                "proof_digest": proof_digest,
                "proof": proof,
            }
        )

    def reject(self, command: CloseRun, evidence: Reconciliation) -> None:
        self.require_sealed()
        reasons = self.rejection_reasons(evidence)
        if not reasons:
            raise RunNotSealed(f"run {self.run_id!r} reconciles; it must not be rejected")
        self._reject(
            **self.verdict_attribution(command),
            seal_position=evidence.seal_position,
            summary=evidence.summary,
            reasons=[reason.as_dict() for reason in reasons],
        )

    @event(Rejected)
    def _reject(
        self,
        run_id: str,
        attempt: int,
        actor: str,
        token: str,
        fingerprint: str,
        seal_position: int,
        summary: dict[str, Any],
        reasons: list[dict[str, Any]],
    ) -> None:
        self.status = RunStatus.REJECTED.value
        self.seal_position = seal_position
        self.verdicts.append(
            {
                "attempt": attempt,
                "verdict": RunStatus.REJECTED.value,
                "seal_position": seal_position,
                "reasons": reasons,
                "summary": summary,
                "proof_digest": None,
                "proof": None,
            }
        )

    def verdict_attribution(self, command: CloseRun) -> dict[str, Any]:
        """The verdict is the second half of a close: its token is derived from the close's."""
        attribution = self.attribution(command, self.run_id, self.attempt)
        attribution["token"] = verdict_token(command.token)
        return attribution

    def require_sealed(self) -> None:
        if self.status != RunStatus.SEALED:
            raise RunNotSealed(f"run {self.run_id!r} is {self.status}, not sealed")

    # --- Remediation --------------------------------------------------------------

    def reopen(self, command: ReopenRun) -> int | None:
        replayed = self.replayed_version(command)
        if replayed is not None:
            return replayed
        if self.status != RunStatus.REJECTED:
            raise RunNotRejected(f"run {self.run_id!r} is {self.status}; only a rejected run reopens")
        self._reopen(**self.attribution(command, self.run_id, self.attempt + 1), reason=command.reason)
        return None

    @event(Reopened)
    def _reopen(
        self, run_id: str, attempt: int, actor: str, token: str, fingerprint: str, reason: str
    ) -> None:
        self.status = RunStatus.OPEN.value
        self.attempt = attempt
        self.seal_position = None
        self.sealed_version = None

    @property
    def latest_verdict(self) -> dict[str, Any] | None:
        return self.verdicts[-1] if self.verdicts else None


def verdict_token(close_token: str) -> str:
    """The verdict's token: the close's, with a suffix no client token can carry
    (tokens never contain control characters)."""
    return f"{close_token}\x1fverdict"
