"""Group commit through the ledger, on both back ends: concurrent decisions with
duplicates and conflicts each get their own answer, from threads and on the event loop,
and across two processes sharing one database."""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from application.ledger import DecisionLedger
from domain.commands import CloseRun, ModelRef, OpenRun, RecordDecision
from domain.decision import Decision
from domain.errors import DecisionAlreadyRecorded, RunNotOpen
from infrastructure.database import parse_database_url
from tests.support.ledger_commands import commands_of


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

    started, closing = threading.Event(), threading.Event()

    def slow_load_run(run_id: str) -> Any:
        started.set()
        assert closing.wait(10)
        time.sleep(0.1)  # a slow load: the close has to wait for it
        return load_run(run_id)

    ledger.load_run = slow_load_run  # type: ignore[method-assign]
    decisions = commands_of(ledger).decisions
    running = decisions._checked_paths.submit(decisions.record, decision_command("txn-1", "key-1"))
    assert started.wait(10)

    # Closing waits for it, and it is answered: its save is not stranded behind the close.
    def close_as_the_service_does() -> None:
        closing.set()
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
