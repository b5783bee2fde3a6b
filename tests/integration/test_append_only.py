"""The ledger is append-only below the application too: a person with a SQL prompt
cannot rewrite or erase the events or the index tables derived from them.

Each test writes some history through the application, then goes around it with a
plain database connection and tries to change one table. The database refuses with
the ledger's append-only message, and every row is still as it was.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg import sql

from application.ledger import DecisionLedger
from domain.commands import AdmitInputs, CloseRun, ModelRef, OpenRun, RecordDecision
from domain.identity import run_uuid
from domain.run import Run
from infrastructure.database import DatabaseTarget, parse_database_url
from tests.support.databases import PostgresSchema
from tests.support.ledger_commands import commands_of

RUN_ID = "audit-2024-06-01"
REFUSAL = "the ledger is append-only"

#: Each protected table, and a change an intruder might make to it.
TAMPERING = {
    "events": ("topic", "'tampered'"),
    "positions": ("run_id", "'tampered'"),
    "tokens": ("fingerprint", "'tampered'"),
    "basis": ("input_id", "'tampered'"),
    "seals": ("attempt", "attempt + 1"),
}


class RawTables:
    """A connection that bypasses the application, for one back end's tables."""

    def __init__(self, target: DatabaseTarget) -> None:
        self.target = target
        if target.backend == "sqlite":
            self.connection: Any = sqlite3.connect(str(target.sqlite_path))
        else:
            self.connection = psycopg.connect(target.conninfo, autocommit=True)

    def table(self, name: str) -> sql.Composable:
        if self.target.backend == "sqlite":
            physical = "stored_events" if name == "events" else f"ledger_{name}"
            return sql.Identifier(physical)
        return sql.Identifier(self.target.schema, f"decisionledger_{name}")

    def execute(self, statement: sql.Composed) -> None:
        if self.target.backend == "sqlite":
            try:
                self.connection.execute(statement.as_string(None))
            finally:
                self.connection.rollback()
        else:
            self.connection.execute(statement)

    def rows(self, name: str) -> list[tuple[Any, ...]]:
        statement = sql.SQL("SELECT * FROM {}").format(self.table(name))
        if self.target.backend == "sqlite":
            rows = self.connection.execute(statement.as_string(None)).fetchall()
        else:
            rows = [tuple(row) for row in self.connection.execute(statement).fetchall()]
        return sorted(rows, key=repr)

    def close(self) -> None:
        self.connection.close()


def refusal_errors(backend: str) -> type[Exception]:
    return sqlite3.DatabaseError if backend == "sqlite" else psycopg.Error


def write_some_history(ledger: DecisionLedger) -> None:
    """A run with a basis and a decision, then sealed: a row in every protected table."""
    commands_of(ledger).runs.open(OpenRun(token="open-1", actor="scheduler", run_id=RUN_ID, lane="credit"))
    commands_of(ledger).runs.admit(
        AdmitInputs(token="admit-1", actor="loader", run_id=RUN_ID, input_ids=("a", "b"))
    )
    commands_of(ledger).decisions.record(
        RecordDecision(
            token="record-1",
            actor="scorer",
            run_id=RUN_ID,
            input_id="a",
            outcome="approve",
            model=ModelRef("scorecard", "7.1"),
        )
    )
    run = ledger.repository.get(run_uuid(RUN_ID))
    assert isinstance(run, Run)
    run.seal(CloseRun(token="close-1", actor="scheduler", run_id=RUN_ID))
    ledger.save(run)


@pytest.fixture
def raw_tables(ledger: DecisionLedger, database_url: str) -> Iterator[RawTables]:
    """A history written through the application, and a raw connection to its tables."""
    write_some_history(ledger)
    tables = RawTables(parse_database_url(database_url))
    try:
        yield tables
    finally:
        tables.close()


@pytest.mark.parametrize("table", TAMPERING)
def test_rewriting_a_row_is_refused(raw_tables: RawTables, table: str) -> None:
    # The table holds rows written by the ledger.
    rows_before = raw_tables.rows(table)
    assert rows_before

    # An intruder rewrites them directly in SQL.
    column, new_value = TAMPERING[table]
    statement = sql.SQL("UPDATE {} SET {} = {}").format(
        raw_tables.table(table), sql.Identifier(column), sql.SQL(new_value)
    )
    with pytest.raises(refusal_errors(raw_tables.target.backend), match=REFUSAL):
        raw_tables.execute(statement)

    # The database refused, and every row is as it was.
    assert raw_tables.rows(table) == rows_before


@pytest.mark.parametrize("table", TAMPERING)
def test_deleting_rows_is_refused(raw_tables: RawTables, table: str) -> None:
    # The table holds rows written by the ledger.
    rows_before = raw_tables.rows(table)
    assert rows_before

    # An intruder deletes them all.
    statement = sql.SQL("DELETE FROM {}").format(raw_tables.table(table))
    with pytest.raises(refusal_errors(raw_tables.target.backend), match=REFUSAL):
        raw_tables.execute(statement)

    # The database refused, and every row is still there.
    assert raw_tables.rows(table) == rows_before


@pytest.mark.postgres
@pytest.mark.parametrize("table", TAMPERING)
def test_truncating_a_table_is_refused_on_postgres(postgres_schema: PostgresSchema, table: str) -> None:
    # A history written through the application on PostgreSQL.
    target = parse_database_url(postgres_schema.url)
    ledger = DecisionLedger(env=target.library_env())
    tables = RawTables(target)
    try:
        write_some_history(ledger)
        rows_before = tables.rows(table)
        assert rows_before

        # An intruder empties the table in one statement.
        statement = sql.SQL("TRUNCATE {}").format(tables.table(table))
        with pytest.raises(psycopg.Error, match=REFUSAL):
            tables.execute(statement)

        # The database refused, and every row is still there.
        assert tables.rows(table) == rows_before
    finally:
        tables.close()
        ledger.close()
