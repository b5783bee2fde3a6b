"""Group commit: concurrent saves share a transaction, and every request still gets
exactly its own answer, after its own events have committed. With a fake store, no
database (the same through the ledger: tests/integration/test_group_commit_ledger.py)."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import pytest
from eventsourcing.persistence import IntegrityError, OperationalError

from application.group_commit import CommitterClosed, GroupCommitter

# --- With a fake store: the committer's own rules -------------------------------------------------


@dataclass
class FakeEvent:
    originator_id: uuid.UUID
    originator_version: int = 1


@dataclass
class FakeRecording:
    domain_event: FakeEvent
    position: int


@dataclass
class FakeAggregate:
    name: str
    id: uuid.UUID = field(default_factory=uuid.uuid4)
    pending_events: list[FakeEvent] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.pending_events.append(FakeEvent(self.id))


class FakeStore:
    """Saves all or nothing; refuses any transaction that holds a 'conflicting' aggregate,
    and fails every transaction while 'down'."""

    def __init__(self) -> None:
        self.committed: list[str] = []
        self.transactions = 0
        self.down = False
        self.lock = threading.Lock()
        self.release = threading.Event()
        self.release.set()
        self.entered = threading.Event()

    def save(self, *aggregates: FakeAggregate) -> list[FakeRecording]:
        self.entered.set()
        self.release.wait()
        with self.lock:
            if self.down:
                raise OperationalError("the database went away")
            if any(aggregate.name.startswith("conflicting") for aggregate in aggregates):
                raise IntegrityError("duplicate key")
            recordings = []
            for aggregate in aggregates:
                events, aggregate.pending_events[:] = list(aggregate.pending_events), []
                for event in events:
                    self.committed.append(aggregate.name)
                    recordings.append(FakeRecording(event, len(self.committed)))
            self.transactions += 1
            return recordings


Submit = Callable[[GroupCommitter, Sequence[FakeAggregate]], dict[str, Any]]


def from_threads(committer: GroupCommitter, aggregates: Sequence[FakeAggregate]) -> dict[str, Any]:
    """Each aggregate saved from its own thread, all at once; its answer or its error."""
    answers: dict[str, Any] = {}

    def one(aggregate: FakeAggregate) -> None:
        try:
            answers[aggregate.name] = committer.save(aggregate)
        except Exception as error:
            answers[aggregate.name] = error

    with ThreadPoolExecutor(len(aggregates)) as pool:
        list(pool.map(one, aggregates))
    return answers


def from_coroutines(committer: GroupCommitter, aggregates: Sequence[FakeAggregate]) -> dict[str, Any]:
    """Each aggregate saved by a coroutine of its own on one event loop (as the API does)."""

    async def all_at_once() -> list[Any]:
        saves = (committer.save_async(aggregate) for aggregate in aggregates)
        return await asyncio.gather(*saves, return_exceptions=True)

    answers = asyncio.run(all_at_once())
    return {aggregate.name: answer for aggregate, answer in zip(aggregates, answers, strict=True)}


@pytest.fixture(params=[from_threads, from_coroutines], ids=["threads", "coroutines"])
def submit_all(request: pytest.FixtureRequest) -> Submit:
    return request.param


def test_concurrent_saves_share_transactions_and_each_gets_its_own_recordings(submit_all: Submit) -> None:
    # The store is held back while 20 requests queue up behind the first.
    store = FakeStore()
    store.release.clear()
    committer = GroupCommitter(store.save)
    aggregates = [FakeAggregate(f"decision-{number}") for number in range(20)]
    releaser = threading.Timer(0.3, store.release.set)
    releaser.start()

    answers = submit_all(committer, aggregates)

    # Fewer transactions than requests, and each answer is about its own aggregate.
    assert store.transactions < len(aggregates)
    for aggregate in aggregates:
        recordings = answers[aggregate.name]
        assert [recording.domain_event.originator_id for recording in recordings] == [aggregate.id]
    assert sorted(store.committed) == sorted(aggregate.name for aggregate in aggregates)
    committer.close()


def test_a_conflict_inside_a_group_fails_only_its_own_request(submit_all: Submit) -> None:
    # One conflicting request queues up among good ones.
    store = FakeStore()
    store.release.clear()
    committer = GroupCommitter(store.save)
    aggregates = [FakeAggregate(f"decision-{number}") for number in range(10)]
    aggregates.insert(5, FakeAggregate("conflicting-decision"))
    threading.Timer(0.3, store.release.set).start()

    answers = submit_all(committer, aggregates)

    # The conflicting request gets the conflict; every other one is committed and answered.
    assert isinstance(answers["conflicting-decision"], IntegrityError)
    good = [aggregate for aggregate in aggregates if aggregate.name != "conflicting-decision"]
    for aggregate in good:
        assert answers[aggregate.name][0].domain_event.originator_id == aggregate.id
    assert sorted(store.committed) == sorted(aggregate.name for aggregate in good)
    committer.close()


def test_a_database_failure_reaches_every_member_and_nothing_is_acknowledged(submit_all: Submit) -> None:
    # The database fails while a group is being committed.
    store = FakeStore()
    store.down = True
    committer = GroupCommitter(store.save)
    aggregates = [FakeAggregate(f"decision-{number}") for number in range(8)]

    answers = submit_all(committer, aggregates)

    # Every request learns of the failure; none was told its write committed.
    assert all(isinstance(answers[aggregate.name], OperationalError) for aggregate in aggregates)
    assert store.committed == []
    committer.close()


def test_members_known_to_conflict_are_failed_before_the_group_is_written(submit_all: Submit) -> None:
    # The precheck says one member's token was accepted already (another process answered it).
    store = FakeStore()
    store.release.clear()
    committer = GroupCommitter(
        store.save,
        precheck=lambda groups: {
            index for index, members in enumerate(groups) if members[0].name == "already-accepted"
        },
    )
    aggregates = [FakeAggregate(f"decision-{number}") for number in range(6)]
    aggregates.append(FakeAggregate("already-accepted"))
    threading.Timer(0.3, store.release.set).start()

    answers = submit_all(committer, aggregates)

    # It fails alone; the others still share their transactions.
    assert isinstance(answers["already-accepted"], IntegrityError)
    assert "already-accepted" not in store.committed
    assert store.transactions < 6
    assert all(not isinstance(answers[aggregate.name], Exception) for aggregate in aggregates[:6])
    committer.close()


def test_two_writes_of_one_aggregate_never_share_a_group(submit_all: Submit) -> None:
    # A redelivery's write of the same aggregate queues up beside its first delivery's.
    store = FakeStore()
    store.release.clear()
    committer = GroupCommitter(store.save)
    aggregates = [FakeAggregate(f"decision-{number}") for number in range(6)]
    twin = FakeAggregate("decision-2-again", id=aggregates[2].id)
    groups: list[list[uuid.UUID]] = []
    save = store.save

    def recorded_save(*members: FakeAggregate) -> list[FakeRecording]:
        groups.append([member.id for member in members])
        return save(*members)

    committer._save = recorded_save
    threading.Timer(0.3, store.release.set).start()

    answers = submit_all(committer, [*aggregates, twin])

    # Every write was committed (the fake store does not refuse the twin), never in a
    # transaction with the other write of its aggregate, and groups still formed.
    assert all(len(ids) == len(set(ids)) for ids in groups), groups
    assert sorted(store.committed) == sorted([*(a.name for a in aggregates), "decision-2-again"])
    assert not any(isinstance(answer, Exception) for answer in answers.values())
    assert store.transactions < len(aggregates) + 1
    committer.close()


def test_a_cancelled_coroutine_does_not_undo_the_commit_it_queued() -> None:
    # The client goes away while its save waits for a held transaction.
    store = FakeStore()
    store.release.clear()
    committer = GroupCommitter(store.save)

    async def abandon() -> None:
        waiting = asyncio.ensure_future(committer.save_async(FakeAggregate("abandoned")))
        # Its transaction has begun (and is held) before the client goes.
        assert await asyncio.to_thread(store.entered.wait, 10)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting

    asyncio.run(abandon())
    store.release.set()
    committer.close()

    # What was queued is committed all the same (the ledger's answer cache and receipts
    # then answer the client's retry as a replay), and the committer survived the closed loop.
    assert store.committed == ["abandoned"]


def test_a_save_after_close_is_refused_not_stranded(submit_all: Submit) -> None:
    store = FakeStore()
    committer = GroupCommitter(store.save)
    submit_all(committer, [FakeAggregate("before-close")])

    committer.close()
    answers = submit_all(committer, [FakeAggregate("after-close")])

    # What was queued before the close was committed; what came after is refused at once.
    assert isinstance(answers["after-close"], CommitterClosed)
    assert store.committed == ["before-close"]
