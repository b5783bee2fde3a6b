"""Property tests: duplicates never change state, and a reused token never passes.

Hypothesis writes scripts of valid commands (open runs, admit batches, record and
correct decisions, request actions and move them on), then delivers them again at
arbitrary later points: the same command redelivered, the same command from another
actor under the same token, or the same creation command under a fresh token.

These domain properties drive the aggregates through `InMemoryLedger`, a fake of the
application that routes each command to its aggregate by natural key (the scripts and
the fake: tests/support/command_scripts.py). The same scripts through the application,
on both back ends: tests/integration/test_idempotency_properties_stored.py.
"""

from __future__ import annotations

from hypothesis import given, settings

from domain.commands import (
    Command,
)
from domain.errors import IdempotencyKeyReused
from tests.support.command_scripts import (
    Delivery,
    InMemoryLedger,
    scripts_with_a_reused_token,
    scripts_with_duplicates,
)

domain_settings = settings(max_examples=150, deadline=None, database=None)


# --- Domain properties ---------------------------------------------------------------------


@domain_settings
@given(scripts_with_duplicates())
def test_duplicates_and_replays_leave_the_same_state_and_events_as_the_script_alone(
    script_and_deliveries: tuple[list[Command], list[Delivery]],
) -> None:
    script, deliveries = script_and_deliveries

    # The script runs once, each command delivered exactly once.
    deduplicated = InMemoryLedger()
    for command in script:
        deduplicated.handle(command)

    # The same script runs with its duplicates interleaved; none of them is refused.
    with_duplicates = InMemoryLedger()
    for command, _ in deliveries:
        with_duplicates.handle(command)

    # The aggregates end in the same states, after the very same events.
    assert with_duplicates.states() == deduplicated.states()
    assert len(with_duplicates.saved_events) == len(deduplicated.saved_events)
    assert with_duplicates.event_trail() == deduplicated.event_trail()


@domain_settings
@given(scripts_with_a_reused_token())
def test_a_reused_token_with_a_changed_payload_is_always_refused(
    script_and_changed: tuple[list[Command], Command],
) -> None:
    # The script ran, and every command was accepted.
    script, changed = script_and_changed
    ledger = InMemoryLedger()
    for command in script:
        ledger.handle(command)
    states_before = ledger.states()
    events_before = len(ledger.saved_events)

    # Another request arrives under one of the tokens it used.
    try:
        ledger.handle(changed)
    except IdempotencyKeyReused:
        pass
    else:
        raise AssertionError(f"{type(changed).__name__} under a used token was accepted")

    # It changed nothing.
    assert ledger.states() == states_before
    assert len(ledger.saved_events) == events_before
