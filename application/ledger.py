"""The decision ledger's persistence: one eventsourcing Application for runs, decisions
and actions, with the ledger's index rows saved in the events' own transaction.

This module stores and loads; it decides nothing. The command handlers
(`application/commands/`) load aggregates through it, let them decide and save
them back; the queries (`application/queries/`) read through it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar, TypeVar, cast
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, Application, project_aggregate
from eventsourcing.persistence import Recording
from eventsourcing.utils import Environment, EnvType

from application.caching import BoundedLRU
from application.group_commit import GroupCommitter
from application.index_rows import TokenAnswer, index_rows_for
from application.ports import LedgerIndex, TokenReceipt
from application.stored_form import StoredFormRefused
from domain import errors
from domain.clock import Clock, system_clock
from domain.identity import run_uuid
from domain.ledger_aggregate import LedgerAggregate
from domain.run import Run

AggregateT = TypeVar("AggregateT", bound=LedgerAggregate)


@dataclass(frozen=True)
class LedgerTuning:
    """How the ledger trades memory and threads for speed (Settings fills it in)."""

    #: Concurrent saves in one process share a transaction.
    group_commit: bool = True
    #: Threads for commands that must wait on the database (follows the pool size).
    command_threads: int = 16
    #: How often a command that lost a race runs again before giving up.
    max_command_attempts: int = 12
    #: Recent answers, by token, replayed without touching the database.
    answer_cache_entries: int = 20_000
    #: When recently saved events became known, so answers need no second query.
    known_times_entries: int = 50_000
    #: Runs this process believes open, with their attempt.
    open_runs_entries: int = 10_000
    #: Receipts a group's precheck found, kept for the retries that follow it.
    found_receipts_entries: int = 10_000


class DecisionLedger(Application[UUID]):
    name = "DecisionLedger"
    snapshotting_intervals: ClassVar = {Run: 20}
    env: ClassVar = {
        "AGGREGATE_CACHE_MAXSIZE": "5000",
        "DEEPCOPY_FROM_AGGREGATE_CACHE": "y",
        # States are stored as canonical JSON: the audit chain hashes them as stored.
        "TRANSCODER_TOPIC": "application.stored_form:CanonicalJSONTranscoder",
    }

    def __init__(
        self,
        env: EnvType | None = None,
        *,
        tuning: LedgerTuning | None = None,
        clock: Clock = system_clock,
    ) -> None:
        self.refuse_other_stored_forms(env)
        super().__init__(env)
        self.tuning = tuning or LedgerTuning()
        self.clock = clock
        if self.snapshots is not None:
            # Snapshots are derived, but the application trusts them: keep them unrewritable.
            self.index.protect(self.snapshots.recorder.events_table_name)  # type: ignore[attr-defined]
        self.saved_listeners: list[Callable[[list[Recording[UUID]]], None]] = []
        self.known_times: BoundedLRU[tuple[UUID, int], datetime] = BoundedLRU(self.tuning.known_times_entries)
        # Which attempt each run this process believes open is in. A stale belief is
        # harmless: the seal gate refuses the write and the retry reloads the run.
        self.open_runs: BoundedLRU[str, int] = BoundedLRU(self.tuning.open_runs_entries)
        # Receipts never change once written: those a group's precheck found are kept for
        # the retries that follow it (redeliveries first answered by another process).
        self._found_receipts: BoundedLRU[str, TokenReceipt] = BoundedLRU(self.tuning.found_receipts_entries)
        self.committer = (
            GroupCommitter(self.save, precheck=self._accepted_already) if self.tuning.group_commit else None
        )

    @classmethod
    def refuse_other_stored_forms(cls, env: EnvType | None) -> None:
        """Refuse, before anything is opened, a configuration under which the library
        would encrypt or compress the events' states (read as the application reads them:
        the process's environment, then `env`)."""
        settings = Environment(cls.name, {**os.environ, **(env or {})})
        named = [key for key in ("CIPHER_TOPIC", "COMPRESSOR_TOPIC") if settings.get(key)]
        if named:
            raise StoredFormRefused(
                "the ledger stores events as canonical JSON (the audit chain hashes them as"
                f" stored, and the views read them so): unset {' and '.join(named)}"
            )

    @property
    def index(self) -> LedgerIndex:
        return cast(LedgerIndex, self.recorder)

    def close(self) -> None:
        if getattr(self, "committer", None) is not None:
            self.committer.close()  # type: ignore[union-attr]
        super().close()

    # --- Saving: the index rows ride in the events' transaction ----------------------

    def save(self, *objs: Any, **kwargs: Any) -> list[Recording[UUID]]:
        return self.save_with_answer(objs, answers=())

    def save_with_answer(
        self, aggregates: Sequence[LedgerAggregate], answers: Sequence[TokenAnswer]
    ) -> list[Recording[UUID]]:
        """Save the aggregates' new events, and remember answers to commands that
        produced no event of their own (a batch's token), in one transaction."""
        pending = [event for aggregate in aggregates for event in aggregate.pending_events]
        if not pending:
            # Nothing to append: the answers are remembered on their own (on every back end).
            for answer in answers:
                self.index.insert_token_response(answer.token, answer.fingerprint, answer.answer)
            return []
        for domain_event in pending:
            if isinstance(domain_event, Run.Event):
                self.open_runs.discard(domain_event.run_id)
        recordings = super().save(*aggregates, ledger_index=index_rows_for(pending, answers))
        known_at = self.index.last_knowledge_time()
        if known_at is not None:
            self.known_times.put_many(
                ((recording.domain_event.originator_id, recording.domain_event.originator_version), known_at)
                for recording in recordings
            )
        for listener in self.saved_listeners:
            listener(recordings)
        return recordings

    def commit(self, *aggregates: LedgerAggregate) -> list[Recording[UUID]]:
        """Save, through the group committer when there is one."""
        if self.committer is not None:
            return self.committer.save(*aggregates)
        return self.save(*aggregates)

    def _accepted_already(self, groups: list[Sequence[LedgerAggregate]]) -> set[int]:
        """Which of these would-be saves carry a token the ledger already accepted (one query
        for a whole group: redeliveries that another process answered first)."""
        tokens_of = [
            {
                cast(LedgerAggregate.Event, event).token
                for aggregate in aggregates
                for event in aggregate.pending_events
            }
            for aggregates in groups
        ]
        accepted = self.index.token_receipts([token for tokens in tokens_of for token in tokens])
        self._found_receipts.put_many(accepted.items())
        return {index for index, tokens in enumerate(tokens_of) if not tokens.isdisjoint(accepted)}

    def receipt_of(self, token: str) -> TokenReceipt | None:
        """The receipt of a token, if an earlier delivery was accepted."""
        found = self._found_receipts.pop(token)
        return found if found is not None else self.index.token_receipt(token)

    # --- Loading -------------------------------------------------------------------------

    def find(self, aggregate_id: UUID, kind: type[AggregateT]) -> AggregateT | None:
        try:
            aggregate: Any = self.repository.get(aggregate_id)
        except AggregateNotFoundError:
            return None
        return aggregate if isinstance(aggregate, kind) else None

    def load(self, aggregate_id: UUID, kind: type[AggregateT], missing: type[errors.NotFound]) -> AggregateT:
        aggregate = self.find(aggregate_id, kind)
        if aggregate is None:
            raise missing(f"{kind.__name__.lower()} {aggregate_id} not found")
        return aggregate

    def load_run(self, run_id: str) -> Run:
        run = self.find(run_uuid(run_id), Run)
        if run is None:
            raise errors.RunNotFound(f"run {run_id!r} not found")
        return run

    def at_version(self, aggregate_id: UUID, kind: type[AggregateT], version: int) -> AggregateT:
        """An aggregate as it was at a version. Only runs have snapshots worth asking for."""
        aggregate: Any
        if kind is Run:
            aggregate = self.repository.get(aggregate_id, version=version)
        else:
            aggregate = project_aggregate(None, self.events.get(aggregate_id, lte=version))
        if not isinstance(aggregate, kind):
            raise AggregateNotFoundError(aggregate_id)
        return aggregate

    def load_as_of(
        self,
        aggregate_id: UUID,
        kind: type[AggregateT],
        missing: type[errors.NotFound],
        as_of_position: int | None,
    ) -> AggregateT:
        """An aggregate as the ledger knew it at a position (None: now)."""
        if as_of_position is None:
            return self.load(aggregate_id, kind, missing)
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
        if position is None:
            raise errors.NothingKnownYet(f"event {version} of {aggregate_id} is not in the log")
        return position.position

    def known_time(self, aggregate_id: UUID, version: int) -> datetime:
        """When an event became known: the knowledge time as_of reads by (from memory for
        this process's recent writes)."""
        known = self.known_times.get((aggregate_id, version))
        if known is not None:
            return known
        position = self.index.event_position(aggregate_id, version)
        if position is None:
            raise errors.NothingKnownYet(f"event {version} of {aggregate_id} is not in the log")
        self.known_times.put((aggregate_id, version), position.recorded_at)
        return position.recorded_at

    def seal_position(self, run: Run) -> int:
        """Where the run's current attempt was sealed."""
        if run.sealed_version is None:
            raise errors.RunNotSealed(f"run {run.run_id!r} is not sealed")
        return self.position_of(run.id, run.sealed_version)
