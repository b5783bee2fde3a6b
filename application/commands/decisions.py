"""Decision commands: record (from a thread or from an event loop) and correct."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from eventsourcing.persistence import IntegrityError

from application.answers import Answers
from application.commands.execution import IdempotentExecution
from application.commands.runs import RunCommands
from application.ledger import DecisionLedger
from application.results import CommandResult, DecisionView
from domain import errors
from domain.commands import CorrectDecision, RecordDecision
from domain.decision import Decision

ResultT = TypeVar("ResultT")


class DecisionCommands:
    def __init__(
        self, ledger: DecisionLedger, execution: IdempotentExecution, answers: Answers, runs: RunCommands
    ) -> None:
        self.ledger = ledger
        self.execution = execution
        self.answers = answers
        self.runs = runs
        # Commands an event loop hands over because they must wait on the database.
        self._checked_paths = ThreadPoolExecutor(
            ledger.tuning.command_threads, thread_name_prefix="ledger-checked"
        )

    def close(self) -> None:
        """Let commands running in the threads finish (they may need the committer)."""
        self._checked_paths.shutdown(wait=True)

    def record(self, command: RecordDecision) -> CommandResult[DecisionView]:
        return self.execution.execute(command, lambda first: self.record_once(command, first))

    async def record_async(self, command: RecordDecision) -> CommandResult[DecisionView]:
        """`record` for an event loop. The common case, a new decision in a run this process
        knows to be open, is decided on the loop and awaits its group's commit; whatever
        needs the database first (a run not known here, a redelivery answered by another
        process, a lost race) runs the checked path in a worker thread."""
        recalled = self.execution.recall(command)
        if recalled is not None:
            return recalled
        attempt = self.ledger.open_runs.get(command.run_id)
        if attempt is None or self.ledger.committer is None:
            return await self._in_thread(self.record, command)
        decision = Decision.record(command, attempt, self.ledger.clock())
        try:
            recordings = await self.ledger.committer.save_async(decision)
        except IntegrityError:
            return await self._in_thread(
                self.execution.execute, command, lambda _: self.record_once(command, first=False)
            )
        # The known time of what was just saved is in memory (the ledger's save put it there).
        position = recordings[-1].notification.id
        result = CommandResult(self.answers.decision(decision, position), decision.version, position, False)
        self.execution.remember(command, result)
        return result

    async def _in_thread(self, function: Callable[..., ResultT], *args: Any) -> ResultT:
        return await asyncio.get_running_loop().run_in_executor(self._checked_paths, function, *args)

    def record_once(self, command: RecordDecision, first: bool) -> CommandResult[DecisionView]:
        if not first and (receipt := self.execution.receipt(command)):
            return self.execution.replayed(receipt, Decision, self.answers.decision)
        if not first:
            decision_id = Decision.create_id(command.run_id, command.input_id)
            existing = self.ledger.find(decision_id, Decision)
            if existing is not None:
                version = existing.replay_of_record(command)
                return self.execution.answered_at(decision_id, Decision, version, self.answers.decision)
        attempt = self.runs.open_attempt(command.run_id, fresh=not first)
        return self.execution.saved(
            Decision.record(command, attempt, self.ledger.clock()), self.answers.decision
        )

    def correct(self, command: CorrectDecision) -> CommandResult[DecisionView]:
        def attempt(first: bool) -> CommandResult[DecisionView]:
            if not first and (receipt := self.execution.receipt(command)):
                return self.execution.replayed(receipt, Decision, self.answers.decision)
            decision = self.ledger.load(command.decision_id, Decision, errors.DecisionNotFound)
            replayed = decision.replayed_version(command)
            if replayed is not None:
                return self.execution.answered_at(decision.id, Decision, replayed, self.answers.decision)
            attempt_number = self.runs.open_attempt(decision.run_id, fresh=not first)
            decision.correct(command, attempt_number, self.ledger.clock())
            return self.execution.saved(decision, self.answers.decision)

        return self.execution.execute(command, attempt)
