"""How the projections read the log (application/projections/log_pages.py): every event,
in order, a page at a time, on both back ends. From PostgreSQL a thread reads the next
page while the consumer applies one; from SQLite, whose reading holds the GIL for most of
its work, the consumer reads each page itself (a reading thread measurably slowed every
statement the consumer stepped: bench/rebuild.py)."""

from __future__ import annotations

import threading
from contextlib import closing

from application.ledger import DecisionLedger
from application.projections.log_pages import log_pages
from application.projections.runtime import Projections
from domain.commands import AdmitInputs, OpenRun
from infrastructure.sqlite_store import SQLiteLedgerRecorder
from tests.support.ledger_commands import commands_of


def reading_threads() -> int:
    return sum(thread.name == "log-pages" for thread in threading.enumerate())


def test_every_event_in_order_and_a_reading_thread_only_for_a_server(ledger: DecisionLedger) -> None:
    commands = commands_of(ledger)
    for number in range(4):
        run_id = f"run-{number}"
        commands.runs.open(OpenRun(token=f"open-{number}", actor="lane", run_id=run_id, lane="fraud"))
        commands.runs.admit(
            AdmitInputs(token=f"admit-{number}", actor="lane", run_id=run_id, input_ids=("a",))
        )
    head = ledger.index.head_position()
    embedded = isinstance(ledger.index, SQLiteLedgerRecorder)
    assert ledger.index.reads_in_process is embedded

    decode = Projections(ledger).kind("runs").decoder(ledger)
    positions: list[int] = []
    threads_seen: list[int] = []
    with closing(log_pages(ledger, after=0, up_to=None, page=3, decode=decode)) as pages:
        for page in pages:
            assert 0 < len(page.events) <= 3
            positions += [logged.position for _, logged in page.events]
            threads_seen.append(reading_threads())

    assert positions == list(range(1, head + 1))
    assert len(threads_seen) == 3
    if embedded:
        assert threads_seen == [0, 0, 0]
    else:  # by the first page the thread has two more items to hand over (pages, then the end)
        assert threads_seen[0] == 1
    assert reading_threads() == 0  # closed: no thread outlives the pages
