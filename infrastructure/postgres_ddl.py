"""Schema changes at start-up, one session at a time per schema.

Every process creates the tables it needs when they are missing. `IF NOT EXISTS` does not
make that safe between sessions: of two concurrent `CREATE TABLE IF NOT EXISTS` (or
`CREATE TYPE`, `CREATE INDEX IF NOT EXISTS`) of one name, the second waits for the first
and then fails on a catalogue index (`pg_type_typname_nsp_index`), and concurrent
`CREATE OR REPLACE FUNCTION` / `TRIGGER` fail with "tuple concurrently updated" or
deadlock. So every transaction of the ledger that changes the schema first takes one
transaction-scoped advisory lock of that schema: replicas starting at the same instant
make the tables one after another, and the later ones find them made.
"""

from __future__ import annotations

import contextlib

from eventsourcing.postgres import PostgresAggregateRecorder, PostgresRecorder, PostgresTrackingRecorder
from psycopg import Cursor
from psycopg.errors import DuplicateObject
from psycopg.rows import DictRow
from psycopg.sql import SQL, Composed, Literal


def ddl_lock(schema: str) -> Composed:
    """Wait for the schema's DDL lock; the transaction holds it until it ends."""
    return SQL("SELECT pg_advisory_xact_lock(hashtext({}))").format(
        Literal(f"{schema or 'public'}.decision-ledger-ddl")
    )


class SerialisedDDL(PostgresRecorder):
    """A library recorder whose tables, types and functions are made in one transaction,
    under the schema's DDL lock (the library makes a composite type in a transaction of
    its own, outside any lock, and tolerates only a type that existed before)."""

    def create_table(self) -> None:
        with self.datastore.transaction(commit=True) as curs:
            self._create_table(curs)
        self.datastore.register_type_adapters()

    def _create_table(self, curs: Cursor[DictRow]) -> None:
        curs.execute(ddl_lock(self.datastore.schema))
        for statement in self.sql_create_statements:
            if "CREATE TYPE" in statement.as_string():
                # No IF NOT EXISTS for types: a savepoint keeps the transaction usable.
                with contextlib.suppress(DuplicateObject), curs.connection.transaction():
                    curs.execute(statement, prepare=False)
        super()._create_table(curs)


class SerialisedAggregateRecorder(SerialisedDDL, PostgresAggregateRecorder):
    """The snapshots' recorder."""


class SerialisedTrackingRecorder(SerialisedDDL, PostgresTrackingRecorder):
    """A tracking recorder. The library looks for its table (to migrate an older one)
    before it takes any lock: here it looks again under the lock, so that a table another
    process made meanwhile counts as made."""

    def _create_table(self, curs: Cursor[DictRow]) -> None:
        curs.execute(ddl_lock(self.datastore.schema))
        found = curs.execute(
            "SELECT 1 FROM pg_tables WHERE schemaname = %s AND tablename = %s",
            (self.datastore.schema, self.tracking_table_name),
        ).fetchone()
        self.tracking_table_exists = found is not None
        migration = None
        if self.tracking_table_exists:
            curs.execute(self.max_tracking_id_statement, (self.table_migration_identifier,))
            row = curs.fetchone()
            migration = row["max"] if row else None
        self.tracking_migration_previous = self.tracking_migration_current = migration
        super()._create_table(curs)
