"""Append-only against upserts: a row cannot be replaced by inserting over its key.

On SQLite, `INSERT OR REPLACE` deletes the row in its way without firing the DELETE
trigger (SQLite fires it only when a connection turns recursive_triggers on), so each
protected table also refuses, before insert, a row whose key is taken. On PostgreSQL,
`INSERT ... ON CONFLICT DO UPDATE` is an UPDATE and meets the UPDATE trigger; SQLite's
own upsert syntax is tried too. Each test tries one way on one table, with the key of a
row the ledger wrote and new content, and finds the row unchanged.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from psycopg import sql

from application.ledger import DecisionLedger
from domain.identity import run_uuid
from infrastructure.database import parse_database_url
from tests.support.append_only import REFUSAL, TAMPERING, RawTables, refusal_errors, write_some_history

#: Each protected table's primary key.
KEYS = {
    "events": ("originator_id", "originator_version"),
    "snapshots": ("originator_id", "originator_version"),
    "positions": ("position",),
    "tokens": ("token",),
    "basis": ("run_id", "input_id"),
    "seals": ("run_id", "attempt"),
}
#: A new value for a column that is not part of the key (the key itself, for all-key tables).
NEW_CONTENT = {**{table: column for table, (column, _) in TAMPERING.items()}, "snapshots": "topic"}
NEW_CONTENT |= {"basis": "input_id", "seals": "attempt"}


class Tables(RawTables):
    def table(self, name: str) -> sql.Composable:
        if name == "snapshots":
            if self.target.backend == "sqlite":
                return sql.Identifier("stored_snapshots")
            return sql.Identifier(self.target.schema, "decisionledger_snapshots")
        return super().table(name)

    def first_row(self, name: str) -> dict[str, Any]:
        statement = sql.SQL("SELECT * FROM {} LIMIT 1").format(self.table(name))
        if self.target.backend == "sqlite":
            cursor = self.connection.execute(statement.as_string(None))
        else:
            cursor = self.connection.execute(statement)
        row = cursor.fetchone()
        assert row is not None, f"{name} holds no row"
        return dict(zip([column[0] for column in cursor.description], row, strict=True))

    def execute_with(self, statement: sql.Composed, params: list[Any]) -> None:
        if self.target.backend == "sqlite":
            try:
                self.connection.execute(statement.as_string(None).replace("%s", "?"), params)
                self.connection.commit()
            finally:
                self.connection.rollback()
        else:
            self.connection.execute(statement, params)


@pytest.fixture
def tables(ledger: DecisionLedger, database_url: str) -> Iterator[Tables]:
    """A history in every protected table (a snapshot too), and a raw connection to them."""
    write_some_history(ledger)
    ledger.take_snapshot(run_uuid("audit-2024-06-01"))
    raw = Tables(parse_database_url(database_url))
    try:
        yield raw
    finally:
        raw.close()


def changed(row: dict[str, Any], column: str) -> dict[str, Any]:
    value = row[column]
    if isinstance(value, int):
        new_value: Any = value + 1000
    elif isinstance(value, bytes | memoryview):
        new_value = b"tampered"
    else:
        new_value = "tampered"
    return {**row, column: new_value}


def upsert(tables: Tables, name: str, row: dict[str, Any], way: str) -> tuple[sql.Composed, list[Any]]:
    columns = sql.SQL(", ").join(sql.Identifier(column) for column in row)
    values = sql.SQL(", ").join(sql.Placeholder() for _ in row)
    if way == "insert or replace":
        statement = sql.SQL("INSERT OR REPLACE INTO {} ({}) VALUES ({})")
        return statement.format(tables.table(name), columns, values), list(row.values())
    key = sql.SQL(", ").join(sql.Identifier(column) for column in KEYS[name])
    updated = [column for column in row if column not in KEYS[name]] or [NEW_CONTENT[name]]
    update = sql.SQL(", ").join(
        sql.SQL("{0} = excluded.{0}").format(sql.Identifier(column)) for column in updated
    )
    statement = sql.SQL("INSERT INTO {} ({}) VALUES ({}) ON CONFLICT ({}) DO UPDATE SET {}")
    return statement.format(tables.table(name), columns, values, key, update), list(row.values())


WAYS = {"sqlite": ["insert or replace", "on conflict do update"], "postgres": ["on conflict do update"]}


@pytest.mark.parametrize("name", KEYS)
@pytest.mark.parametrize("way", ["insert or replace", "on conflict do update"])
def test_inserting_over_an_existing_key_is_refused(tables: Tables, name: str, way: str) -> None:
    if way not in WAYS[tables.target.backend]:
        pytest.skip(f"{way} is not {tables.target.backend} syntax")
    rows_before = tables.rows(name)
    row = tables.first_row(name)

    # An intruder writes new content under the key of a row the ledger wrote.
    new_row = changed(row, NEW_CONTENT[name])
    if name in ("basis", "seals"):
        new_row = row  # every column is the key: the same row, inserted again
    statement, params = upsert(tables, name, new_row, way)
    with pytest.raises(refusal_errors(tables.target.backend), match=REFUSAL):
        tables.execute_with(statement, params)

    # The database refused, and every row is as it was.
    assert tables.rows(name) == rows_before


@pytest.mark.parametrize("name", ["events", "positions"])
def test_replacing_by_rowid_is_refused_on_sqlite(tables: Tables, name: str) -> None:
    if tables.target.backend != "sqlite":
        pytest.skip("rowid is SQLite's")
    rows_before = tables.rows(name)
    rowid = tables.connection.execute(
        sql.SQL("SELECT rowid FROM {} LIMIT 1").format(tables.table(name)).as_string(None)
    ).fetchone()[0]
    row = changed(changed(tables.first_row(name), "originator_id"), "originator_version")

    # A new key, but the rowid of a row the ledger wrote: REPLACE would delete that row.
    statement, params = upsert(tables, name, {**row, "rowid": rowid}, "insert or replace")
    with pytest.raises(refusal_errors("sqlite"), match=REFUSAL):
        tables.execute_with(statement, params)

    assert tables.rows(name) == rows_before
