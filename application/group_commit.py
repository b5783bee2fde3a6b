"""Group commit: concurrent saves in one process share one transaction.

Every request still gets exactly its own answer, and only after the transaction that
holds its events has committed. The committer does not wait to fill a group: it takes
whatever queued up while the previous transaction was committing, so a lone request
pays no extra latency and a busy process amortises each commit over many requests.

If a group's transaction fails on a conflict (IntegrityError), its members are saved
one by one, so one bad command never fails its neighbours: each gets its own result or
its own error. Two writes of one aggregate never share a group (the later one waits for
the next), so a redelivery racing its first delivery fails alone.

A caller on an event loop awaits `save_async`: the committer wakes its loop when the
group has committed, so the request needs no worker thread of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from eventsourcing.persistence import IntegrityError, InterfaceError, OperationalError, Recording

Save = Callable[..., list[Recording[UUID]]]
#: Which members of a group would conflict (by index), found cheaply before writing.
Precheck = Callable[[list[Sequence[Any]]], set[int]]


class TokenAlreadyAccepted(IntegrityError):
    """The command's token is already in the ledger: a redelivery, not a race to back off from."""


class CommitterClosed(OperationalError):
    """The ledger is closing: this save was not made (the API answers 503, retry)."""


@dataclass
class _Pending:
    aggregates: Sequence[Any]
    done: threading.Event = field(default_factory=threading.Event)
    recordings: list[Recording[UUID]] = field(default_factory=list)
    error: BaseException | None = None
    #: Called (in the committer's thread) once the outcome is known.
    on_done: Callable[[], None] | None = None

    def finish(self) -> None:
        self.done.set()
        if self.on_done is not None:
            self.on_done()

    def outcome(self) -> list[Recording[UUID]]:
        if self.error is not None:
            raise self.error
        return self.recordings


class GroupCommitter:
    def __init__(
        self,
        save: Save,
        *,
        precheck: Precheck | None = None,
        max_group: int = 500,
        name: str = "group-commit",
    ) -> None:
        self._save = save
        self._precheck = precheck
        self._max_group = max_group
        self._queue: queue.SimpleQueue[_Pending | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._started = False
        self._closed = False
        # Queueing and closing take turns, so nothing is ever queued behind the close.
        self._lifecycle_lock = threading.Lock()
        #: How many transactions and requests went through (for metrics and tests).
        self.transactions = 0
        self.requests = 0

    def save(self, *aggregates: Any) -> list[Recording[UUID]]:
        """Save these aggregates in the next group; block until it has committed."""
        pending = _Pending(aggregates)
        self._enqueue(pending)
        pending.done.wait()
        return pending.outcome()

    async def save_async(self, *aggregates: Any) -> list[Recording[UUID]]:
        """`save` for a coroutine: the event loop goes on serving while the group commits."""
        loop = asyncio.get_running_loop()
        committed = loop.create_future()

        def wake() -> None:
            with contextlib.suppress(RuntimeError):  # the loop has closed: nobody is waiting
                loop.call_soon_threadsafe(_resolve, committed)

        pending = _Pending(aggregates, on_done=wake)
        self._enqueue(pending)
        # A cancelled caller (the client went away) does not stop the commit it queued.
        await asyncio.shield(committed)
        return pending.outcome()

    def close(self) -> None:
        """Commit what is queued, then refuse new saves (CommitterClosed)."""
        with self._lifecycle_lock:
            if self._closed:
                return
            self._closed = True
            if not self._started:
                return
            self._queue.put(None)
        self._thread.join(timeout=10)

    def _enqueue(self, pending: _Pending) -> None:
        with self._lifecycle_lock:
            if self._closed:
                raise CommitterClosed("the ledger is closing")
            if not self._started:
                self._thread.start()
                self._started = True
            self._queue.put(pending)

    def _run(self) -> None:
        waiting: list[_Pending] = []  # queued, or held back from the last group
        closing = False
        while True:
            if not waiting and not closing:
                first = self._queue.get()
                if first is None:
                    return
                waiting.append(first)
            while len(waiting) < self._max_group and not closing:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    closing = True
                else:
                    waiting.append(item)
            group, waiting = self._next_group(waiting)
            self._commit(group)
            if closing and not waiting:
                return

    def _next_group(self, waiting: list[_Pending]) -> tuple[list[_Pending], list[_Pending]]:
        """The members to commit together, in arrival order, and those held back for the
        next group: two writes of one aggregate (a redelivery racing its first delivery)
        would make the whole group's transaction fail."""
        group: list[_Pending] = []
        held_back: list[_Pending] = []
        seen: set[Any] = set()
        for pending in waiting:
            ids = {aggregate.id for aggregate in pending.aggregates}
            if len(group) < self._max_group and seen.isdisjoint(ids):
                group.append(pending)
                seen |= ids
            else:
                held_back.append(pending)
        return group, held_back

    def _commit(self, group: list[_Pending]) -> None:
        if len(group) > 1 and self._precheck is not None:
            # A member known to conflict would fail the whole group's transaction, and send
            # every member down the slow one-by-one path: fail it alone, up front.
            try:
                conflicting = self._precheck([pending.aggregates for pending in group])
            except (OperationalError, InterfaceError) as error:  # the database is unavailable:
                self._fail(group, error)  # the save would wait for it all over again
                return
            except Exception:  # the save itself will meet (and report) the same trouble
                conflicting = set()
            if conflicting:
                for index in sorted(conflicting):
                    group[index].error = TokenAlreadyAccepted("this command's token was already accepted")
                    group[index].finish()
                group = [pending for index, pending in enumerate(group) if index not in conflicting]
                self.requests += len(conflicting)
                if not group:
                    return
        self._commit_group(group)

    def _fail(self, group: list[_Pending], error: BaseException) -> None:
        self.requests += len(group)
        for pending in group:
            pending.error = error
            pending.finish()

    def _commit_group(self, group: list[_Pending]) -> None:
        # Saving collects (empties) each aggregate's pending events: keep a copy so a
        # failed group can give every member its events back and save it alone.
        pending_events = [[list(aggregate.pending_events) for aggregate in item.aggregates] for item in group]
        try:
            if len(group) == 1:
                group[0].recordings = self._save(*group[0].aggregates)
            else:
                recordings = self._save(*(aggregate for pending in group for aggregate in pending.aggregates))
                self._distribute(group, recordings)
            self.transactions += 1
        except IntegrityError as error:
            if len(group) == 1:
                group[0].error = error
            else:
                self._one_by_one(group, pending_events)
        except BaseException as error:  # the database failed: every member learns it
            for pending in group:
                pending.error = error
        finally:
            self.requests += len(group)
            for pending in group:
                pending.finish()

    def _one_by_one(self, group: list[_Pending], pending_events: list[list[list[Any]]]) -> None:
        for pending, events_of_item in zip(group, pending_events, strict=True):
            for aggregate, events in zip(pending.aggregates, events_of_item, strict=True):
                aggregate.pending_events[:] = events
            try:
                pending.recordings = self._save(*pending.aggregates)
                self.transactions += 1
            except BaseException as error:
                pending.error = error

    @staticmethod
    def _distribute(group: list[_Pending], recordings: list[Recording[UUID]]) -> None:
        by_aggregate: dict[UUID, list[Recording[UUID]]] = {}
        for recording in recordings:
            by_aggregate.setdefault(recording.domain_event.originator_id, []).append(recording)
        for pending in group:
            pending.recordings = [
                recording
                for aggregate in pending.aggregates
                for recording in by_aggregate.get(aggregate.id, [])
            ]


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
