"""Someone with a SQL prompt drops the append-only trigger and rewrites history: edits
an event, deletes one, slips one in between two others, or swaps two. `decision-ledger
audit verify` recomputes the hash chain from the stored events, finds the change and
names the first position that differs; so does the StoreVerifier it is built on.

Each test writes a history through the REST API (a committed run with a signed proof,
then a second run still open), waits for the audit log to reach its head, closes the
API, and only then goes around the application with a plain database connection.
PostgreSQL gets all four kinds of tampering; SQLite, whose notification IDs are rowids,
the edit and the delete.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from application.proof_checks import VerificationFailed
from domain.canonical import canonical_json
from tests.support.databases import PostgresSchema

# --- Around the application ---------------------------------------------------------------------
from tests.support.tamper import History, raw_events, write_history


@pytest.fixture
def history(database_url: str, signing_key_hex: str, tmp_path: Path) -> History:
    return write_history(database_url, signing_key_hex, tmp_path)


@pytest.fixture
def postgres_history(postgres_schema: PostgresSchema, signing_key_hex: str, tmp_path: Path) -> History:
    return write_history(postgres_schema.url, signing_key_hex, tmp_path, with_gap=True)


def assert_found_at(history: History, position: int, *words: str) -> None:
    """Both the command line and the verifier refuse the store, naming `position` first."""
    cli = history.audit_verify()
    assert cli.returncode == 1, (cli.stdout, cli.stderr)
    assert cli.error_line.startswith(f"error: position {position}: "), cli.error_line
    with pytest.raises(VerificationFailed) as refused:
        history.verify_directly()
    assert str(refused.value).startswith(f"position {position}: "), refused.value
    for word in words:
        assert word in str(refused.value)


# --- An untouched store ---------------------------------------------------------------------------


def test_an_untouched_store_passes_audit_verify_with_its_proof(history: History) -> None:
    # The whole chain, and the committed run's proof at its seal, match.
    cli = history.audit_verify()
    assert cli.returncode == 0, cli.stderr
    assert (
        f"ok: {history.head} events, chain intact up to position {history.head}" in cli.stdout
        and "1 run proof(s) match" in cli.stdout
    ), cli.stdout
    report = history.verify_directly()
    assert (report.checked, report.last_position, report.proofs_checked) == (history.head, history.head, 1)


def test_audit_verify_checks_just_the_range_asked_for(history: History) -> None:
    # From the first decision to the seal: the run proof sealed in the range is checked,
    # so the check starts where that run begins (position 1) and ends at the seal.
    first, last = history.positions["a"], history.positions["seal"]
    cli = history.audit_verify("--from", str(first), "--to", str(last))
    assert cli.returncode == 0, cli.stderr
    assert f"ok: {last} events, chain intact up to position {last}" in cli.stdout, cli.stdout
    assert "1 run proof(s) match" in cli.stdout, cli.stdout

    # After the seal, no proof: exactly the positions asked for.
    after = history.audit_verify("--from", str(last + 1))
    assert after.returncode == 0, after.stderr
    assert f"ok: {history.head - last} events, chain intact up to position {history.head}" in after.stdout

    # The verifier, started from the audit log's hash before `first`, agrees.
    report = history.verify_directly(from_position=first, to_position=last)
    assert (report.checked, report.last_position) == (last - first + 1, last)


# --- The stored form ----------------------------------------------------------------------------


def test_events_stored_in_the_earlier_non_canonical_form_still_verify(history: History) -> None:
    # States are stored as canonical JSON, and the chain is checked around them as stored.
    # A ledger written before that stores keys in insertion order, with the same content:
    # its events are written canonically again, and the chain and the proof still match.
    rewritten = [history.positions[name] for name in ("a", "b", "seal")]
    with raw_events(history.database_url) as events:
        events.drop_append_only_triggers()
        for position in rewritten:
            state = events.state(position)
            canonical = canonical_json(state).decode()
            assert events.stored_text(position) == canonical
            shuffled = dict(reversed(list(state.items())))
            events.set_state(
                position, json.dumps(shuffled, separators=(",", ":"), ensure_ascii=False).encode()
            )
            assert events.stored_text(position) != canonical

    cli = history.audit_verify()
    assert cli.returncode == 0, cli.stderr
    report = history.verify_directly()
    assert (report.checked, report.proofs_checked) == (history.head, 1)


# --- (a) An edited event --------------------------------------------------------------------------


def test_an_edited_event_is_found_at_its_position(history: History) -> None:
    # The intruder turns decision b's approval into a decline.
    edited = history.positions["b"]
    with raw_events(history.database_url) as events:
        events.drop_append_only_triggers()
        events.edit_state(edited, lambda state: state.update(outcome="decline"))

    # Both checks name b's position as the first that differs.
    assert_found_at(history, edited, "chain hash differs")


def test_a_range_check_finds_an_edit_inside_it_and_passes_either_side(history: History) -> None:
    # Decision c, in the middle of the log, is edited.
    edited = history.positions["c"]
    with raw_events(history.database_url) as events:
        events.drop_append_only_triggers()
        events.edit_state(edited, lambda state: state.update(score=0.99))

    # The ranges before it, and after the seal of its run, still chain correctly (a range
    # holding the seal checks the run's proof, from the run's first event: it would fail) ...
    assert history.audit_verify("--to", str(edited - 1)).returncode == 0
    assert history.audit_verify("--from", str(history.positions["seal"] + 1)).returncode == 0
    assert history.audit_verify("--from", str(edited + 1)).returncode == 1

    # ... and a range of just that position fails there.
    cli = history.audit_verify("--from", str(edited), "--to", str(edited))
    assert cli.returncode == 1
    assert cli.error_line.startswith(f"error: position {edited}: "), cli.error_line
    with pytest.raises(VerificationFailed, match=f"^position {edited}: "):
        history.verify_directly(from_position=edited, to_position=edited)


def test_an_edit_hidden_by_rebuilding_the_audit_log_is_caught_by_the_run_proof(history: History) -> None:
    # The intruder edits decision a, then rebuilds the audit log so it chains the edit in.
    with raw_events(history.database_url) as events:
        events.drop_append_only_triggers()
        events.edit_state(history.positions["a"], lambda state: state.update(outcome="decline"))
    history.rebuild_audit_log()

    # The signed proof still holds the chain hash at the seal: the store no longer reaches it.
    assert_found_at(history, history.positions["seal"], "differs from its proof")


# --- (b) A deleted event --------------------------------------------------------------------------


def test_a_deleted_event_is_found_at_its_position(history: History) -> None:
    # The intruder erases decision b.
    deleted = history.positions["b"]
    with raw_events(history.database_url) as events:
        events.drop_append_only_triggers()
        events.delete(deleted)

    # The audit log still records b: its position is the first that differs.
    assert_found_at(history, deleted, "deleted")


def test_deleting_the_newest_event_is_found_at_its_position(history: History) -> None:
    # The last decision of the open run disappears.
    with raw_events(history.database_url) as events:
        events.drop_append_only_triggers()
        events.delete(history.head)

    assert_found_at(history, history.head, "no longer has")


# --- (c) An inserted event, (d) reordered events: PostgreSQL ---------------------------------------------


@pytest.mark.postgres
def test_an_event_inserted_between_two_others_is_found_at_its_position(postgres_history: History) -> None:
    # A rolled-back transaction left position `gap` unused, between decisions a and b.
    gap = postgres_history.gap
    assert gap is not None

    # The intruder fills it with a copy of decision a's event, as a later version of a.
    with raw_events(postgres_history.database_url) as events:
        events.drop_append_only_triggers()
        events.insert_copy(postgres_history.positions["a"], version=2, position=gap)

    # The audit log has nothing at the gap: the inserted position is the first that differs.
    assert_found_at(postgres_history, gap, "inserted")


@pytest.mark.postgres
def test_an_untouched_store_with_a_gap_in_its_positions_passes(postgres_history: History) -> None:
    # A skipped position is not tampering: nothing was ever stored there.
    cli = postgres_history.audit_verify()
    assert cli.returncode == 0, cli.stderr
    report = postgres_history.verify_directly()
    assert (report.checked, report.proofs_checked) == (postgres_history.head - 1, 1)


@pytest.mark.postgres
def test_two_swapped_events_are_found_at_the_earlier_position(postgres_history: History) -> None:
    # The intruder swaps the positions of decisions a and c.
    first, second = postgres_history.positions["a"], postgres_history.positions["c"]
    with raw_events(postgres_history.database_url) as events:
        events.drop_append_only_triggers()
        events.swap(first, second)

    # At a's position the store now holds c: that is where the chain first differs.
    assert_found_at(postgres_history, first, "chain hash differs")


# --- Tampering that the verifier does not yet name --------------------------------------------------


def test_an_event_overwritten_with_bytes_that_are_not_json_is_found_at_its_position(history: History) -> None:
    # The intruder overwrites decision b's state with bytes that are not JSON at all.
    garbled = history.positions["b"]
    with raw_events(history.database_url) as events:
        events.drop_append_only_triggers()
        events.set_state(garbled, b"\xff not json")

    assert_found_at(history, garbled)


def test_an_event_slipped_in_below_the_first_position_is_found(history: History) -> None:
    # No trigger needs dropping: appending is allowed. The intruder appends a second
    # version of decision b, with an explicit position of 0, before everything else.
    with raw_events(history.database_url) as events:
        events.insert_copy(history.positions["b"], version=2, position=0)

    # The store holds an event the audit log never recorded: position 0 differs.
    assert_found_at(history, 0)
