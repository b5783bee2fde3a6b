"""A projection's page commits without waiting for the disk (its tracking row goes with
its rows, so a page lost in a crash is applied again), and nothing else does: on SQLite
the level is a connection's, and the connection goes back to a pool where events are
written too."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from application.ledger import DecisionLedger
from application.projections.runtime import Projections
from infrastructure.database import parse_database_url

FULL, NORMAL = 2, 1


@pytest.fixture
def sqlite_ledger(tmp_path: Path) -> Any:
    app = DecisionLedger(env=parse_database_url(f"sqlite:///{tmp_path / 'ledger.sqlite3'}").library_env())
    try:
        yield app
    finally:
        app.close()


def synchronous_levels(ledger: DecisionLedger) -> set[int]:
    """The level of every connection in the pool, as a transaction outside a page sees it."""
    datastore = ledger.factory.datastore  # type: ignore[attr-defined]
    levels = set()
    for _ in range(4):
        with datastore.transaction(commit=False) as cursor:
            cursor.execute("PRAGMA synchronous")
            levels.add(int(cursor.fetchone()[0]))
    return levels


def test_a_page_commits_without_a_sync_and_the_connection_is_returned_as_it_was(
    sqlite_ledger: DecisionLedger,
) -> None:
    store = Projections(sqlite_ledger).live_store("runs")
    assert synchronous_levels(sqlite_ledger) == {FULL}
    for _ in range(10):
        with store.page_cursor() as cursor:
            assert int(cursor.execute("PRAGMA synchronous", ()).fetchone()["synchronous"]) == NORMAL
        assert synchronous_levels(sqlite_ledger) == {FULL}


def test_a_page_that_fails_is_rolled_back_and_the_connection_is_returned_as_it_was(
    sqlite_ledger: DecisionLedger,
) -> None:
    store = Projections(sqlite_ledger).live_store("runs")
    table = store.table("pages_probe")
    with store.cursor(commit=True) as cursor:
        cursor.execute(f"CREATE TABLE {table} (n INTEGER)", ())
    for attempt in range(10):
        with pytest.raises(RuntimeError), store.page_cursor() as cursor:
            cursor.execute(f"INSERT INTO {table} VALUES (?)", (attempt,))
            raise RuntimeError("the page failed")
        assert synchronous_levels(sqlite_ledger) == {FULL}
    assert store.fetchall(f"SELECT * FROM {table}") == []
