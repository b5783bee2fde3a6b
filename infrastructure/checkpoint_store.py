"""Signed checkpoints, kept in the ledger's database (append-only, on both back ends).

A checkpoint is a statement made once, at a time, with the key of that time: it is not
derivable from the events, so it lives outside the projections' generations and no
rebuild touches it. Copies meant to outlive the database go to the checkpoint directory.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from eventsourcing.postgres import PostgresDatastore
from eventsourcing.sqlite import SQLiteDatastore
from psycopg import sql

from infrastructure.postgres_ddl import ddl_lock

CHECKPOINTS_TABLE = "tlog_checkpoints"
COLUMNS = ("tree_size", "root_hash", "note", "key_id", "made_at")


@dataclass(frozen=True)
class StoredCheckpoint:
    tree_size: int
    root_hash: str
    note: str
    key_id: str
    made_at: str


class CheckpointStore(ABC):
    @abstractmethod
    def create_table(self) -> None: ...

    @abstractmethod
    @contextmanager
    def _cursor(self, *, commit: bool) -> Iterator[Any]: ...

    @abstractmethod
    def _statement(self, template: str) -> Any:
        """The template with {table} filled in and `?` placeholders in this dialect."""

    def add(self, checkpoint: StoredCheckpoint) -> bool:
        """Keeps the checkpoint; False if one of that size is kept already (first one wins)."""
        with self._cursor(commit=True) as cursor:
            cursor.execute(
                self._statement(
                    "INSERT INTO {table} (tree_size, root_hash, note, key_id, made_at)"
                    " VALUES (?, ?, ?, ?, ?) ON CONFLICT (tree_size) DO NOTHING RETURNING tree_size"
                ),
                (
                    checkpoint.tree_size,
                    checkpoint.root_hash,
                    checkpoint.note,
                    checkpoint.key_id,
                    checkpoint.made_at,
                ),
            )
            return cursor.fetchone() is not None

    def _one(self, template: str, params: tuple[Any, ...]) -> StoredCheckpoint | None:
        with self._cursor(commit=False) as cursor:
            cursor.execute(self._statement(template), params)
            row = cursor.fetchone()
        return None if row is None else StoredCheckpoint(*(row[column] for column in COLUMNS))

    def latest(self) -> StoredCheckpoint | None:
        return self._one("SELECT * FROM {table} ORDER BY tree_size DESC LIMIT 1", ())

    def at_size(self, tree_size: int) -> StoredCheckpoint | None:
        return self._one("SELECT * FROM {table} WHERE tree_size = ?", (tree_size,))

    def first_covering(self, tree_size: int) -> StoredCheckpoint | None:
        """The smallest checkpoint of at least `tree_size` leaves."""
        return self._one(
            "SELECT * FROM {table} WHERE tree_size >= ? ORDER BY tree_size LIMIT 1", (tree_size,)
        )


class SQLiteCheckpointStore(CheckpointStore):
    def __init__(self, datastore: SQLiteDatastore) -> None:
        self.datastore = datastore

    def create_table(self) -> None:
        with self._cursor(commit=True) as cursor:
            cursor.execute(
                self._statement(
                    "CREATE TABLE IF NOT EXISTS {table} (tree_size INTEGER PRIMARY KEY, root_hash TEXT NOT NULL,"
                    " note TEXT NOT NULL, key_id TEXT NOT NULL, made_at TEXT NOT NULL)"
                )
            )

    @contextmanager
    def _cursor(self, *, commit: bool) -> Iterator[Any]:
        with self.datastore.transaction(commit=commit) as cursor:
            yield cursor

    def _statement(self, template: str) -> str:
        return template.format(table=f'"{CHECKPOINTS_TABLE}"')


class PostgresCheckpointStore(CheckpointStore):
    def __init__(self, datastore: PostgresDatastore) -> None:
        self.datastore = datastore

    def create_table(self) -> None:
        with self._cursor(commit=True) as cursor:
            cursor.execute(ddl_lock(self.datastore.schema))
            cursor.execute(
                self._statement(
                    "CREATE TABLE IF NOT EXISTS {table} (tree_size BIGINT PRIMARY KEY, root_hash TEXT NOT NULL,"
                    " note TEXT NOT NULL, key_id TEXT NOT NULL, made_at TEXT NOT NULL)"
                )
            )

    @contextmanager
    def _cursor(self, *, commit: bool) -> Iterator[Any]:
        with self.datastore.transaction(commit=commit) as cursor:
            yield cursor

    def _statement(self, template: str) -> sql.Composed:
        table = sql.Identifier(self.datastore.schema or "public", CHECKPOINTS_TABLE)
        return sql.SQL(template.replace("?", "%s")).format(table=table)


def open_checkpoint_store(datastore: Any) -> CheckpointStore:
    store: CheckpointStore
    if isinstance(datastore, SQLiteDatastore):
        store = SQLiteCheckpointStore(datastore)
    elif isinstance(datastore, PostgresDatastore):
        store = PostgresCheckpointStore(datastore)
    else:
        raise TypeError(f"no checkpoint store for {type(datastore).__name__}")
    store.create_table()
    return store
