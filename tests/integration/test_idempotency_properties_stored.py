"""Property tests through the application, on both back ends: duplicates never change
the event count, and a token reused for any other request writes nothing.

Hypothesis draws the scripts of tests/support/command_scripts.py; each example runs on a
fresh database of the `database_url` fixture's back end (a SQLite file, or a PostgreSQL
schema of its own), so examples never see each other's events.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from application.ledger import DecisionLedger
from domain.commands import (
    AdmitInputs,
    CloseRun,
    Command,
    CommitAction,
    CorrectDecision,
    FailAction,
    ModelRef,
    OpenRun,
    RecordDecision,
    RequestAction,
    WaiveAction,
)
from domain.errors import IdempotencyKeyReused
from infrastructure.database import parse_database_url
from tests.support.command_scripts import (
    RUN_IDS,
    Delivery,
    InMemoryLedger,
    changed_payloads,
    scripts,
    scripts_with_duplicates,
)
from tests.support.databases import fresh_database_like
from tests.support.ledger_commands import commands_of

#: Each example builds a ledger on a database of its own. The `database_url` fixture only
#: names the back end, so sharing it between examples is what is meant.
application_settings = settings(
    max_examples=25,
    deadline=None,
    database=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.function_scoped_fixture,
    ],
)


def send(ledger: DecisionLedger, command: Command) -> Any:
    commands = commands_of(ledger)
    route: dict[type[Command], Callable[[Any], Any]] = {
        OpenRun: commands.runs.open,
        AdmitInputs: commands.runs.admit,
        RecordDecision: commands.decisions.record,
        CorrectDecision: commands.decisions.correct,
        RequestAction: commands.actions.request,
        CommitAction: commands.actions.commit,
        FailAction: commands.actions.fail,
        WaiveAction: commands.actions.waive,
    }
    return route[type(command)](command)


@application_settings
@given(scripts_with_duplicates(max_steps=12))
def test_duplicates_never_change_the_event_count_of_a_stored_ledger(
    database_url: str,
    script_and_deliveries: tuple[list[Command], list[Delivery]],
) -> None:
    script, deliveries = script_and_deliveries

    # The domain alone says how many events the script makes.
    deduplicated = InMemoryLedger()
    for command in script:
        deduplicated.handle(command)

    # A fresh ledger receives the script with its duplicates.
    with fresh_database_like(database_url) as url:
        ledger = DecisionLedger(env=parse_database_url(url).library_env())
        try:
            answers = [(send(ledger, command), is_duplicate) for command, is_duplicate in deliveries]
            # Counted, not read off the head position: PostgreSQL leaves a gap in the
            # positions where a duplicate's insert was rolled back.
            stored_events = len(ledger.recorder.select_notifications(start=1, limit=10_000))
            indexed_events = ledger.index.count_after(0)
        finally:
            ledger.close()

    # Every duplicate was answered as a replay, every first delivery as new work ...
    assert [answer.replayed for answer, _ in answers] == [is_duplicate for _, is_duplicate in answers]

    # ... and the ledger holds exactly the events of the script alone.
    assert stored_events == indexed_events == len(deduplicated.saved_events)


@application_settings
@given(scripts(max_steps=8), st.data())
def test_a_token_reused_for_any_other_request_writes_nothing_to_a_stored_ledger(
    database_url: str, script: list[Command], data: st.DataObject
) -> None:
    # The other request may even name another aggregate: only the token table knows.
    reused = data.draw(st.sampled_from(script), label="reused")
    elsewhere = RecordDecision(
        token=reused.token,
        actor="scorer",
        run_id=RUN_IDS[0],
        input_id="input-elsewhere",
        outcome="approve",
        model=ModelRef("scorecard", "7"),
    )
    # The application has no close command yet, so closes are left to the domain property.
    candidates = [c for c in changed_payloads(reused) if not isinstance(c, CloseRun)]
    changed = data.draw(st.sampled_from([*candidates, elsewhere]), label="changed")

    with fresh_database_like(database_url) as url:
        ledger = DecisionLedger(env=parse_database_url(url).library_env())
        try:
            # The script runs, then the changed request arrives under a used token.
            for command in script:
                send(ledger, command)
            head_before = ledger.index.head_position()
            refused = False
            try:
                send(ledger, changed)
            except IdempotencyKeyReused:
                refused = True
            head_after = ledger.index.head_position()
        finally:
            ledger.close()

    # It is refused as a reused key, and the log did not grow.
    assert refused, f"{type(changed).__name__} under a used token was accepted"
    assert head_after == head_before
