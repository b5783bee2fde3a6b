"""Read-model storage: the library's tracking recorders, extended with a small
dialect-neutral SQL surface so each projection writes its views once, for both
back ends.

A view store belongs to one projection and one *generation* of its tables. Tables
are named `<projection>_g<generation>_<table>`, with a tracking table of their own,
so a rebuild can fill a fresh generation while the live one keeps serving, and then
swap them by flipping one row in `projection_generations`.

SQL given to a view store uses `?` placeholders and `{table}` names; identifiers are
checked against a strict pattern and double-quoted, so they are safe in both dialects.
"""

from __future__ import annotations

import re
from abc import abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from eventsourcing.persistence import PersistenceError, Tracking, TrackingRecorder
from eventsourcing.postgres import PostgresDatastore, PostgresTrackingRecorder
from eventsourcing.sqlite import SQLiteDatastore, SQLiteTrackingRecorder
from psycopg import Cursor
from psycopg.rows import DictRow

from infrastructure.eventsourcing_compat import unretried
from infrastructure.postgres_ddl import SerialisedTrackingRecorder, ddl_lock
from infrastructure.postgres_outages import retrying

_IDENTIFIER = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
GENERATIONS_TABLE = "projection_generations"
#: Values in one IN list on SQLite (which caps the parameters of a statement).
IN_LIST_CHUNK = 500


def checked_identifier(name: str) -> str:
    if not _IDENTIFIER.fullmatch(name):
        raise ValueError(f"not a safe SQL identifier: {name!r}")
    return name


class ViewCursor:
    """A cursor that speaks `?` placeholders and returns rows as dicts."""

    def __init__(self, native: Any, placeholder: str) -> None:
        self.native = native
        self._placeholder = placeholder

    def _sql(self, statement: str) -> str:
        return statement if self._placeholder == "?" else statement.replace("?", self._placeholder)

    def execute(self, statement: str, params: Sequence[Any] = ()) -> ViewCursor:
        self.native.execute(self._sql(statement), tuple(params))
        return self

    def executemany(self, statement: str, rows: Sequence[Sequence[Any]]) -> None:
        if rows:
            self.native.executemany(self._sql(statement), [tuple(row) for row in rows])

    def select_in(self, statement: str, params: Sequence[Any], values: Sequence[Any]) -> list[dict[str, Any]]:
        """The rows of `statement`, in which `IN (?*)` stands for the list `values` (given
        after the other `params`): a chunk of values at a time on SQLite, one array on
        PostgreSQL."""
        if not values:
            return []
        if hasattr(self.native, "select_in"):
            return [dict(row) for row in self.native.select_in(self._sql(statement), tuple(params), values)]
        rows: list[dict[str, Any]] = []
        for start in range(0, len(values), IN_LIST_CHUNK):
            chunk = values[start : start + IN_LIST_CHUNK]
            expanded = statement.replace("(?*)", f"({', '.join('?' * len(chunk))})")
            rows += self.execute(expanded, [*params, *chunk]).fetchall()
        return rows

    def insert_rows(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        """Insert rows set-based: executemany on SQLite (in process, one transaction),
        COPY on PostgreSQL (one round trip per page)."""
        if not rows:
            return
        if hasattr(self.native, "insert_rows"):
            self.native.insert_rows(table, columns, rows)
            return
        self.executemany(
            f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})", rows
        )

    def fetchone(self) -> dict[str, Any] | None:
        row = self.native.fetchone()
        return None if row is None else dict(row)

    def fetchall(self) -> list[dict[str, Any]]:
        rows = self.native.fetchall()
        if rows and type(rows[0]) is dict:  # PostgreSQL's rows are dicts already
            return rows  # type: ignore[no-any-return]
        return [dict(row) for row in rows]


class ViewStore(TrackingRecorder):
    """One projection generation's tables and tracking, on either back end."""

    projection: str
    generation: int
    upstream: str

    def _configure(self, projection: str, generation: int, upstream: str) -> None:
        self.projection = checked_identifier(projection)
        self.generation = generation
        self.upstream = upstream

    @property
    def tracking_table(self) -> str:
        return f"{self.projection}_g{self.generation}_tracking"

    def table(self, name: str) -> str:
        return self.qualify(checked_identifier(f"{self.projection}_g{self.generation}_{name}"))

    def tables(self, names: Sequence[str]) -> dict[str, str]:
        return {name: self.table(name) for name in names}

    @abstractmethod
    def qualify(self, name: str) -> str:
        """A quoted, schema-qualified identifier."""

    @abstractmethod
    @contextmanager
    def cursor(self, *, commit: bool) -> Iterator[ViewCursor]:
        """A transaction; committed on a clean exit when `commit` is true."""

    def track(self, cursor: ViewCursor, tracking: Tracking) -> None:
        """Record the position in the same transaction as the rows it produced."""
        self._insert_tracking(cursor.native, tracking)  # type: ignore[attr-defined]

    def position(self) -> int:
        return self.max_tracking_id(self.upstream) or 0

    def position_within(self, cursor: ViewCursor) -> int:
        """The position applied, as the caller's transaction sees it."""
        row = cursor.execute(
            f"SELECT MAX(notification_id) AS position FROM {self.qualify(self.tracking_table)}"
            " WHERE application_name = ?",
            (self.upstream,),
        ).fetchone()
        return int(row["position"] or 0) if row else 0

    @contextmanager
    def page_cursor(self) -> Iterator[ViewCursor]:
        """A write transaction for a page of a projection. It may commit without waiting
        for its flush to disk: the page's tracking row goes with its rows, so a page lost
        in a crash is only applied again."""
        with self.cursor(commit=True) as cursor:
            yield cursor

    def fetchall(self, statement: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        with self.cursor(commit=False) as cursor:
            return cursor.execute(statement, params).fetchall()

    def lock_schema(self, cursor: ViewCursor) -> None:
        """Called first in each transaction that changes the schema: on PostgreSQL, one such
        transaction at a time (processes starting together would race on the catalogue)."""

    #: What `{without_rowid}` stands for in DDL: on SQLite, a table stored in its primary
    #: key's order, with no second B-tree to keep (for narrow rows inserted in key order).
    without_rowid = ""

    def create_tables(self, statements: Sequence[str], names: Mapping[str, str]) -> None:
        with self.cursor(commit=True) as cursor:
            self.lock_schema(cursor)
            for statement in statements:
                cursor.execute(statement.format(**names, without_rowid=self.without_rowid))

    def drop_generation(self, names: Sequence[str]) -> None:
        with self.cursor(commit=True) as cursor:
            self.lock_schema(cursor)
            for name in [*names, "tracking"]:
                qualified = self.qualify(checked_identifier(f"{self.projection}_g{self.generation}_{name}"))
                cursor.execute(f"DROP TABLE IF EXISTS {qualified}")

    # --- Which generation serves reads ------------------------------------------------

    def _ensure_generations_table(self, cursor: ViewCursor) -> None:
        self.lock_schema(cursor)
        cursor.execute(
            f"CREATE TABLE IF NOT EXISTS {self.qualify(GENERATIONS_TABLE)} ("
            " projection TEXT PRIMARY KEY, live_generation INTEGER NOT NULL,"
            " latest_generation INTEGER NOT NULL)"
        )

    def generations(self) -> tuple[int | None, int]:
        """(live generation or None, latest generation ever created). A read, once the table
        exists: readiness probes ask it, and on SQLite a write would queue behind the writers."""
        try:
            return self._read_generations(commit=False)
        except PersistenceError:  # no table yet (or no database: creating it says so)
            return self._read_generations(commit=True)

    def _read_generations(self, *, commit: bool) -> tuple[int | None, int]:
        with self.cursor(commit=commit) as cursor:
            if commit:
                self._ensure_generations_table(cursor)
            row = cursor.execute(
                f"SELECT live_generation, latest_generation FROM {self.qualify(GENERATIONS_TABLE)}"
                " WHERE projection = ?",
                (self.projection,),
            ).fetchone()
        if row is None:
            return None, 0
        return row["live_generation"], row["latest_generation"]

    def claim_generation(self, *, make_live: bool) -> int:
        """Reserve the next generation number; make it live if none is."""
        with self.cursor(commit=True) as cursor:
            self._ensure_generations_table(cursor)
            table = self.qualify(GENERATIONS_TABLE)
            cursor.execute(
                f"INSERT INTO {table} VALUES (?, 0, 0) ON CONFLICT (projection) DO NOTHING",
                (self.projection,),
            )
            row = cursor.execute(
                f"UPDATE {table} SET latest_generation = latest_generation + 1"
                " WHERE projection = ? RETURNING latest_generation, live_generation",
                (self.projection,),
            ).fetchone()
            assert row is not None
            if make_live and row["live_generation"] == 0:
                cursor.execute(
                    f"UPDATE {table} SET live_generation = ? WHERE projection = ?",
                    (row["latest_generation"], self.projection),
                )
            return int(row["latest_generation"])

    def make_live(self) -> int | None:
        """Serve reads from this generation from now on; returns the one it replaced."""
        with self.cursor(commit=True) as cursor:
            table = self.qualify(GENERATIONS_TABLE)
            row = cursor.execute(
                f"SELECT live_generation FROM {table} WHERE projection = ?", (self.projection,)
            ).fetchone()
            cursor.execute(
                f"UPDATE {table} SET live_generation = ? WHERE projection = ?",
                (self.generation, self.projection),
            )
        return None if row is None else int(row["live_generation"])


class SQLiteViewStore(SQLiteTrackingRecorder, ViewStore):
    without_rowid = " WITHOUT ROWID"

    def __init__(self, datastore: SQLiteDatastore, *, projection: str, generation: int, upstream: str):
        self._configure(projection, generation, upstream)
        super().__init__(datastore)
        table = self.tracking_table
        self.insert_tracking_statement = (
            f'INSERT INTO "{table}" VALUES (:application_name, :notification_id) '
            "ON CONFLICT (application_name) DO UPDATE SET notification_id = :notification_id "
            f'WHERE "{table}".notification_id < :notification_id RETURNING notification_id'
        )
        self.select_max_tracking_id_statement = (
            f'SELECT MAX(notification_id) FROM "{table}" WHERE application_name=?'
        )

    def construct_create_table_statements(self) -> list[str]:
        return [
            f'CREATE TABLE IF NOT EXISTS "{self.tracking_table}" ('
            "application_name TEXT PRIMARY KEY, notification_id INTEGER) WITHOUT ROWID"
        ]

    def qualify(self, name: str) -> str:
        return f'"{name}"'

    @contextmanager
    def cursor(self, *, commit: bool) -> Iterator[ViewCursor]:
        with self.datastore.transaction(commit=commit) as native:
            yield ViewCursor(native, "?")

    @contextmanager
    def page_cursor(self) -> Iterator[ViewCursor]:
        # In WAL mode, NORMAL does not sync at commit (a checkpoint syncs). The level is
        # the connection's, and only outside a transaction can it change: it is set for the
        # page and restored before the connection goes back to the pool, where events are
        # written too.
        with self.datastore.get_connection(commit=True) as connection:
            native = connection._sqlite_conn  # the library's connection holds it privately
            level = int(native.execute("PRAGMA synchronous").fetchone()[0])
            native.execute("PRAGMA synchronous = NORMAL")
            try:
                with connection.transaction(commit=True) as cursor:
                    yield ViewCursor(cursor, "?")
            finally:
                native.execute(f"PRAGMA synchronous = {level}")


class PostgresViewStore(SerialisedTrackingRecorder, ViewStore):
    def __init__(self, datastore: PostgresDatastore, *, projection: str, generation: int, upstream: str):
        self._configure(projection, generation, upstream)
        super().__init__(datastore, tracking_table_name=self.tracking_table)

    def qualify(self, name: str) -> str:
        return f'"{checked_identifier(self.datastore.schema)}"."{name}"'

    @contextmanager
    def cursor(self, *, commit: bool) -> Iterator[ViewCursor]:
        with self.datastore.transaction(commit=commit) as native:
            yield ViewCursor(_PostgresRows(native), "%s")

    def track(self, cursor: ViewCursor, tracking: Tracking) -> None:
        self._insert_tracking(cursor.native.cursor, tracking)

    def lock_schema(self, cursor: ViewCursor) -> None:
        cursor.native.cursor.execute(ddl_lock(self.datastore.schema))

    @contextmanager
    def page_cursor(self) -> Iterator[ViewCursor]:
        with self.cursor(commit=True) as cursor:
            cursor.native.cursor.execute("SET LOCAL synchronous_commit TO OFF")
            yield cursor

    def max_tracking_id(self, application_name: str) -> int | None:
        select = unretried(PostgresTrackingRecorder.max_tracking_id)
        return retrying(self.datastore, lambda: select(self, application_name))


class _PostgresRows:
    def __init__(self, cursor: Cursor[DictRow]) -> None:
        self.cursor = cursor

    def execute(self, statement: str, params: Sequence[Any]) -> None:
        # Planned afresh each time: views grow from empty within a transaction (a rebuild,
        # a big catch-up page), and a generic plan prepared while a table was empty would
        # scan the whole table for every IN list.
        self.cursor.execute(statement, params, prepare=False)

    def executemany(self, statement: str, rows: Sequence[Sequence[Any]]) -> None:
        self.cursor.executemany(statement, rows)

    def select_in(self, statement: str, params: Sequence[Any], values: Sequence[Any]) -> Any:
        self.cursor.execute(
            statement.replace("IN (%s*)", "= ANY(%s)"), (*params, list(values)), prepare=False
        )
        return self.cursor.fetchall()

    def insert_rows(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        with self.cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)

    def fetchone(self) -> Any:
        return self.cursor.fetchone()

    def fetchall(self) -> Any:
        return self.cursor.fetchall()


def open_view_store(datastore: Any, *, projection: str, generation: int, upstream: str) -> ViewStore:
    """A view store on the same database as the events, with its tracking table made."""
    store: ViewStore
    if isinstance(datastore, SQLiteDatastore):
        store = SQLiteViewStore(datastore, projection=projection, generation=generation, upstream=upstream)
    elif isinstance(datastore, PostgresDatastore):
        store = PostgresViewStore(datastore, projection=projection, generation=generation, upstream=upstream)
    else:
        raise TypeError(f"no view store for {type(datastore).__name__}")
    store.create_table()
    return store
