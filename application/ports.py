"""The ledger's index: a port the application needs and each back end's recorder implements.

Its tables are written in the same transaction as the events.

The library stores events; these tables make the questions the ledger must answer
cheap, and they are derived only from the events being saved:

- positions: every event's notification position, run and knowledge time. Knowledge
  time is taken under the writers' lock and never goes backwards, so "as of a time"
  maps to exactly one position.
- tokens: every idempotency token ever accepted, with the fingerprint of its command
  and the event it produced. Its primary key makes a token execute once, even across
  aggregates and processes.
- basis: the membership of each run's admitted inputs. A million inputs never sit in
  the Run aggregate's memory; its primary key refuses a second admission.
- seals: the (run, attempt) pairs that are sealed. Every decision and action event is
  saved with a gate that refuses it, inside the transaction, if its run attempt was
  sealed meanwhile: a command racing a seal lands before it or not at all.

All of them, and the events table, refuse UPDATE, DELETE and TRUNCATE.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import NamedTuple, Protocol
from uuid import UUID


@dataclass(frozen=True)
class LedgerIndexRows:
    """What one transaction adds to the index tables."""

    events: list[tuple[UUID, int, str]] = field(default_factory=list)
    """(originator_id, originator_version, run_id) of each event saved."""
    tokens: list[tuple[str, str, UUID | None, int | None, str | None]] = field(default_factory=list)
    """(token, fingerprint, originator_id, originator_version, stored_response)."""
    basis: list[tuple[str, str]] = field(default_factory=list)
    """(run_id, input_id) newly admitted."""
    seals: list[tuple[str, int]] = field(default_factory=list)
    """(run_id, attempt) sealed by this transaction."""
    gates: list[tuple[str, int]] = field(default_factory=list)
    """(run_id, attempt) that must still be unsealed when this transaction commits."""


@dataclass(frozen=True)
class TokenReceipt:
    token: str
    fingerprint: str
    originator_id: UUID | None
    originator_version: int | None
    position: int | None
    stored_response: str | None
    #: When the event the token produced became known (None for a batch's own token).
    recorded_at: datetime | None = None


@dataclass(frozen=True)
class EventPosition:
    position: int
    originator_id: UUID
    originator_version: int
    run_id: str
    topic: str
    recorded_at: datetime


class StoredRow(NamedTuple):
    """A stored event as it is stored (its position is `id`, as on a Notification)."""

    id: int
    originator_id: UUID | str
    originator_version: int
    topic: str
    state: bytes


class LoggedEvent(NamedTuple):
    """A stored event, as stored, with its index row: what a projection reads of the log.
    It serves as the event's position and as its stored form (what the library's mapper
    decodes)."""

    position: int
    originator_id: UUID | str
    originator_version: int
    topic: str
    state: bytes
    run_id: str
    #: When the event became known, as fixed-width UTC text (how the views store it).
    recorded_text: str


def with_index_rows(rows: list[LoggedEvent]) -> list[LoggedEvent]:
    """The rows, refused if an event has no index row (the log and its index disagree)."""
    for row in rows:
        if row.run_id is None:
            raise LookupError(f"no index row for position {row.position}")
    return rows


class LedgerIndex(ABC):
    """Queries over the index tables, implemented by each back end's recorder."""

    #: Whether reading the log is work done in this process, holding the GIL for most of
    #: it (an embedded database): then a thread reading ahead only takes the GIL from the
    #: reader's consumer, which loses it again at every statement it steps.
    reads_in_process: bool = False

    @abstractmethod
    def last_knowledge_time(self) -> datetime | None:
        """The knowledge time of this thread's last successful write."""

    @abstractmethod
    def protect(self, table: str) -> None:
        """Make another table refuse UPDATE, DELETE (and TRUNCATE)."""

    @abstractmethod
    def admitted_among(self, run_id: str, input_ids: Sequence[str]) -> set[str]:
        """Which of these input IDs the run has already admitted."""

    @abstractmethod
    def token_receipt(self, token: str) -> TokenReceipt | None:
        """The receipt of an accepted token, if any."""

    @abstractmethod
    def token_receipts(self, tokens: Sequence[str]) -> dict[str, TokenReceipt]:
        """The receipts of those of these tokens that were accepted."""

    @abstractmethod
    def insert_token_response(self, token: str, fingerprint: str, response: str) -> None:
        """Remember the answer to a command that produced no event of its own."""

    @abstractmethod
    def event_position(self, originator_id: UUID, originator_version: int) -> EventPosition | None:
        """Where and when an aggregate's event was recorded."""

    @abstractmethod
    def version_at(self, originator_id: UUID, position: int) -> int | None:
        """An aggregate's latest version at or before a position."""

    @abstractmethod
    def position_at(self, moment: datetime) -> int | None:
        """The last position recorded at or before a moment."""

    @abstractmethod
    def head_position(self) -> int:
        """The last position recorded, or 0."""

    @abstractmethod
    def count_run_events(self, run_id: str, up_to: int) -> int:
        """How many events a run has at or before a position."""

    @abstractmethod
    def count_after(self, position: int) -> int:
        """How many events were recorded after a position."""

    @abstractmethod
    def events_between(self, after: int, up_to: int | None, limit: int) -> list[EventPosition]:
        """Index rows in position order, for walking the whole log."""

    @abstractmethod
    def stored_events_between(self, after: int, up_to: int | None, limit: int) -> list[StoredRow]:
        """The stored events in position order, as they are stored: what a verifier
        reads, without the library's objects (half the cost of select_notifications)."""

    @abstractmethod
    def logged_events_between(self, after: int, up_to: int | None, limit: int) -> list[LoggedEvent]:
        """The stored events in position order, each with its index row, in one query:
        what the projections read of the log."""


# --- First answers the API replays byte for byte ---------------------------------------

#: (principal, path, idempotency key)
AnswerKey = tuple[str, str, bytes]


@dataclass(frozen=True)
class StoredAnswer:
    body_digest: bytes
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes
    #: The route's path template, for the metrics' route label.
    route_path: str | None

    @property
    def size(self) -> int:
        return len(self.body) + sum(len(name) + len(value) for name, value in self.headers) + 256


class AnswerStore(Protocol):
    max_bytes: int

    def get(self, key: AnswerKey) -> StoredAnswer | None: ...

    def put(self, key: AnswerKey, answer: StoredAnswer) -> None: ...

    def close(self) -> None: ...
