"""The decision ledger: one eventsourcing Application for runs, decisions and actions.

Every command follows the same path: look its token up (a known token is a replay),
load the aggregates, let them decide, and save. A save that loses a race raises the
library's IntegrityError; the command is then run again from the top, so it finds the
winner's receipt and answers with the replay, or meets the new state and raises the
typed error that state calls for.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, ClassVar, TypeVar, cast
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, Application, ProcessingEvent
from eventsourcing.persistence import IntegrityError, Recording
from eventsourcing.utils import EnvType

from application.proofs import proof_digest
from application.views import (
    ActionView,
    AdmissionView,
    BatchItemResult,
    BatchResult,
    CommandResult,
    DecisionView,
    HistoryEntry,
    RunView,
)
from domain import errors
from domain.action import Action
from domain.commands import (
    AdmitInputs,
    CloseRun,
    Command,
    CommitAction,
    CorrectDecision,
    FailAction,
    OpenRun,
    RecordDecision,
    ReopenRun,
    RequestAction,
    WaiveAction,
)
from domain.decision import Decision
from domain.identity import run_uuid, validate_run_id
from domain.ledger_aggregate import LedgerAggregate
from domain.run import Reconciliation, Run, RunStatus, verdict_token
from infrastructure.ledger_index import LedgerIndex, LedgerIndexRows, TokenReceipt

AggregateT = TypeVar("AggregateT", bound=LedgerAggregate)
ResultT = TypeVar("ResultT")

#: How often a command that lost a race is run again before giving up.
MAX_COMMAND_ATTEMPTS = 12


class DecisionLedger(Application[UUID]):
    name = "DecisionLedger"
    snapshotting_intervals: ClassVar = {Run: 20}
    env: ClassVar = {"AGGREGATE_CACHE_MAXSIZE": "2000", "DEEPCOPY_FROM_AGGREGATE_CACHE": "y"}

    def __init__(self, env: EnvType | None = None) -> None:
        super().__init__(env)
        self.saved_listeners: list[Callable[[list[Recording[UUID]]], None]] = []

    @property
    def index(self) -> LedgerIndex:
        return cast(LedgerIndex, self.recorder)

    # --- Saving: the index rows ride in the events' transaction ----------------------

    def _record(self, processing_event: ProcessingEvent[UUID]) -> list[Recording[UUID]]:
        processing_event.saved_kwargs["ledger_index"] = index_rows_for(
            processing_event.events,
            stored_responses=processing_event.saved_kwargs.pop("stored_responses", []),
        )
        return super()._record(processing_event)

    def _notify(self, recordings: list[Recording[UUID]]) -> None:
        for listener in self.saved_listeners:
            listener(recordings)

    # --- Runs -------------------------------------------------------------------------

    def open_run(self, command: OpenRun) -> CommandResult[RunView]:
        def attempt() -> CommandResult[RunView]:
            if receipt := self._receipt(command):
                return self._run_result(receipt.originator_id, receipt.originator_version, True)
            existing = self._find(run_uuid(command.run_id), Run)
            if existing is not None:
                return self._run_result(existing.id, existing.replay_of_open(command), True)
            run = Run.open(command)
            return self._saved(self._run_result, run)

        return self._with_retries(attempt)

    def admit_inputs(self, command: AdmitInputs) -> CommandResult[AdmissionView]:
        def attempt() -> CommandResult[AdmissionView]:
            if receipt := self._receipt(command):
                return self._admission_result(receipt.originator_id, receipt.originator_version, True)
            run = self.load_run(command.run_id)
            already_admitted = self.index.admitted_among(command.run_id, command.input_ids)
            replayed = run.admit(command, already_admitted)
            if replayed is not None:
                return self._admission_result(run.id, replayed, True)
            return self._saved(self._admission_result, run)

        return self._with_retries(attempt)

    def reopen_run(self, command: ReopenRun) -> CommandResult[RunView]:
        def attempt() -> CommandResult[RunView]:
            if receipt := self._receipt(command):
                return self._run_result(receipt.originator_id, receipt.originator_version, True)
            run = self.load_run(command.run_id)
            replayed = run.reopen(command)
            if replayed is not None:
                return self._run_result(run.id, replayed, True)
            return self._saved(self._run_result, run)

        return self._with_retries(attempt)

    def seal_run(self, command: CloseRun) -> CommandResult[RunView]:
        """The first half of a close: after this, nothing more lands in this attempt."""

        def attempt() -> CommandResult[RunView]:
            if receipt := self._receipt(command):
                return self._run_result(receipt.originator_id, receipt.originator_version, True)
            run = self.load_run(command.run_id)
            replayed = run.seal(command)
            if replayed is not None:
                return self._run_result(run.id, replayed, True)
            return self._saved(self._run_result, run)

        return self._with_retries(attempt)

    def seal_position(self, run: Run) -> int:
        """Where the run's current attempt was sealed."""
        if run.sealed_version is None:
            raise errors.RunNotSealed(f"run {run.run_id!r} is not sealed")
        return self._position(run.id, run.sealed_version).position

    def record_verdict(
        self,
        command: CloseRun,
        evidence: Reconciliation,
        make_proof: Callable[[Run], dict[str, Any]],
    ) -> CommandResult[RunView]:
        """The second half of a close: green only if the evidence proves the run
        reconciles (the Run decides), red with reasons otherwise."""

        def attempt() -> CommandResult[RunView]:
            receipt = self.index.token_receipt(verdict_token(command.token))
            if receipt is not None:
                return self._run_result(receipt.originator_id, receipt.originator_version, True)
            run = self.load_run(command.run_id)
            if run.status != RunStatus.SEALED:
                verdict = run.latest_verdict
                if verdict is not None and verdict["seal_position"] == evidence.seal_position:
                    # Another closer recorded this attempt's verdict first.
                    return self._run_result(run.id, run.version, True)
                run.require_sealed()
            if run.rejection_reasons(evidence):
                run.reject(command, evidence)
            else:
                proof = make_proof(run)
                run.commit(command, evidence, proof, proof_digest(proof))
            return self._saved(self._run_result, run)

        return self._with_retries(attempt)

    # --- Decisions ----------------------------------------------------------------------

    def record_decision(self, command: RecordDecision) -> CommandResult[DecisionView]:
        return self._with_retries(lambda: self._record_decision_once(command))

    def _record_decision_once(self, command: RecordDecision) -> CommandResult[DecisionView]:
        if receipt := self._receipt(command):
            return self._decision_result(receipt.originator_id, receipt.originator_version, True)
        decision_id = Decision.create_id(command.run_id, command.input_id)
        existing = self._find(decision_id, Decision)
        if existing is not None:
            return self._decision_result(decision_id, existing.replay_of_record(command), True)
        run = self.load_run(command.run_id)
        run.require_open()
        decision = Decision.record(command, run.attempt)
        return self._saved(self._decision_result, decision)

    def record_decision_batch(
        self,
        run_id: str,
        items: Sequence[RecordDecision | errors.LedgerError],
        batch_token: str,
        batch_fingerprint: str,
    ) -> CommandResult[BatchResult]:
        """Record up to a batch of decisions in one transaction. Each item gets its own
        answer; one bad item never fails its neighbours. The batch's own token remembers
        the answers, so replaying the batch returns them unchanged."""

        def attempt() -> CommandResult[BatchResult]:
            receipt = self.index.token_receipt(batch_token)
            if receipt is not None:
                if receipt.fingerprint != batch_fingerprint:
                    raise errors.IdempotencyKeyReused(
                        "this idempotency key was already used for a different batch"
                    )
                return self._batch_from_record(run_id, receipt.stored_response or "[]")
            run = self.load_run(run_id)
            run.require_open()
            outcomes: list[BatchItemResult] = []
            fresh: dict[int, Decision] = {}
            seen_inputs: set[str] = set()
            for index, item in enumerate(items):
                if isinstance(item, errors.LedgerError):
                    outcomes.append(BatchItemResult("invalid", error=item))
                    continue
                try:
                    if item.input_id in seen_inputs:
                        raise errors.DecisionAlreadyRecorded(
                            f"input {item.input_id!r} appears twice in this batch"
                        )
                    seen_inputs.add(item.input_id)
                    if item.run_id != run_id:
                        raise errors.InvalidCommand("an item names another run", field="run_id")
                    outcome = self._batch_item_without_saving(item)
                except errors.InvalidCommand as error:
                    outcomes.append(BatchItemResult("invalid", error=error))
                    continue
                except errors.LedgerError as error:
                    outcomes.append(BatchItemResult("conflict", error=error))
                    continue
                if isinstance(outcome, Decision):
                    fresh[index] = outcome
                    outcomes.append(BatchItemResult("created"))
                else:
                    outcomes.append(BatchItemResult("replayed", decision=outcome))
            record = json.dumps([self._outcome_record(index, o, fresh) for index, o in enumerate(outcomes)])
            try:
                self.save(
                    *fresh.values(),
                    stored_responses=[(batch_token, batch_fingerprint, record)],
                )
            except IntegrityError:
                # A neighbour raced us: answer item by item, then remember the answers.
                return self._batch_one_by_one(run_id, items, batch_token, batch_fingerprint)
            return self._batch_from_record(run_id, record, replayed=False)

        return self._with_retries(attempt)

    def _batch_item_without_saving(self, command: RecordDecision) -> Decision | DecisionView:
        if receipt := self._receipt(command):
            return self._decision_view(self._load_at(receipt.originator_id, Decision, receipt.originator_version))
        decision_id = Decision.create_id(command.run_id, command.input_id)
        existing = self._find(decision_id, Decision)
        if existing is not None:
            version = existing.replay_of_record(command)
            return self._decision_view(self._load_at(decision_id, Decision, version))
        run = self.load_run(command.run_id)
        return Decision.record(command, run.attempt)

    def _batch_one_by_one(
        self,
        run_id: str,
        items: Sequence[RecordDecision | errors.LedgerError],
        batch_token: str,
        batch_fingerprint: str,
    ) -> CommandResult[BatchResult]:
        outcomes: list[dict[str, Any]] = []
        seen_inputs: set[str] = set()
        for item in items:
            if isinstance(item, errors.LedgerError):
                outcomes.append(_error_record("invalid", item))
                continue
            try:
                if item.input_id in seen_inputs:
                    raise errors.DecisionAlreadyRecorded(
                        f"input {item.input_id!r} appears twice in this batch"
                    )
                seen_inputs.add(item.input_id)
                result = self.record_decision(item)
            except errors.InvalidCommand as error:
                outcomes.append(_error_record("invalid", error))
            except errors.LedgerError as error:
                outcomes.append(_error_record("conflict", error))
            else:
                outcomes.append(
                    {
                        "status": "replayed" if result.replayed else "created",
                        "decision_id": result.view.decision_id,
                        "version": result.version,
                    }
                )
        record = json.dumps(outcomes)
        self.index.insert_token_response(batch_token, batch_fingerprint, record)
        return self._batch_from_record(run_id, record, replayed=False)

    @staticmethod
    def _outcome_record(index: int, outcome: BatchItemResult, fresh: dict[int, Decision]) -> dict[str, Any]:
        if outcome.status == "created":
            return {"status": "created", "decision_id": str(fresh[index].id), "version": 1}
        if outcome.status == "replayed":
            assert outcome.decision is not None
            return {
                "status": "replayed",
                "decision_id": outcome.decision.decision_id,
                "version": outcome.decision.version,
            }
        assert outcome.error is not None
        return _error_record(outcome.status, outcome.error)

    def _batch_from_record(self, run_id: str, record: str, replayed: bool = True) -> CommandResult[BatchResult]:
        items: list[BatchItemResult] = []
        for entry in json.loads(record):
            if "decision_id" in entry:
                decision = self._load_at(UUID(entry["decision_id"]), Decision, entry["version"])
                items.append(BatchItemResult(entry["status"], decision=self._decision_view(decision)))
            else:
                items.append(BatchItemResult(entry["status"], error=_error_from_record(entry["error"])))
        return CommandResult(BatchResult(run_id, items), version=0, position=self.index.head_position(), replayed=replayed)

    def correct_decision(self, command: CorrectDecision) -> CommandResult[DecisionView]:
        def attempt() -> CommandResult[DecisionView]:
            if receipt := self._receipt(command):
                return self._decision_result(receipt.originator_id, receipt.originator_version, True)
            decision = self._load(command.decision_id, Decision, errors.DecisionNotFound)
            run = self.load_run(decision.run_id)
            replayed = decision.replayed_version(command)
            if replayed is not None:
                return self._decision_result(decision.id, replayed, True)
            run.require_open()
            decision.correct(command, run.attempt)
            return self._saved(self._decision_result, decision)

        return self._with_retries(attempt)

    # --- Actions --------------------------------------------------------------------------

    def request_action(self, command: RequestAction) -> CommandResult[ActionView]:
        def attempt() -> CommandResult[ActionView]:
            if receipt := self._receipt(command):
                return self._action_result(receipt.originator_id, receipt.originator_version, True)
            action_id = Action.create_id(command.run_id, command.action_key)
            existing = self._find(action_id, Action)
            if existing is not None:
                return self._action_result(action_id, existing.replay_of_request(command), True)
            run = self.load_run(command.run_id)
            decision = self._find(command.decision_id, Decision)
            if decision is None or decision.run_id != command.run_id:
                raise errors.DecisionNotFound(
                    f"decision {command.decision_id} is not recorded in run {command.run_id!r}"
                )
            run.require_open()
            action = Action.request(command, run.attempt, decision.input_id)
            return self._saved(self._action_result, action)

        return self._with_retries(attempt)

    def commit_action(self, command: CommitAction) -> CommandResult[ActionView]:
        return self._transition_action(command, Action.commit)

    def fail_action(self, command: FailAction) -> CommandResult[ActionView]:
        return self._transition_action(command, Action.fail)

    def waive_action(self, command: WaiveAction) -> CommandResult[ActionView]:
        return self._transition_action(command, Action.waive)

    def _transition_action(
        self,
        command: CommitAction | FailAction | WaiveAction,
        transition: Callable[[Action, Any, int], int | None],
    ) -> CommandResult[ActionView]:
        def attempt() -> CommandResult[ActionView]:
            if receipt := self._receipt(command):
                return self._action_result(receipt.originator_id, receipt.originator_version, True)
            action = self._load(command.action_id, Action, errors.ActionNotFound)
            run = self.load_run(action.run_id)
            replayed = action.replayed_version(command)
            if replayed is not None:
                return self._action_result(action.id, replayed, True)
            run.require_open()
            transition(action, command, run.attempt)
            return self._saved(self._action_result, action)

        return self._with_retries(attempt)

    # --- Queries ----------------------------------------------------------------------------

    def get_run(self, run_id: str, *, as_of_position: int | None = None) -> RunView:
        validate_run_id(run_id)
        try:
            run = self._load_as_of(run_uuid(run_id), Run, errors.RunNotFound, as_of_position)
        except errors.RunNotFound:
            raise errors.RunNotFound(f"run {run_id!r} not found") from None
        return self._run_view(run)

    def run_at_version(self, run_id: str, version: int) -> CommandResult[RunView]:
        return self._run_result(run_uuid(run_id), version, True)

    def get_decision(
        self,
        decision_id: UUID,
        *,
        as_of_position: int | None = None,
        valid_at: datetime | None = None,
    ) -> DecisionView:
        decision = self._load_as_of(decision_id, Decision, errors.DecisionNotFound, as_of_position)
        return self._decision_view(decision, valid_at=valid_at)

    def find_decision(
        self,
        run_id: str,
        input_id: str,
        *,
        as_of_position: int | None = None,
        valid_at: datetime | None = None,
    ) -> DecisionView:
        validate_run_id(run_id)
        return self.get_decision(
            Decision.create_id(run_id, input_id), as_of_position=as_of_position, valid_at=valid_at
        )

    def decision_history(self, decision_id: UUID, *, as_of_position: int | None = None) -> list[HistoryEntry]:
        decision = self._load_as_of(decision_id, Decision, errors.DecisionNotFound, as_of_position)
        entries = []
        for domain_event in self.events.get(decision_id, lte=decision.version):
            state = dict(vars(domain_event))
            position = self._position(decision_id, domain_event.originator_version)
            entries.append(
                HistoryEntry(
                    version=domain_event.originator_version,
                    position=position.position,
                    event_type=type(domain_event).__name__,
                    actor=state.pop("actor"),
                    attempt=state.pop("attempt"),
                    recorded_at=position.recorded_at,
                    occurred_at=state.pop("timestamp"),
                    effective_at=state.get("effective_at", domain_event.timestamp),
                    data={
                        key: value
                        for key, value in state.items()
                        if key not in {"originator_id", "originator_version", "originator_topic",
                                       "token", "fingerprint", "effective_at"}
                    },
                )
            )
        return entries

    def get_action(self, action_id: UUID, *, as_of_position: int | None = None) -> ActionView:
        action = self._load_as_of(action_id, Action, errors.ActionNotFound, as_of_position)
        return self._action_view(action)

    # --- Plumbing ---------------------------------------------------------------------------

    def _with_retries(self, attempt: Callable[[], ResultT]) -> ResultT:
        for attempt_number in range(1, MAX_COMMAND_ATTEMPTS + 1):
            try:
                return attempt()
            except IntegrityError:
                if attempt_number == MAX_COMMAND_ATTEMPTS:
                    raise
                # Another writer won the race: back off a little, reload, re-check.
                time.sleep(random.uniform(0, 0.002 * attempt_number))
        raise AssertionError("unreachable")

    def _receipt(self, command: Command) -> TokenReceipt | None:
        """The receipt of this command's token, if an earlier delivery was accepted."""
        receipt = self.index.token_receipt(command.token)
        if receipt is None:
            return None
        if receipt.fingerprint != command.fingerprint:
            raise errors.IdempotencyKeyReused(
                "this idempotency key was already used for a different request"
            )
        return receipt

    def _find(self, aggregate_id: UUID, kind: type[AggregateT]) -> AggregateT | None:
        try:
            aggregate = self.repository.get(aggregate_id)
        except AggregateNotFoundError:
            return None
        return aggregate if isinstance(aggregate, kind) else None

    def _load(self, aggregate_id: UUID, kind: type[AggregateT], missing: type[errors.NotFound]) -> AggregateT:
        aggregate = self._find(aggregate_id, kind)
        if aggregate is None:
            raise missing(f"{kind.__name__.lower()} {aggregate_id} not found")
        return aggregate

    def load_run(self, run_id: str) -> Run:
        run = self._find(run_uuid(run_id), Run)
        if run is None:
            raise errors.RunNotFound(f"run {run_id!r} not found")
        return run

    def _load_at(self, aggregate_id: UUID, kind: type[AggregateT], version: int) -> AggregateT:
        aggregate = self.repository.get(aggregate_id, version=version)
        assert isinstance(aggregate, kind)
        return aggregate

    def _load_as_of(
        self,
        aggregate_id: UUID,
        kind: type[AggregateT],
        missing: type[errors.NotFound],
        as_of_position: int | None,
    ) -> AggregateT:
        if as_of_position is None:
            return self._load(aggregate_id, kind, missing)
        version = self.index.version_at(aggregate_id, as_of_position)
        if version is None:
            raise errors.NothingKnownYet(
                f"nothing was known of {kind.__name__.lower()} {aggregate_id} at position {as_of_position}"
            )
        aggregate = self._find_at(aggregate_id, version)
        if not isinstance(aggregate, kind):
            raise missing(f"{kind.__name__.lower()} {aggregate_id} not found")
        return aggregate

    def _find_at(self, aggregate_id: UUID, version: int) -> LedgerAggregate | None:
        try:
            return self.repository.get(aggregate_id, version=version)
        except AggregateNotFoundError:
            return None

    def _position(self, aggregate_id: UUID, version: int):  # noqa: ANN202
        position = self.index.event_position(aggregate_id, version)
        assert position is not None, (aggregate_id, version)
        return position

    def _saved(
        self,
        result: Callable[[UUID, int, bool], CommandResult[ResultT]],
        aggregate: LedgerAggregate,
    ) -> CommandResult[ResultT]:
        self.save(aggregate)
        return result(aggregate.id, aggregate.version, False)

    # --- Views ------------------------------------------------------------------------------

    def _run_result(self, run_id: UUID, version: int, replayed: bool) -> CommandResult[RunView]:
        view = self._run_view(self._load_at(run_id, Run, version))
        return CommandResult(view, version, view.position, replayed)

    def _admission_result(self, run_id: UUID, version: int, replayed: bool) -> CommandResult[AdmissionView]:
        admitted = next(iter(self.events.get(run_id, gt=version - 1, lte=version)))
        if not isinstance(admitted, Run.BasisAdmitted):
            raise errors.IdempotencyKeyReused("this idempotency key was used for another command")
        view = AdmissionView(
            run_id=admitted.run_id,
            admitted_total=admitted.admitted_total,
            newly_admitted=len(admitted.input_ids),
            basis_digest=admitted.basis_digest,
            version=version,
            position=self._position(run_id, version).position,
        )
        return CommandResult(view, version, view.position, replayed)

    def _decision_result(self, decision_id: UUID, version: int, replayed: bool) -> CommandResult[DecisionView]:
        view = self._decision_view(self._load_at(decision_id, Decision, version))
        return CommandResult(view, version, view.position, replayed)

    def _action_result(self, action_id: UUID, version: int, replayed: bool) -> CommandResult[ActionView]:
        view = self._action_view(self._load_at(action_id, Action, version))
        return CommandResult(view, version, view.position, replayed)

    def _run_view(self, run: Run) -> RunView:
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
            opened_at=run.created_on,
            updated_at=run.modified_on,
            version=run.version,
            position=self._position(run.id, run.version).position,
        )

    def _decision_view(self, decision: Decision, valid_at: datetime | None = None) -> DecisionView:
        entry = decision.entry_valid_at(valid_at)
        if not entry:
            raise errors.NothingKnownYet(
                f"no outcome of decision {decision.id} was in effect at {valid_at.isoformat() if valid_at else ''}"
            )
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
            recorded_at=decision.created_on,
            updated_at=decision.modified_on,
            version=decision.version,
            position=self._position(decision.id, decision.version).position,
            valid_at=valid_at,
        )

    def _action_view(self, action: Action) -> ActionView:
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
            requested_at=action.created_on,
            updated_at=action.modified_on,
            version=action.version,
            position=self._position(action.id, action.version).position,
        )


def index_rows_for(domain_events: Sequence[Any], stored_responses: Sequence[tuple[str, str, str]] = ()) -> LedgerIndexRows:
    """Derive the index rows from the events themselves, so they can never disagree."""
    rows = LedgerIndexRows()
    for domain_event in domain_events:
        if not isinstance(domain_event, LedgerAggregate.Event):
            continue
        originator_id, version = domain_event.originator_id, domain_event.originator_version
        rows.events.append((originator_id, version, domain_event.run_id))
        rows.tokens.append((domain_event.token, domain_event.fingerprint, originator_id, version, None))
        if isinstance(domain_event, Run.BasisAdmitted):
            rows.basis.extend((domain_event.run_id, input_id) for input_id in domain_event.input_ids)
        elif isinstance(domain_event, Run.Sealed):
            rows.seals.append((domain_event.run_id, domain_event.attempt))
        elif isinstance(domain_event, (Decision.Event, Action.Event)):
            gate = (domain_event.run_id, domain_event.attempt)
            if gate not in rows.gates:
                rows.gates.append(gate)
    rows.tokens.extend((token, fingerprint, None, None, response) for token, fingerprint, response in stored_responses)
    return rows


def _error_record(status: str, error: Exception) -> dict[str, Any]:
    return {
        "status": status,
        "error": {
            "class": type(error).__name__,
            "detail": getattr(error, "detail", str(error)),
            "field": getattr(error, "field", None),
        },
    }


def _error_from_record(record: dict[str, Any]) -> errors.LedgerError:
    error_class = _LEDGER_ERRORS.get(record["class"], errors.LedgerError)
    if issubclass(error_class, errors.InvalidCommand):
        return error_class(record["detail"], field=record.get("field"))
    return error_class(record["detail"])


def _all_subclasses(cls: type) -> list[type]:
    return [cls, *(sub for child in cls.__subclasses__() for sub in _all_subclasses(child))]


_LEDGER_ERRORS = {cls.__name__: cls for cls in _all_subclasses(errors.LedgerError)}
