"""The base of every ledger aggregate: attribution and idempotency receipts."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from eventsourcing.domain import Aggregate

from domain.commands import Command
from domain.idempotency import require_same_request


class LedgerAggregate(Aggregate):
    """Remembers, for every token it accepted, the command's fingerprint and the version
    that token produced (`self.receipts`, set by each creation event). Receipts never
    expire, so a token is never executed twice."""

    if TYPE_CHECKING:  # set by each creation event; not a field of the created event
        #: token -> [fingerprint, version] of every command this aggregate accepted.
        receipts: dict[str, list[Any]]

    class Event(Aggregate.Event):
        """Every event says which run it belongs to, in which attempt, who issued it,
        and under which idempotency token."""

        run_id: str
        attempt: int
        actor: str
        token: str
        fingerprint: str

        def apply(self, aggregate: Any) -> None:
            aggregate.receipts[self.token] = [self.fingerprint, self.originator_version]

    def replayed_version(self, command: Command) -> int | None:
        """The version an earlier delivery of this command produced, or None if the
        token is new. A known token with another payload is refused."""
        receipt = self.receipts.get(command.token)
        if receipt is None:
            return None
        accepted_fingerprint, version = receipt
        require_same_request(accepted_fingerprint, command.fingerprint)
        return int(version)

    @staticmethod
    def attribution(command: Command, run_id: str, attempt: int) -> dict[str, Any]:
        """The fields every event of a command carries."""
        return {
            "run_id": run_id,
            "attempt": attempt,
            "actor": command.actor,
            "token": command.token,
            "fingerprint": command.fingerprint,
        }
