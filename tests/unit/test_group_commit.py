"""Group commit: concurrent saves share a transaction, and every request still gets
exactly its own answer, after its own events have committed."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import pytest
from eventsourcing.persistence import IntegrityError, OperationalError

from application.group_commit import CommitterClosed, GroupCommitter
from application.ledger import DecisionLedger
from domain.commands import CloseRun, ModelRef, OpenRun, RecordDecision
from domain.decision import Decision
from domain.errors import DecisionAlreadyRecorded, RunNotOpen
from infrastructure.database import parse_database_url
from tests.ledger_commands import commands_of

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
        await asyncio.sleep(0.05)
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
    commands_of(ledger).runs.open(OpenRun(token="open", actor="operator", run_id="group-run", lane="fraud"))
    commands = [decision_command(f"txn-{number}", f"key-{number}") for number in range(60)]
    redeliveries = commands[:20]
    conflicts = [
        decision_command(f"txn-{number}", f"other-key-{number}", "decline") for number in range(20, 30)
    ]
    work = [*commands, *redeliveries, *conflicts]

    def send(command: RecordDecision) -> Any:
        try:
            return command, commands_of(ledger).decisions.record(command)
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


def test_decisions_on_the_event_loop_with_duplicates_and_conflicts_each_get_their_own_answer(
    ledger: DecisionLedger,
) -> None:
    # The run is open and this process knows it, so decisions are decided on the loop.
    commands_of(ledger).runs.open(OpenRun(token="open", actor="operator", run_id="group-run", lane="fraud"))
    commands_of(ledger).decisions.record(decision_command("txn-first", "key-first"))
    commands = [decision_command(f"txn-{number}", f"key-{number}") for number in range(60)]
    work = [*commands, *commands[:20]]
    work += [decision_command(f"txn-{number}", f"other-key-{number}", "decline") for number in range(20, 30)]

    async def send_all() -> list[Any]:
        return await asyncio.gather(
            *(commands_of(ledger).decisions.record_async(command) for command in work), return_exceptions=True
        )

    transactions_before = ledger.committer.transactions if ledger.committer else 0
    answers = asyncio.run(send_all())

    # Each answer is about its own input; a redelivery replays the first answer; only the
    # conflicting outcomes are refused.
    first_answers: dict[str, Any] = {}
    for command, answer in zip(work, answers, strict=True):
        if command.outcome == "decline":
            assert isinstance(answer, DecisionAlreadyRecorded), answer
            continue
        assert answer.view.input_id == command.input_id
        if command.input_id in first_answers:
            assert answer.replayed and answer.view == first_answers[command.input_id].view
        else:
            first_answers[command.input_id] = answer
    for command in commands:
        assert len(list(ledger.events.get(Decision.create_id("group-run", command.input_id)))) == 1
    assert ledger.index.count_after(0) == 2 + len(commands)
    assert ledger.committer is not None
    assert ledger.committer.transactions - transactions_before < len(commands)


@pytest.fixture
def second_process(database_url: str) -> Any:
    """Another ledger on the same database, as another API process would have."""
    other = DecisionLedger(env=parse_database_url(database_url).library_env())
    try:
        yield other
    finally:
        other.close()


def test_a_redelivery_answered_first_by_another_process_replays_on_the_loop(
    ledger: DecisionLedger, second_process: DecisionLedger
) -> None:
    # Both processes know the run is open; the first one records a decision.
    commands_of(ledger).runs.open(OpenRun(token="open", actor="operator", run_id="group-run", lane="fraud"))
    for process in (ledger, second_process):
        commands_of(process).decisions.record(
            decision_command(f"txn-known-{id(process)}", f"key-known-{id(process)}")
        )
    first = commands_of(ledger).decisions.record(decision_command("txn-1", "key-1"))
    written = ledger.index.head_position()

    # The redelivery reaches the other process: its optimistic write is refused, and the
    # answer is the first one, replayed; another payload under the key is refused.
    again = asyncio.run(
        commands_of(second_process).decisions.record_async(decision_command("txn-1", "key-1"))
    )

    assert again.replayed and again.view == first.view
    assert second_process.index.head_position() == written
    with pytest.raises(DecisionAlreadyRecorded):
        asyncio.run(
            commands_of(second_process).decisions.record_async(decision_command("txn-1", "key-2", "decline"))
        )


def test_closing_the_ledger_lets_commands_running_in_threads_finish(ledger: DecisionLedger) -> None:
    # A command is on its way in one of the ledger's threads, still loading its run.
    commands_of(ledger).runs.open(OpenRun(token="open", actor="operator", run_id="group-run", lane="fraud"))
    load_run = ledger.load_run

    def slow_load_run(run_id: str) -> Any:
        time.sleep(0.3)
        return load_run(run_id)

    ledger.load_run = slow_load_run  # type: ignore[method-assign]
    decisions = commands_of(ledger).decisions
    running = decisions._checked_paths.submit(decisions.record, decision_command("txn-1", "key-1"))
    time.sleep(0.05)

    # Closing waits for it, and it is answered: its save is not stranded behind the close.
    def close_as_the_service_does() -> None:
        decisions.close()
        ledger.close()

    closer = threading.Thread(target=close_as_the_service_does)
    closer.start()
    closer.join(timeout=10)
    assert not closer.is_alive()
    assert running.result(timeout=0).view.input_id == "txn-1"


def test_a_run_sealed_by_another_process_refuses_a_decision_on_the_loop(
    ledger: DecisionLedger, second_process: DecisionLedger
) -> None:
    # The second process believes the run open; the first one seals it.
    commands_of(ledger).runs.open(OpenRun(token="open", actor="operator", run_id="group-run", lane="fraud"))
    commands_of(second_process).decisions.record(decision_command("txn-0", "key-0"))
    commands_of(ledger).runs.seal(CloseRun(token="close", actor="operator", run_id="group-run"))
    written = ledger.index.head_position()

    # Its stale belief costs one refused write, then the run's real state answers, and
    # the belief is dropped: the next decision is not tried against the sealed attempt.
    with pytest.raises(RunNotOpen):
        asyncio.run(commands_of(second_process).decisions.record_async(decision_command("txn-1", "key-1")))
    assert second_process.index.head_position() == written
    assert second_process.open_runs.get("group-run") is None
