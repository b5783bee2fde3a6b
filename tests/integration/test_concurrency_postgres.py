"""Races on PostgreSQL: many writers send the same command at the same moment.

Each writer has an application instance of its own, with its own connection pool
and aggregate cache, which is as close to separate processes as threads get. A
barrier releases them together. Whatever the interleaving, one event lands and every
other writer gets the answer that event implies: a replay or a typed conflict.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from application.ledger import DecisionLedger
from application.results import CommandResult
from domain.commands import ModelRef, OpenRun, RecordDecision
from domain.errors import DecisionAlreadyRecorded, RunAlreadyExists
from domain.identity import decision_uuid, run_uuid
from infrastructure.database import parse_database_url
from tests.support.databases import PostgresSchema
from tests.support.ledger_commands import commands_of

pytestmark = pytest.mark.postgres

WRITERS = 8
RUN_ID = "race-2024-06-01"
INPUT_ID = "applicant-17"


def decision_command(token: str, outcome: str = "approve") -> RecordDecision:
    return RecordDecision(
        token=token,
        actor="scorer",
        run_id=RUN_ID,
        input_id=INPUT_ID,
        outcome=outcome,
        model=ModelRef("scorecard", "7.1"),
    )


def open_command(token: str, lane: str = "credit") -> OpenRun:
    return OpenRun(token=token, actor="scheduler", run_id=RUN_ID, lane=lane)


@pytest.fixture
def writers(postgres_schema: PostgresSchema) -> Iterator[list[DecisionLedger]]:
    """One application instance per writer, all on the test's schema."""
    # Small pools: eight instances at the default five connections each would use a
    # large share of the server's connections when the suite runs in parallel.
    env = {**parse_database_url(postgres_schema.url).library_env(), "POSTGRES_POOL_SIZE": "2"}
    ledgers = [DecisionLedger(env=env) for _ in range(WRITERS)]
    try:
        yield ledgers
    finally:
        for ledger in ledgers:
            ledger.close()


def race(
    writers: list[DecisionLedger], send: Callable[[DecisionLedger, int], CommandResult[Any]]
) -> list[CommandResult[Any] | Exception]:
    """Every writer sends its command at once; each answer or error, in writer order."""
    start_together = threading.Barrier(len(writers))

    def writer(number: int) -> CommandResult[Any] | Exception:
        start_together.wait(timeout=30)
        try:
            return send(writers[number], number)
        except Exception as error:
            return error

    with ThreadPoolExecutor(max_workers=len(writers)) as pool:
        return list(pool.map(writer, range(len(writers))))


def recorded_decision_events(ledger: DecisionLedger) -> list[Any]:
    return list(ledger.events.get(decision_uuid(RUN_ID, INPUT_ID)))


# --- Decisions ---------------------------------------------------------------------


def test_the_same_decision_under_the_same_token_lands_once(writers: list[DecisionLedger]) -> None:
    # The run is open.
    commands_of(writers[0]).runs.open(open_command("open-1"))

    # Eight retries of one delivery arrive at once.
    answers = race(
        writers, lambda ledger, _: commands_of(ledger).decisions.record(decision_command("record-1"))
    )

    # Exactly one Recorded event landed, and the index agrees.
    assert [type(e).__name__ for e in recorded_decision_events(writers[0])] == ["Recorded"]
    assert writers[0].index.count_run_events(RUN_ID, 2**62) == 2

    # Everyone got the same decision at version 1; only one of them did the work.
    assert all(isinstance(answer, CommandResult) for answer in answers), answers
    assert {(answer.view.decision_id, answer.version) for answer in answers} == {
        (str(decision_uuid(RUN_ID, INPUT_ID)), 1)
    }
    assert sorted(answer.replayed for answer in answers) == [False] + [True] * (WRITERS - 1)


def test_the_same_decision_under_different_tokens_lands_once(
    writers: list[DecisionLedger],
) -> None:
    # The run is open.
    commands_of(writers[0]).runs.open(open_command("open-1"))

    # Eight clients send the same decision, each under a token of its own.
    answers = race(
        writers,
        lambda ledger, number: commands_of(ledger).decisions.record(decision_command(f"record-{number}")),
    )

    # Exactly one event landed.
    assert len(recorded_decision_events(writers[0])) == 1
    assert writers[0].index.count_run_events(RUN_ID, 2**62) == 2

    # Every answer shows that one decision; the other seven are replays of it.
    assert all(isinstance(answer, CommandResult) for answer in answers), answers
    assert all(answer.view == answers[0].view for answer in answers)
    assert sorted(answer.replayed for answer in answers) == [False] + [True] * (WRITERS - 1)


def test_different_decisions_for_one_input_leave_one_winner_and_conflicts(
    writers: list[DecisionLedger],
) -> None:
    # The run is open.
    commands_of(writers[0]).runs.open(open_command("open-1"))

    # Eight scorers disagree, each sending its own outcome at once.
    answers = race(
        writers,
        lambda ledger, number: commands_of(ledger).decisions.record(
            decision_command(f"record-{number}", outcome=f"outcome-{number}")
        ),
    )

    # Exactly one event landed, and one scorer won.
    [recorded] = recorded_decision_events(writers[0])
    [winner] = [answer for answer in answers if isinstance(answer, CommandResult)]
    assert (winner.replayed, winner.view.outcome) == (False, recorded.outcome)

    # Every other scorer was told a different decision is already recorded.
    losers = [answer for answer in answers if not isinstance(answer, CommandResult)]
    assert len(losers) == WRITERS - 1
    assert all(isinstance(loser, DecisionAlreadyRecorded) for loser in losers), losers


# --- Opening runs --------------------------------------------------------------------


def test_the_same_open_under_the_same_token_lands_once(writers: list[DecisionLedger]) -> None:
    # Eight retries of one open arrive at once.
    answers = race(writers, lambda ledger, _: commands_of(ledger).runs.open(open_command("open-1")))

    # Exactly one Opened event landed.
    assert [type(e).__name__ for e in writers[0].events.get(run_uuid(RUN_ID))] == ["Opened"]

    # Everyone sees the same run; only one of them opened it.
    assert all(isinstance(answer, CommandResult) for answer in answers), answers
    assert len({(answer.view.run_id, answer.version, answer.position) for answer in answers}) == 1
    assert sorted(answer.replayed for answer in answers) == [False] + [True] * (WRITERS - 1)


def test_the_same_open_under_different_tokens_lands_once(writers: list[DecisionLedger]) -> None:
    answers = race(
        writers, lambda ledger, number: commands_of(ledger).runs.open(open_command(f"open-{number}"))
    )

    assert len(list(writers[0].events.get(run_uuid(RUN_ID)))) == 1
    assert all(isinstance(answer, CommandResult) for answer in answers), answers
    assert all(answer.view == answers[0].view for answer in answers)
    assert sorted(answer.replayed for answer in answers) == [False] + [True] * (WRITERS - 1)


def test_opens_of_one_run_in_different_lanes_leave_one_winner_and_conflicts(
    writers: list[DecisionLedger],
) -> None:
    # Eight schedulers open the same run ID, each in a lane of its own.
    answers = race(
        writers,
        lambda ledger, number: commands_of(ledger).runs.open(
            open_command(f"open-{number}", lane=f"lane-{number}")
        ),
    )

    # One Opened event landed, for the winner's lane.
    [opened] = writers[0].events.get(run_uuid(RUN_ID))
    [winner] = [answer for answer in answers if isinstance(answer, CommandResult)]
    assert (winner.replayed, winner.view.lane) == (False, opened.lane)

    # The others were told the run already exists with other settings.
    losers = [answer for answer in answers if not isinstance(answer, CommandResult)]
    assert len(losers) == WRITERS - 1
    assert all(isinstance(loser, RunAlreadyExists) for loser in losers), losers
