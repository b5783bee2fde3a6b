"""Idempotent execution: every command runs once per token, whatever the deliveries.

A command's handler is an `attempt(first)`: look the token up (a known token is a
replay), load the aggregates, let them decide, and save. A save that loses a race raises
the library's IntegrityError; the attempt then runs again from the top with full checks,
so it finds the winner's receipt and replays it, or meets the new state and raises the
typed error that state calls for. The first attempt is optimistic: a token already used
elsewhere makes its insert fail, and the retry checks the receipt.

This unit owns the answer cache, the receipt check and the retries.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Any, TypeVar
from uuid import UUID

from eventsourcing.persistence import IntegrityError

from application.answers import Answers
from application.caching import BoundedLRU
from application.group_commit import TokenAlreadyAccepted
from application.ledger import DecisionLedger
from application.ports import TokenReceipt
from application.results import CommandResult
from domain import errors
from domain.commands import Command
from domain.idempotency import require_same_request
from domain.ledger_aggregate import LedgerAggregate

ResultT = TypeVar("ResultT")
ViewT = TypeVar("ViewT")
AggregateT = TypeVar("AggregateT", bound=LedgerAggregate)
#: Turns an aggregate at a position into the result a command answers with.
Present = Callable[[AggregateT, int], ViewT]


class IdempotentExecution:
    def __init__(self, ledger: DecisionLedger, answers: Answers) -> None:
        self.ledger = ledger
        self.answers = answers
        self._recent: BoundedLRU[str, tuple[str, CommandResult[Any]]] = BoundedLRU(
            ledger.tuning.answer_cache_entries
        )

    def execute(
        self, command: Command, attempt: Callable[[bool], CommandResult[ViewT]]
    ) -> CommandResult[ViewT]:
        """Run a command once per token. A recent answer is replayed from memory (answers
        never change); otherwise the attempt runs, with retries."""
        recalled = self.recall(command)
        if recalled is not None:
            return recalled
        result = self.with_retries(attempt)
        self.remember(command, result)
        return result

    def with_retries(self, attempt: Callable[[bool], ResultT]) -> ResultT:
        """Run an attempt; after a lost race (IntegrityError), run it again with full checks."""
        attempts = self.ledger.tuning.max_command_attempts
        for attempt_number in range(1, attempts + 1):
            try:
                return attempt(attempt_number == 1)
            except IntegrityError as error:
                if attempt_number == attempts:
                    raise
                # A redelivery finds its receipt at once; after a lost race, back off a little.
                if not isinstance(error, TokenAlreadyAccepted):
                    time.sleep(random.uniform(0, 0.002 * attempt_number))
        raise AssertionError("unreachable")

    # --- Answers already given -------------------------------------------------------------

    def recall(self, command: Command) -> CommandResult[Any] | None:
        """This process's recent answer to the command's token, if any."""
        entry = self._recent.get(command.token)
        if entry is None:
            return None
        fingerprint, answer = entry
        require_same_request(fingerprint, command.fingerprint)
        return answer

    def remember(self, command: Command, answer: CommandResult[Any]) -> None:
        replay = CommandResult(answer.view, answer.version, answer.position, True)
        self._recent.put(command.token, (command.fingerprint, replay))

    def receipt(self, command: Command) -> TokenReceipt | None:
        """The receipt of this command's token, if an earlier delivery was accepted."""
        receipt = self.ledger.receipt_of(command.token)
        if receipt is not None:
            require_same_request(receipt.fingerprint, command.fingerprint)
        return receipt

    # --- Results -----------------------------------------------------------------------------

    def saved(self, aggregate: AggregateT, present: Present[AggregateT, ViewT]) -> CommandResult[ViewT]:
        """Save what the aggregate decided, and answer with it."""
        recordings = self.ledger.commit(aggregate)
        position = recordings[-1].notification.id
        return CommandResult(present(aggregate, position), aggregate.version, position, False)

    def replayed(
        self, receipt: TokenReceipt, kind: type[AggregateT], present: Present[AggregateT, ViewT]
    ) -> CommandResult[ViewT]:
        """The answer an accepted token produced, rebuilt at the version it produced."""
        if receipt.originator_id is None or receipt.originator_version is None:
            raise errors.IdempotencyKeyReused("this idempotency key was used for another command")
        if receipt.recorded_at is not None:
            self.ledger.known_times.put(
                (receipt.originator_id, receipt.originator_version), receipt.recorded_at
            )
        aggregate = self.ledger.at_version(receipt.originator_id, kind, receipt.originator_version)
        position = receipt.position or self.ledger.position_of(aggregate.id, aggregate.version)
        return CommandResult(present(aggregate, position), aggregate.version, position, True)

    def answered_at(
        self,
        aggregate_id: UUID,
        kind: type[AggregateT],
        version: int,
        present: Present[AggregateT, ViewT],
        *,
        replayed: bool = True,
    ) -> CommandResult[ViewT]:
        """The answer as of an earlier version (a replay found in the aggregate itself)."""
        aggregate = self.ledger.at_version(aggregate_id, kind, version)
        position = self.ledger.position_of(aggregate_id, version)
        return CommandResult(present(aggregate, position), version, position, replayed)
