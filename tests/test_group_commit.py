"""Group commit: concurrent saves share a transaction, and every request still gets
exactly its own answer, after its own events have committed."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import pytest
from eventsourcing.persistence import IntegrityError, OperationalError

from application.group_commit import GroupCommitter
from application.ledger import DecisionLedger
from domain.commands import ModelRef, OpenRun, RecordDecision
from domain.decision import Decision
from domain.errors import DecisionAlreadyRecorded

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

    def save(self, *aggregates: FakeAggregate) -> list[FakeRecording]:
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


def submit_all(committer: GroupCommitter, aggregates: Sequence[FakeAggregate]) -> dict[str, Any]:
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


def test_concurrent_saves_share_transactions_and_each_gets_its_own_recordings() -> None:
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


def test_a_conflict_inside_a_group_fails_only_its_own_request() -> None:
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


def test_a_database_failure_reaches_every_member_and_nothing_is_acknowledged() -> None:
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


def test_members_known_to_conflict_are_failed_before_the_group_is_written() -> None:
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


# --- Through the ledger, on both back ends --------------------------------------------------------


def decision_command(input_id: str, token: str, outcome: str = "approve") -> RecordDecision:
    return RecordDecision(
        token=token,
        actor="scorer",
        run_id="group-run",
        input_id=input_id,
        outcome=outcome,
        model=ModelRef("gbm", "7"),
    )


@pytest.mark.parametrize("threads", [24])
def test_concurrent_decisions_with_duplicates_and_conflicts_each_get_their_own_answer(
    ledger: DecisionLedger, threads: int
) -> None:
    # A run; then many scorers at once: new decisions, redeliveries, and conflicting outcomes.
    ledger.open_run(OpenRun(token="open", actor="operator", run_id="group-run", lane="fraud"))
    commands = [decision_command(f"txn-{number}", f"key-{number}") for number in range(60)]
    redeliveries = commands[:20]
    conflicts = [
        decision_command(f"txn-{number}", f"other-key-{number}", "decline") for number in range(20, 30)
    ]
    work = [*commands, *redeliveries, *conflicts]

    def send(command: RecordDecision) -> Any:
        try:
            return command, ledger.record_decision(command)
        except DecisionAlreadyRecorded as error:
            return command, error

    with ThreadPoolExecutor(threads) as pool:
        answers = list(pool.map(send, work))

    # Every answer is about the request's own input; conflicts lost to the first outcome only.
    for command, answer in answers:
        if isinstance(answer, DecisionAlreadyRecorded):
            assert command.outcome == "decline"
            continue
        assert answer.view.input_id == command.input_id
        assert answer.view.decision_id == str(Decision.create_id("group-run", command.input_id))
    # Exactly one event per input, and every acknowledged decision is in the store.
    for command in commands:
        stored = list(ledger.events.get(Decision.create_id("group-run", command.input_id)))
        assert len(stored) == 1
    assert ledger.index.count_after(0) == 1 + len(commands)
    # The committer really grouped requests.
    assert ledger.committer is not None
    assert ledger.committer.transactions < ledger.committer.requests
