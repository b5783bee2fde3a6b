"""`audit verify` reads the stored events through `LedgerIndex.stored_events_between`,
and the projections through `LedgerIndex.logged_events_between` (each event with its
index row), without the library's objects: they must return what the library's
`select_notifications` and the index return, position for position, on both back ends."""

from __future__ import annotations

import pytest
from eventsourcing.persistence import Tracking

from application.ledger import DecisionLedger
from application.projections.base import utc_text
from application.projections.runtime import Projections
from domain.commands import AdmitInputs, ModelRef, OpenRun, RecordDecision
from tests.support.ledger_commands import commands_of
from tests.support.tamper import raw_events


def write_a_run(ledger: DecisionLedger) -> None:
    commands = commands_of(ledger)
    commands.runs.open(OpenRun(token="open", actor="ops", run_id="run-rows", lane="fraud"))
    commands.runs.admit(AdmitInputs(token="basis", actor="ops", run_id="run-rows", input_ids=("a", "b", "c")))
    for input_id in ("a", "b", "c"):
        commands.decisions.record(
            RecordDecision(
                token=f"decide-{input_id}",
                actor="model",
                run_id="run-rows",
                input_id=input_id,
                outcome="approve",
                score=0.5,
                model=ModelRef("gbm", "7"),
            )
        )


def library_rows(ledger: DecisionLedger) -> list[tuple[object, ...]]:
    return [
        (n.id, n.originator_id, n.originator_version, n.topic, bytes(n.state))
        for n in ledger.recorder.select_notifications(start=None, limit=100)
    ]


def test_the_verifiers_reader_returns_what_the_library_reads(ledger: DecisionLedger) -> None:
    write_a_run(ledger)
    library = library_rows(ledger)
    assert len(library) == 5

    # Whole, and in pages of 2 between two positions, as the verifier walks them.
    assert [tuple(row) for row in ledger.index.stored_events_between(0, None, 100)] == library
    walked, position = [], 1
    while page := ledger.index.stored_events_between(position, 4, 2):
        walked += [tuple(row) for row in page]
        position = page[-1].id
    assert walked == library[1:4]


def test_the_projections_reader_returns_each_stored_event_with_its_index_row(ledger: DecisionLedger) -> None:
    write_a_run(ledger)
    index_rows = ledger.index.events_between(0, None, 100)
    expected = [
        (*stored, row.run_id, utc_text(row.recorded_at))
        for stored, row in zip(library_rows(ledger), index_rows, strict=True)
    ]
    assert [tuple(row) for row in ledger.index.logged_events_between(0, None, 100)] == expected
    assert [tuple(row) for row in ledger.index.logged_events_between(1, 4, 2)] == expected[1:3]


def test_an_event_stored_without_its_index_row_stops_the_projections(
    ledger: DecisionLedger, database_url: str
) -> None:
    write_a_run(ledger)
    head = ledger.index.head_position()
    # Written behind the ledger's back: an event the index never heard of.
    with raw_events(database_url) as events:
        events.insert_copy(head, version=99, position=head + 1)

    with pytest.raises(LookupError, match=f"no index row for position {head + 1}"):
        ledger.index.logged_events_between(0, None, 100)
    projections = Projections(ledger)
    runs = projections.kind("runs").build(projections.live_store("runs"), ledger)
    with pytest.raises(LookupError, match=f"position {head + 1}"):
        projections.catch_up(runs)
    assert runs.view.position() < head + 1  # nothing of the page with it was applied


def test_a_runner_batch_naming_a_position_the_store_lacks_is_refused_whole(ledger: DecisionLedger) -> None:
    write_a_run(ledger)
    head = ledger.index.head_position()
    projections = Projections(ledger)
    runs = projections.kind("runs").build(projections.live_store("runs"), ledger)
    stored = ledger.recorder.select_notifications(start=None, limit=100)
    batch = [(ledger.mapper.to_domain_event(n), Tracking(ledger.name, n.id)) for n in stored]
    # The runner's last event names a position past the log's head.
    batch.append((batch[-1][0], Tracking(ledger.name, head + 5)))

    with pytest.raises(LookupError, match=f"no stored event at position {head + 5}"):
        runs.process_batch(batch)
    assert runs.view.position() == 0  # nothing of the batch was applied
