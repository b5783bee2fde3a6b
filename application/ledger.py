"""The decision ledger: one eventsourcing Application for runs, decisions and actions.

Every command follows the same path: look its token up (a known token is a replay),
load the aggregates, let them decide, and save. A save that loses a race raises the
library's IntegrityError; the command is then run again from the top, so it finds the
winner's receipt and answers with the replay, or meets the new state and raises the
typed error that state calls for.

The first attempt of a creation is optimistic: it does not look for an existing
aggregate, because the insert itself refuses a duplicate (IntegrityError) and the
retry then does the full checks. Saves go through a group committer, so concurrent
commands in one process share a transaction.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any, ClassVar, TypeVar, cast
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, Application, ProcessingEvent, project_aggregate
from eventsourcing.persistence import IntegrityError, Recording
from eventsourcing.utils import EnvType, strtobool

from application.group_commit import GroupCommitter, TokenAlreadyAccepted
from application.proofs import proof_digest
from application.views import (
    ActionView,
    AdmissionView,
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
ViewOf = Callable[[Any, int], Any]

#: How often a command that lost a race is run again before giving up.
MAX_COMMAND_ATTEMPTS = 12
#: Threads for commands that an event loop hands over because they must wait on the database.
BLOCKING_PATH_THREADS = 16
#: Environment switch for group commit (on unless "n").
GROUP_COMMIT = "GROUP_COMMIT"


class DecisionLedger(Application[UUID]):
    name = "DecisionLedger"
    snapshotting_intervals: ClassVar = {Run: 20}
    env: ClassVar = {"AGGREGATE_CACHE_MAXSIZE": "5000", "DEEPCOPY_FROM_AGGREGATE_CACHE": "y"}

    def __init__(self, env: EnvType | None = None) -> None:
        super().__init__(env)
        if self.snapshots is not None:
            # Snapshots are derived, but the application trusts them: keep them unrewritable.
            self.index.protect(self.snapshots.recorder.events_table_name)  # type: ignore[attr-defined]
        self.saved_listeners: list[Callable[[list[Recording[UUID]]], None]] = []
        self.committer = (
            GroupCommitter(self.save, precheck=self._accepted_already)
            if strtobool(self.env.get(GROUP_COMMIT, "y"))
            else None
        )
        # Which attempt each run this process believes open is in. A stale belief is
        # harmless: the seal gate refuses the write and the retry reloads the run.
        self._open_attempts: dict[str, int] = {}
        self._open_attempts_lock = threading.Lock()
        self._answers = AnswerCache()
        self._recently_known: OrderedDict[tuple[UUID, int], datetime] = OrderedDict()
        self._recently_known_lock = threading.Lock()
        # Receipts never change once written: those a group's precheck found are kept for
        # the retries that follow it (redeliveries first answered by another process).
        self._found_receipts: dict[str, TokenReceipt] = {}
        self._found_receipts_lock = threading.Lock()
        self._blocking_paths = ThreadPoolExecutor(BLOCKING_PATH_THREADS, thread_name_prefix="ledger-checked")

    @property
    def index(self) -> LedgerIndex:
        return cast(LedgerIndex, self.recorder)

    def close(self) -> None:
        # Commands still running in threads may need the committer: let them finish first.
        if getattr(self, "_blocking_paths", None) is not None:
            self._blocking_paths.shutdown(wait=True)
        if getattr(self, "committer", None) is not None:
            self.committer.close()  # type: ignore[union-attr]
        super().close()

    # --- Saving: the index rows ride in the events' transaction ----------------------

    def _record(self, processing_event: ProcessingEvent[UUID]) -> list[Recording[UUID]]:
        processing_event.saved_kwargs["ledger_index"] = index_rows_for(
            processing_event.events,
            stored_responses=processing_event.saved_kwargs.pop("stored_responses", []),
        )
        for domain_event in processing_event.events:
            if isinstance(domain_event, Run.Event):
                self._forget_open_attempt(domain_event.run_id)
        recordings = super()._record(processing_event)
        # Remember when these events became known, so the answer needs no second query.
        known_at = self.index.last_knowledge_time()
        if known_at is not None:
            self._remember_known_times(
                [
                    (recording.domain_event.originator_id, recording.domain_event.originator_version)
                    for recording in recordings
                ],
                known_at,
            )
        return recordings

    def _remember_known_times(self, versions: Sequence[tuple[UUID, int]], known_at: datetime) -> None:
        with self._recently_known_lock:
            for aggregate_version in versions:
                self._recently_known[aggregate_version] = known_at
            # Oldest first out: what was just saved stays until its answer is built.
            while len(self._recently_known) > 50_000:
                self._recently_known.popitem(last=False)

    def _notify(self, recordings: list[Recording[UUID]]) -> None:
        for listener in self.saved_listeners:
            listener(recordings)

    def _accepted_already(self, groups: list[Sequence[LedgerAggregate]]) -> set[int]:
        """Which of these would-be saves carry a token the ledger already accepted (one query
        for a whole group: redeliveries that another process answered first)."""
        tokens_of = [
            {event.token for aggregate in aggregates for event in aggregate.pending_events}
            for aggregates in groups
        ]
        accepted = self.index.token_receipts([token for tokens in tokens_of for token in tokens])
        if accepted:
            with self._found_receipts_lock:
                if len(self._found_receipts) > 10_000:
                    self._found_receipts.clear()
                self._found_receipts.update(accepted)
        return {index for index, tokens in enumerate(tokens_of) if not tokens.isdisjoint(accepted)}

    def commit(self, *aggregates: LedgerAggregate, **kwargs: Any) -> list[Recording[UUID]]:
        """Save, through the group committer when there is one and nothing extra rides along."""
        if self.committer is not None and not kwargs:
            return self.committer.save(*aggregates)
        return self.save(*aggregates, **kwargs)

    # --- Runs -------------------------------------------------------------------------

    def open_run(self, command: OpenRun) -> CommandResult[RunView]:
        def attempt(first: bool) -> CommandResult[RunView]:
            if not first and (receipt := self.receipt(command)):
                return self._replayed(receipt, Run, self._run_view)
            if not first:
                existing = self._find(run_uuid(command.run_id), Run)
                if existing is not None:
                    return self._result_at(existing.id, Run, existing.replay_of_open(command), self._run_view)
            return self._saved(Run.open(command), self._run_view)

        return self.execute(command, attempt)

    def admit_inputs(self, command: AdmitInputs) -> CommandResult[AdmissionView]:
        def attempt(first: bool) -> CommandResult[AdmissionView]:
            if not first and (receipt := self.receipt(command)):
                return self._admission_result(receipt.originator_id, receipt.originator_version, True)
            run = self.load_run(command.run_id)
            already_admitted = self.index.admitted_among(command.run_id, command.input_ids)
            replayed = run.admit(command, already_admitted)
            if replayed is not None:
                return self._admission_result(run.id, replayed, True)
            recordings = self.commit(run)
            return self._admission_result(run.id, run.version, False, recordings[-1].notification.id)

        return self.execute(command, attempt)

    def reopen_run(self, command: ReopenRun) -> CommandResult[RunView]:
        def attempt(first: bool) -> CommandResult[RunView]:
            if not first and (receipt := self.receipt(command)):
                return self._replayed(receipt, Run, self._run_view)
            run = self.load_run(command.run_id)
            replayed = run.reopen(command)
            if replayed is not None:
                return self._result_at(run.id, Run, replayed, self._run_view)
            return self._saved(run, self._run_view)

        return self.execute(command, attempt)

    def seal_run(self, command: CloseRun) -> CommandResult[RunView]:
        """The first half of a close: after this, nothing more lands in this attempt."""

        def attempt(first: bool) -> CommandResult[RunView]:
            if not first and (receipt := self.receipt(command)):
                return self._replayed(receipt, Run, self._run_view)
            run = self.load_run(command.run_id)
            replayed = run.seal(command)
            if replayed is not None:
                return self._result_at(run.id, Run, replayed, self._run_view)
            return self._saved(run, self._run_view)

        return self.execute(command, attempt)

    def seal_position(self, run: Run) -> int:
        """Where the run's current attempt was sealed."""
        if run.sealed_version is None:
            raise errors.RunNotSealed(f"run {run.run_id!r} is not sealed")
        return self.position_of(run.id, run.sealed_version)

    def record_verdict(
        self,
        command: CloseRun,
        evidence: Reconciliation,
        make_proof: Callable[[Run], dict[str, Any]],
    ) -> CommandResult[RunView]:
        """The second half of a close: green only if the evidence proves the run
        reconciles (the Run decides), red with reasons otherwise."""

        def attempt(first: bool) -> CommandResult[RunView]:
            receipt = self.index.token_receipt(verdict_token(command.token))
            if receipt is not None:
                return self._replayed(receipt, Run, self._run_view)
            run = self.load_run(command.run_id)
            if run.status != RunStatus.SEALED:
                verdict = run.latest_verdict
                if verdict is not None and verdict["seal_position"] == evidence.seal_position:
                    # Another closer recorded this attempt's verdict first.
                    return self._result_at(run.id, Run, run.version, self._run_view)
                run.require_sealed()
            if run.rejection_reasons(evidence):
                run.reject(command, evidence)
            else:
                proof = make_proof(run)
                run.commit(command, evidence, proof, proof_digest(proof))
            return self._saved(run, self._run_view)

        # Not through execute(): the close command's token names the seal; the verdict has its own.
        return self.with_retries(attempt)

    def run_at_version(self, run_id: str, version: int) -> CommandResult[RunView]:
        return self._result_at(run_uuid(run_id), Run, version, self._run_view, replayed=True)

    def open_attempt(self, run_id: str, *, fresh: bool) -> int:
        """The attempt a run is open in; RunNotFound or RunNotOpen otherwise."""
        if not fresh and (cached := self._known_open_attempt(run_id)) is not None:
            return cached
        try:
            run = self.load_run(run_id)
            run.require_open()
        except errors.LedgerError:
            self._forget_open_attempt(run_id)  # so the next command does not try it again
            raise
        with self._open_attempts_lock:
            if len(self._open_attempts) > 10_000:
                self._open_attempts.clear()
            self._open_attempts[run_id] = run.attempt
        return run.attempt

    def _known_open_attempt(self, run_id: str) -> int | None:
        with self._open_attempts_lock:
            return self._open_attempts.get(run_id)

    def _forget_open_attempt(self, run_id: str) -> None:
        with self._open_attempts_lock:
            self._open_attempts.pop(run_id, None)

    # --- Decisions ----------------------------------------------------------------------

    def record_decision(self, command: RecordDecision) -> CommandResult[DecisionView]:
        return self.execute(command, lambda first: self._record_decision_once(command, first))

    async def record_decision_async(self, command: RecordDecision) -> CommandResult[DecisionView]:
        """record_decision for an event loop. The common case, a new decision in a run this
        process knows to be open, is decided on the loop and awaits its group's commit;
        whatever needs the database first (a run not known here, a redelivery answered by
        another process, a lost race) runs the checked path in a worker thread."""
        recalled = self._answers.recall(command)
        if recalled is not None:
            return recalled
        attempt = self._known_open_attempt(command.run_id)
        if attempt is None or self.committer is None:
            return await self._in_thread(self.record_decision, command)
        decision = Decision.record(command, attempt)
        try:
            recordings = await self.committer.save_async(decision)
        except IntegrityError:
            return await self._in_thread(
                self.execute, command, lambda _: self._record_decision_once(command, first=False)
            )
        # The known time of what was just saved is in memory (_record put it there).
        result = CommandResult(
            self._decision_view(decision, recordings[-1].notification.id),
            decision.version,
            recordings[-1].notification.id,
            False,
        )
        self._answers.remember(command, result)
        return result

    async def _in_thread(self, function: Callable[..., ResultT], *args: Any) -> ResultT:
        """Run a blocking path from the event loop, in threads of the ledger's own (as many
        as the database pool can serve at once)."""
        return await asyncio.get_running_loop().run_in_executor(self._blocking_paths, function, *args)

    def _record_decision_once(self, command: RecordDecision, first: bool) -> CommandResult[DecisionView]:
        if not first and (receipt := self.receipt(command)):
            return self._replayed(receipt, Decision, self._decision_view)
        if not first:
            decision_id = Decision.create_id(command.run_id, command.input_id)
            existing = self._find(decision_id, Decision)
            if existing is not None:
                return self._result_at(
                    decision_id, Decision, existing.replay_of_record(command), self._decision_view
                )
        attempt = self.open_attempt(command.run_id, fresh=not first)
        return self._saved(Decision.record(command, attempt), self._decision_view)

    def record_decision_batch(
        self,
        run_id: str,
        items: Sequence[RecordDecision | errors.LedgerError],
        batch_token: str,
        batch_fingerprint: str,
    ) -> CommandResult[BatchResult]:
        """Up to a thousand decisions in one transaction, each with its own answer."""
        from application.decision_batches import DecisionBatches

        return DecisionBatches(self).record(run_id, items, batch_token, batch_fingerprint)

    def correct_decision(self, command: CorrectDecision) -> CommandResult[DecisionView]:
        def attempt(first: bool) -> CommandResult[DecisionView]:
            if not first and (receipt := self.receipt(command)):
                return self._replayed(receipt, Decision, self._decision_view)
            decision = self._load(command.decision_id, Decision, errors.DecisionNotFound)
            replayed = decision.replayed_version(command)
            if replayed is not None:
                return self._result_at(decision.id, Decision, replayed, self._decision_view)
            decision.correct(command, self.open_attempt(decision.run_id, fresh=not first))
            return self._saved(decision, self._decision_view)

        return self.execute(command, attempt)

    # --- Actions --------------------------------------------------------------------------

    def request_action(self, command: RequestAction) -> CommandResult[ActionView]:
        def attempt(first: bool) -> CommandResult[ActionView]:
            if not first and (receipt := self.receipt(command)):
                return self._replayed(receipt, Action, self._action_view)
            action_id = Action.create_id(command.run_id, command.action_key)
            if not first:
                existing = self._find(action_id, Action)
                if existing is not None:
                    return self._result_at(
                        action_id, Action, existing.replay_of_request(command), self._action_view
                    )
            decision = self._find(command.decision_id, Decision)
            if decision is None or decision.run_id != command.run_id:
                self.load_run(command.run_id)  # an unknown run is the better answer
                raise errors.DecisionNotFound(
                    f"decision {command.decision_id} is not recorded in run {command.run_id!r}"
                )
            attempt_number = self.open_attempt(command.run_id, fresh=not first)
            return self._saved(Action.request(command, attempt_number, decision.input_id), self._action_view)

        return self.execute(command, attempt)

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
        def attempt(first: bool) -> CommandResult[ActionView]:
            if not first and (receipt := self.receipt(command)):
                return self._replayed(receipt, Action, self._action_view)
            action = self._load(command.action_id, Action, errors.ActionNotFound)
            replayed = action.replayed_version(command)
            if replayed is not None:
                return self._result_at(action.id, Action, replayed, self._action_view)
            attempt_number = self.open_attempt(action.run_id, fresh=not first)
            transition(action, command, attempt_number)
            return self._saved(action, self._action_view)

        return self.execute(command, attempt)

    # --- Queries ----------------------------------------------------------------------------

    def get_run(self, run_id: str, *, as_of_position: int | None = None) -> RunView:
        validate_run_id(run_id)
        try:
            run = self._load_as_of(run_uuid(run_id), Run, errors.RunNotFound, as_of_position)
        except errors.RunNotFound:
            raise errors.RunNotFound(f"run {run_id!r} not found") from None
        return self._run_view(run, self.position_of(run.id, run.version))

    def get_decision(
        self,
        decision_id: UUID,
        *,
        as_of_position: int | None = None,
        valid_at: datetime | None = None,
    ) -> DecisionView:
        decision = self._load_as_of(decision_id, Decision, errors.DecisionNotFound, as_of_position)
        return self._decision_view(decision, self.position_of(decision.id, decision.version), valid_at)

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
            position = self.index.event_position(decision_id, domain_event.originator_version)
            assert position is not None
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
                        if key
                        not in {
                            "originator_id",
                            "originator_version",
                            "originator_topic",
                            "token",
                            "fingerprint",
                            "effective_at",
                        }
                    },
                )
            )
        return entries

    def get_action(self, action_id: UUID, *, as_of_position: int | None = None) -> ActionView:
        action = self._load_as_of(action_id, Action, errors.ActionNotFound, as_of_position)
        return self._action_view(action, self.position_of(action.id, action.version))

    # --- Plumbing ---------------------------------------------------------------------------

    def execute(self, command: Command, attempt: Callable[[bool], CommandResult[Any]]) -> CommandResult[Any]:
        """Run a command once per token. A recent answer is replayed from memory (answers
        never change); otherwise the attempt runs. The first attempt is optimistic: a token
        already used elsewhere makes its insert fail, and the retry checks the receipt."""
        recalled = self._answers.recall(command)
        if recalled is not None:
            return recalled
        result = self.with_retries(attempt)
        self._answers.remember(command, result)
        return result

    def with_retries(self, attempt: Callable[[bool], ResultT]) -> ResultT:
        """Run a command; after a lost race (IntegrityError), run it again with full checks."""
        for attempt_number in range(1, MAX_COMMAND_ATTEMPTS + 1):
            try:
                return attempt(attempt_number == 1)
            except IntegrityError as error:
                if attempt_number == MAX_COMMAND_ATTEMPTS:
                    raise
                # A redelivery finds its receipt at once; after a lost race, back off a little.
                if not isinstance(error, TokenAlreadyAccepted):
                    time.sleep(random.uniform(0, 0.002 * attempt_number))
        raise AssertionError("unreachable")

    def receipt(self, command: Command) -> TokenReceipt | None:
        """The receipt of this command's token, if an earlier delivery was accepted."""
        with self._found_receipts_lock:
            receipt = self._found_receipts.pop(command.token, None)
        if receipt is None:
            receipt = self.index.token_receipt(command.token)
        if receipt is None:
            return None
        if receipt.fingerprint != command.fingerprint:
            raise errors.IdempotencyKeyReused("this idempotency key was already used for a different request")
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

    def at_version(self, aggregate_id: UUID, kind: type[AggregateT], version: int) -> AggregateT:
        """An aggregate as it was at a version. Only runs have snapshots worth asking for."""
        if kind is Run:
            aggregate = self.repository.get(aggregate_id, version=version)
        else:
            aggregate = project_aggregate(None, self.events.get(aggregate_id, lte=version))
        if not isinstance(aggregate, kind):
            raise AggregateNotFoundError(aggregate_id)
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
        try:
            return self.at_version(aggregate_id, kind, version)
        except AggregateNotFoundError:
            raise missing(f"{kind.__name__.lower()} {aggregate_id} not found") from None

    def position_of(self, aggregate_id: UUID, version: int) -> int:
        position = self.index.event_position(aggregate_id, version)
        assert position is not None, (aggregate_id, version)
        return position.position

    def _saved(self, aggregate: AggregateT, view: ViewOf) -> CommandResult[Any]:
        recordings = self.commit(aggregate)
        position = recordings[-1].notification.id
        return CommandResult(view(aggregate, position), aggregate.version, position, False)

    def _replayed(self, receipt: TokenReceipt, kind: type[AggregateT], view: ViewOf) -> CommandResult[Any]:
        assert receipt.originator_id is not None and receipt.originator_version is not None
        if receipt.recorded_at is not None:
            self._remember_known_times(
                [(receipt.originator_id, receipt.originator_version)], receipt.recorded_at
            )
        aggregate = self.at_version(receipt.originator_id, kind, receipt.originator_version)
        position = receipt.position or self.position_of(aggregate.id, aggregate.version)
        return CommandResult(view(aggregate, position), aggregate.version, position, True)

    def _result_at(
        self, aggregate_id: UUID, kind: type[AggregateT], version: int, view: ViewOf, replayed: bool = True
    ) -> CommandResult[Any]:
        aggregate = self.at_version(aggregate_id, kind, version)
        position = self.position_of(aggregate_id, version)
        return CommandResult(view(aggregate, position), version, position, replayed)

    # --- Views ------------------------------------------------------------------------------

    def _admission_result(
        self, run_id: UUID, version: int, replayed: bool, position: int | None = None
    ) -> CommandResult[AdmissionView]:
        admitted = next(iter(self.events.get(run_id, gt=version - 1, lte=version)))
        if not isinstance(admitted, Run.BasisAdmitted):
            raise errors.IdempotencyKeyReused("this idempotency key was used for another command")
        position = position or self.position_of(run_id, version)
        view = AdmissionView(
            run_id=admitted.run_id,
            admitted_total=admitted.admitted_total,
            newly_admitted=len(admitted.input_ids),
            basis_digest=admitted.basis_digest,
            version=version,
            position=position,
        )
        return CommandResult(view, version, position, replayed)

    def _known_at(self, aggregate_id: UUID, first: int, last: int) -> tuple[datetime, datetime]:
        """When an aggregate's first and last events became known: the knowledge times
        that as_of reads by (from memory for this process's recent writes)."""
        first_known = self._known_time(aggregate_id, first)
        return first_known, first_known if last == first else self._known_time(aggregate_id, last)

    def _known_time(self, aggregate_id: UUID, version: int) -> datetime:
        with self._recently_known_lock:
            known = self._recently_known.get((aggregate_id, version))
        if known is not None:
            return known
        position = self.index.event_position(aggregate_id, version)
        assert position is not None, (aggregate_id, version)
        self._remember_known_times([(aggregate_id, version)], position.recorded_at)
        return position.recorded_at

    def _run_view(self, run: Run, position: int) -> RunView:
        opened_at, updated_at = self._known_at(run.id, Run.INITIAL_VERSION, run.version)
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

    def _decision_view(
        self,
        decision: Decision,
        position: int,
        valid_at: datetime | None = None,
        known_at: tuple[datetime, datetime] | None = None,
    ) -> DecisionView:
        recorded_at, updated_at = known_at or self._known_at(
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

    def decision_view(
        self, decision: Decision, position: int, known_at: tuple[datetime, datetime] | None = None
    ) -> DecisionView:
        return self._decision_view(decision, position, known_at=known_at)

    @staticmethod
    def _action_view(action: Action, position: int) -> ActionView:
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
            position=position,
        )


class AnswerCache:
    """The answers this process gave recently, by token. An answer never changes, so a
    redelivery is answered from here without touching the database."""

    def __init__(self, max_size: int = 20_000) -> None:
        self._answers: OrderedDict[str, tuple[str, CommandResult[Any]]] = OrderedDict()
        self._max_size = max_size
        self._lock = threading.Lock()

    def recall(self, command: Command) -> CommandResult[Any] | None:
        with self._lock:
            entry = self._answers.get(command.token)
            if entry is not None:
                self._answers.move_to_end(command.token)
        if entry is None:
            return None
        fingerprint, answer = entry
        if fingerprint != command.fingerprint:
            raise errors.IdempotencyKeyReused("this idempotency key was already used for a different request")
        return answer

    def remember(self, command: Command, answer: CommandResult[Any]) -> None:
        replay = CommandResult(answer.view, answer.version, answer.position, True)
        with self._lock:
            self._answers[command.token] = (command.fingerprint, replay)
            self._answers.move_to_end(command.token)
            while len(self._answers) > self._max_size:
                self._answers.popitem(last=False)


def index_rows_for(
    domain_events: Sequence[Any], stored_responses: Sequence[tuple[str, str, str]] = ()
) -> LedgerIndexRows:
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
    rows.tokens.extend(
        (token, fingerprint, None, None, response) for token, fingerprint, response in stored_responses
    )
    return rows
