"""Action commands: request an action for a decision, then commit, fail or waive it, or
redeliver it (the dispatcher carries out the kinds an effector receives)."""

from __future__ import annotations

from collections.abc import Callable

from application.answers import Answers
from application.commands.execution import IdempotentExecution
from application.commands.runs import RunCommands
from application.ledger import DecisionLedger
from application.results import ActionView, CommandResult
from domain import errors
from domain.action import Action
from domain.commands import CommitAction, FailAction, RedeliverAction, RequestAction, WaiveAction
from domain.decision import Decision

Transition = Callable[[Action, CommitAction | FailAction | WaiveAction, int], int | None]


class ActionCommands:
    def __init__(
        self, ledger: DecisionLedger, execution: IdempotentExecution, answers: Answers, runs: RunCommands
    ) -> None:
        self.ledger = ledger
        self.execution = execution
        self.answers = answers
        self.runs = runs

    def request(self, command: RequestAction) -> CommandResult[ActionView]:
        def attempt(first: bool) -> CommandResult[ActionView]:
            if not first and (receipt := self.execution.receipt(command)):
                return self.execution.replayed(receipt, Action, self.answers.action)
            action_id = Action.create_id(command.run_id, command.action_key)
            if not first:
                existing = self.ledger.find(action_id, Action)
                if existing is not None:
                    version = existing.replay_of_request(command)
                    return self.execution.answered_at(action_id, Action, version, self.answers.action)
            decision = self.ledger.find(command.decision_id, Decision)
            if decision is None or decision.run_id != command.run_id:
                self.ledger.load_run(command.run_id)  # an unknown run is the better answer
                raise errors.DecisionNotFound(
                    f"decision {command.decision_id} is not recorded in run {command.run_id!r}"
                )
            attempt_number = self.runs.open_attempt(command.run_id, fresh=not first)
            action = Action.request(command, attempt_number, decision.input_id)
            return self.execution.saved(action, self.answers.action)

        return self.execution.execute(command, attempt)

    def commit(self, command: CommitAction) -> CommandResult[ActionView]:
        return self._transition(command, Action.commit)  # type: ignore[arg-type]

    def fail(self, command: FailAction) -> CommandResult[ActionView]:
        return self._transition(command, Action.fail)  # type: ignore[arg-type]

    def waive(self, command: WaiveAction) -> CommandResult[ActionView]:
        return self._transition(command, Action.waive)  # type: ignore[arg-type]

    def redeliver(self, command: RedeliverAction) -> CommandResult[ActionView]:
        """A fresh delivery schedule for a failed action; not gated by the run's state."""

        def attempt(first: bool) -> CommandResult[ActionView]:
            if not first and (receipt := self.execution.receipt(command)):
                return self.execution.replayed(receipt, Action, self.answers.action)
            action = self.ledger.load(command.action_id, Action, errors.ActionNotFound)
            replayed = action.redeliver(command, self.ledger.clock())
            if replayed is not None:
                return self.execution.answered_at(action.id, Action, replayed, self.answers.action)
            return self.execution.saved(action, self.answers.action)

        return self.execution.execute(command, attempt)

    def _transition(
        self, command: CommitAction | FailAction | WaiveAction, transition: Transition
    ) -> CommandResult[ActionView]:
        def attempt(first: bool) -> CommandResult[ActionView]:
            if not first and (receipt := self.execution.receipt(command)):
                return self.execution.replayed(receipt, Action, self.answers.action)
            action = self.ledger.load(command.action_id, Action, errors.ActionNotFound)
            replayed = action.replayed_version(command)
            if replayed is not None:
                return self.execution.answered_at(action.id, Action, replayed, self.answers.action)
            attempt_number = self.runs.open_attempt(action.run_id, fresh=not first)
            transition(action, command, attempt_number)
            return self.execution.saved(action, self.answers.action)

        return self.execution.execute(command, attempt)
