"""Run commands: open, admit inputs, seal, record the verdict, reopen. Each one loads
the run, lets it decide and saves it, once per idempotency token."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from application.answers import Answers
from application.commands.execution import IdempotentExecution
from application.ledger import DecisionLedger
from application.proofs import proof_digest
from application.results import AdmissionView, CommandResult, RunView
from domain import errors
from domain.commands import AdmitInputs, CloseRun, OpenRun, ReopenRun
from domain.identity import run_uuid
from domain.run import Reconciliation, Run, RunStatus, verdict_token


class RunCommands:
    def __init__(self, ledger: DecisionLedger, execution: IdempotentExecution, answers: Answers) -> None:
        self.ledger = ledger
        self.execution = execution
        self.answers = answers

    def open(self, command: OpenRun) -> CommandResult[RunView]:
        def attempt(first: bool) -> CommandResult[RunView]:
            if not first and (receipt := self.execution.receipt(command)):
                return self.execution.replayed(receipt, Run, self.answers.run)
            if not first:
                existing = self.ledger.find(run_uuid(command.run_id), Run)
                if existing is not None:
                    version = existing.replay_of_open(command)
                    return self.execution.answered_at(existing.id, Run, version, self.answers.run)
            return self.execution.saved(Run.open(command), self.answers.run)

        return self.execution.execute(command, attempt)

    def admit(self, command: AdmitInputs) -> CommandResult[AdmissionView]:
        def attempt(first: bool) -> CommandResult[AdmissionView]:
            if not first and (receipt := self.execution.receipt(command)):
                if receipt.originator_id is None or receipt.originator_version is None:
                    raise errors.IdempotencyKeyReused("this idempotency key was used for another command")
                view = self.answers.admission(receipt.originator_id, receipt.originator_version)
                return CommandResult(view, view.version, view.position, True)
            run = self.ledger.load_run(command.run_id)
            already_admitted = self.ledger.index.admitted_among(command.run_id, command.input_ids)
            replayed = run.admit(command, already_admitted)
            if replayed is not None:
                view = self.answers.admission(run.id, replayed)
                return CommandResult(view, view.version, view.position, True)
            recordings = self.ledger.commit(run)
            view = self.answers.admission(run.id, run.version, recordings[-1].notification.id)
            return CommandResult(view, view.version, view.position, False)

        return self.execution.execute(command, attempt)

    def reopen(self, command: ReopenRun) -> CommandResult[RunView]:
        return self._transition(command, lambda run: run.reopen(command))

    def seal(self, command: CloseRun) -> CommandResult[RunView]:
        """The first half of a close: after this, nothing more lands in this attempt."""
        return self._transition(command, lambda run: run.seal(command))

    def _transition(
        self, command: ReopenRun | CloseRun, decide: Callable[[Run], int | None]
    ) -> CommandResult[RunView]:
        """Load the run, let it decide (a replayed version, or new events), save."""

        def attempt(first: bool) -> CommandResult[RunView]:
            if not first and (receipt := self.execution.receipt(command)):
                return self.execution.replayed(receipt, Run, self.answers.run)
            run = self.ledger.load_run(command.run_id)
            replayed = decide(run)
            if replayed is not None:
                return self.execution.answered_at(run.id, Run, replayed, self.answers.run)
            return self.execution.saved(run, self.answers.run)

        return self.execution.execute(command, attempt)

    def record_verdict(
        self,
        command: CloseRun,
        evidence: Reconciliation,
        make_proof: Callable[[Run], dict[str, Any]],
    ) -> CommandResult[RunView]:
        """The second half of a close: green only if the evidence proves the run
        reconciles (the Run decides), red with reasons otherwise."""

        def attempt(first: bool) -> CommandResult[RunView]:
            receipt = self.ledger.index.token_receipt(verdict_token(command.token))
            if receipt is not None:
                return self.execution.replayed(receipt, Run, self.answers.run)
            run = self.ledger.load_run(command.run_id)
            if run.status != RunStatus.SEALED:
                verdict = run.latest_verdict
                if verdict is not None and verdict["seal_position"] == evidence.seal_position:
                    # Another closer recorded this attempt's verdict first.
                    return self.execution.answered_at(run.id, Run, run.version, self.answers.run)
                run.require_sealed()
            if run.rejection_reasons(evidence):
                run.reject(command, evidence)
            else:
                proof = make_proof(run)
                run.commit(command, evidence, proof, proof_digest(proof))
            return self.execution.saved(run, self.answers.run)

        # Not through execute(): the close command's token names the seal; the verdict has its own.
        return self.execution.with_retries(attempt)

    def run_at_version(self, run_id: str, version: int) -> CommandResult[RunView]:
        return self.execution.answered_at(run_uuid(run_id), Run, version, self.answers.run)

    def open_attempt(self, run_id: str, *, fresh: bool) -> int:
        """The attempt a run is open in; RunNotFound or RunNotOpen otherwise."""
        if not fresh and (cached := self.ledger.open_runs.get(run_id)) is not None:
            return cached
        try:
            run = self.ledger.load_run(run_id)
            run.require_open()
        except errors.LedgerError:
            self.ledger.open_runs.discard(run_id)  # so the next command does not try it again
            raise
        self.ledger.open_runs.put(run_id, run.attempt)
        return run.attempt
