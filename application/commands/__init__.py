"""Command handlers, one module per aggregate family, over one idempotent-execution unit."""

from __future__ import annotations

from dataclasses import dataclass

from application.answers import Answers
from application.commands.actions import ActionCommands
from application.commands.batches import DecisionBatches
from application.commands.decisions import DecisionCommands
from application.commands.execution import IdempotentExecution
from application.commands.runs import RunCommands
from application.ledger import DecisionLedger


@dataclass(frozen=True)
class Commands:
    runs: RunCommands
    decisions: DecisionCommands
    batches: DecisionBatches
    actions: ActionCommands

    @classmethod
    def over(cls, ledger: DecisionLedger) -> Commands:
        answers = Answers(ledger)
        execution = IdempotentExecution(ledger, answers)
        runs = RunCommands(ledger, execution, answers)
        decisions = DecisionCommands(ledger, execution, answers, runs)
        return cls(
            runs=runs,
            decisions=decisions,
            batches=DecisionBatches(ledger, execution, runs, decisions),
            actions=ActionCommands(ledger, execution, answers, runs),
        )

    def close(self) -> None:
        self.decisions.close()
