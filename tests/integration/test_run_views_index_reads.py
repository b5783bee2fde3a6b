"""The runs projection asks the ledger's index where a corrected decision's version in
force began (application/projections/run_views.py, `read_index`). It asks before the
page's transaction opens: the index has connections of its own, and one asked for inside
the page's transaction could wait on a pool that transaction helps to exhaust (a
projection stopped on "Timed out waiting for connection pool semaphore" that way). On
both back ends, with every correction in a page after its decision's."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any

import pytest

from application.ledger import DecisionLedger
from application.projections.log_pages import log_pages
from application.projections.runtime import Projections
from application.queries.read_models import ReadModels
from domain.commands import AdmitInputs, CorrectDecision, ModelRef, OpenRun, RecordDecision
from domain.identity import decision_uuid
from tests.support.ledger_commands import commands_of


def write_corrections(ledger: DecisionLedger) -> None:
    commands = commands_of(ledger)
    commands.runs.open(OpenRun(token="open", actor="ops", run_id="run-a", lane="fraud"))
    commands.runs.admit(AdmitInputs(token="admit", actor="ops", run_id="run-a", input_ids=("x", "y")))
    for input_id in ("x", "y"):
        commands.decisions.record(
            RecordDecision(
                token=f"decide-{input_id}",
                actor="model",
                run_id="run-a",
                input_id=input_id,
                outcome="approve",
                score=0.5,
                model=ModelRef("gbm", "7"),
            )
        )
    # x is corrected twice, y once: each correction ends the version the one before made.
    for number, (input_id, outcome) in enumerate((("x", "decline"), ("y", "refer"), ("x", "refer"))):
        commands.decisions.correct(
            CorrectDecision(
                token=f"correct-{number}",
                actor="reviewer",
                decision_id=decision_uuid("run-a", input_id),
                outcome=outcome,
                reason="second look",
            )
        )


@pytest.mark.parametrize(("page_size", "reads"), [(1, 3), (2, 3), (100, 0)])
def test_the_index_is_read_outside_the_pages_transaction(
    ledger: DecisionLedger, monkeypatch: pytest.MonkeyPatch, page_size: int, reads: int
) -> None:
    write_corrections(ledger)
    projections = Projections(ledger)
    store = projections.live_store("runs")
    runs = projections.kind("runs").build(store, ledger)

    in_page = False
    index_reads: list[bool] = []  # for each read of the index: whether a page's transaction was open
    page_cursor, event_position = store.page_cursor, ledger.index.event_position

    @contextmanager
    def watched_page_cursor() -> Any:
        nonlocal in_page
        with page_cursor() as cursor:
            in_page = True
            try:
                yield cursor
            finally:
                in_page = False

    def watched_event_position(*args: Any) -> Any:
        index_reads.append(in_page)
        return event_position(*args)

    monkeypatch.setattr(store, "page_cursor", watched_page_cursor)
    monkeypatch.setattr(ledger.index, "event_position", watched_event_position)
    decode = projections.kind("runs").decoder(ledger)
    for page in log_pages(ledger, after=store.position(), up_to=None, page=page_size, decode=decode):
        runs.apply_page(page)

    # Each first correction of a decision in a page after its decision's event asked the
    # index (a page that records the decision holds its version), never inside a page.
    assert index_reads == [False] * reads
    monkeypatch.undo()
    for name in ("audit", "outbox"):
        projections.catch_up(projections.kind(name).build(projections.live_store(name), ledger))
    summary = ReadModels(projections).summary("run-a")
    assert (summary.decision_count, summary.corrected_count, summary.outcome_counts) == (2, 2, {"refer": 2})
    assert projections.verify("runs") == (ledger.index.head_position(), [])


def test_a_correction_the_index_cannot_place_stops_the_page_and_writes_nothing(
    ledger: DecisionLedger, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_corrections(ledger)
    projections = Projections(ledger)
    store = projections.live_store("runs")
    runs = projections.kind("runs").build(store, ledger)
    decode = projections.kind("runs").decoder(ledger)
    pages = list(log_pages(ledger, after=0, up_to=None, page=4, decode=decode))
    runs.apply_page(pages[0])  # the run, its basis and its decisions
    applied = store.position()

    # The log and its index disagree: the decision's previous event has no index row.
    monkeypatch.setattr(ledger.index, "event_position", lambda *args: None)
    with pytest.raises(LookupError, match="no index row for version 1 of decision"):
        runs.apply_page(pages[1])
    assert store.position() == applied
    tables = store.tables(["decisions"])
    assert [
        row["corrections"] for row in store.fetchall(f"SELECT corrections FROM {tables['decisions']}")
    ] == [0, 0]
