"""Turning aggregates into the results the application answers with. Every result says
which version and position it reflects, and when what it shows became known."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from application.ledger import DecisionLedger
from application.results import ActionView, AdmissionView, DecisionView, RunView
from domain import errors
from domain.action import Action
from domain.decision import Decision
from domain.run import Run


class Answers:
    def __init__(self, ledger: DecisionLedger) -> None:
        self.ledger = ledger

    def known_span(self, aggregate_id: UUID, first: int, last: int) -> tuple[datetime, datetime]:
        """When an aggregate's first and last events became known."""
        first_known = self.ledger.known_time(aggregate_id, first)
        return first_known, first_known if last == first else self.ledger.known_time(aggregate_id, last)

    def run(self, run: Run, position: int) -> RunView:
        opened_at, updated_at = self.known_span(run.id, Run.INITIAL_VERSION, run.version)
        return RunView(
            run_id=run.run_id,
            lane=run.lane,
            status=run.status,
            attempt=run.attempt,
            allow_empty=run.allow_empty,
            metadata=run.metadata,
            admitted_count=run.admitted_count,
            basis_digest=run.basis_digest,
            verdicts=run.verdicts,
            opened_at=opened_at,
            updated_at=updated_at,
            version=run.version,
            position=position,
        )

    def decision(
        self,
        decision: Decision,
        position: int,
        valid_at: datetime | None = None,
        known_span: tuple[datetime, datetime] | None = None,
    ) -> DecisionView:
        recorded_at, updated_at = known_span or self.known_span(
            decision.id, Decision.INITIAL_VERSION, decision.version
        )
        entry = decision.entry_valid_at(valid_at)
        if not entry:
            moment = valid_at.isoformat() if valid_at else ""
            raise errors.NothingKnownYet(f"no outcome of decision {decision.id} was in effect at {moment}")
        return DecisionView(
            decision_id=str(decision.id),
            run_id=decision.run_id,
            input_id=decision.input_id,
            outcome=entry["outcome"],
            score=entry["score"],
            model=decision.model,
            policy_version=decision.policy_version,
            reasons=entry["reasons"],
            features_digest=decision.features_digest,
            recorded_attempt=decision.recorded_attempt,
            corrections=decision.corrections,
            recorded_at=recorded_at,
            updated_at=updated_at,
            version=decision.version,
            position=position,
            valid_at=valid_at,
        )

    @staticmethod
    def action(action: Action, position: int) -> ActionView:
        return ActionView(
            action_id=str(action.id),
            run_id=action.run_id,
            decision_id=action.decision_id,
            input_id=action.input_id,
            kind=action.kind,
            target=action.target,
            params=action.params,
            status=action.status,
            failures=action.failures,
            retryable=action.retryable,
            last_error=action.last_error,
            external_ref=action.external_ref,
            result=action.result,
            waive_reason=action.waive_reason,
            dispatch=action.dispatch_state.value,
            deliveries=[dict(delivery) for delivery in action.deliveries],
            requested_at=action.created_on,
            updated_at=action.modified_on,
            version=action.version,
            position=position,
        )

    def admission(self, run_id: UUID, version: int, position: int | None = None) -> AdmissionView:
        """What one BasisAdmitted event admitted. A token that produced another kind of
        event was used for another command."""
        admitted = next(iter(self.ledger.events.get(run_id, gt=version - 1, lte=version)))
        if not isinstance(admitted, Run.BasisAdmitted):
            raise errors.IdempotencyKeyReused("this idempotency key was used for another command")
        return AdmissionView(
            run_id=admitted.run_id,
            admitted_total=admitted.admitted_total,
            newly_admitted=len(admitted.input_ids),
            basis_digest=admitted.basis_digest,
            version=version,
            position=position or self.ledger.position_of(run_id, version),
        )
