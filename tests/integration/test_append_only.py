"""The ledger is append-only below the application too: a person with a SQL prompt
cannot rewrite or erase the events or the index tables derived from them.

Each test writes some history through the application, then goes around it with a
plain database connection and tries to change one table. The database refuses with
the ledger's append-only message, and every row is still as it was.
"""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest
from psycopg import sql

from application.ledger import DecisionLedger
from infrastructure.database import parse_database_url
from tests.support.append_only import (
    REFUSAL,
    TAMPERING,
    RawTables,
    refusal_errors,
    write_some_history,
)
from tests.support.databases import PostgresSchema


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
