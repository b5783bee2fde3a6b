"""Test databases: the shared PostgreSQL server (a schema of each test's own) and fresh,
empty databases of either back end for tests that need one per hypothesis example.

PostgreSQL comes from DECISION_LEDGER_TEST_POSTGRES_URL (default: the local trust
server, database `test`). Without a reachable server the PostgreSQL cases skip, unless
DECISION_LEDGER_REQUIRE_POSTGRES=1, which turns the skip into a failure.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from infrastructure.database import parse_database_url

DEFAULT_TEST_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"


def postgres_server_url() -> str:
    return os.environ.get("DECISION_LEDGER_TEST_POSTGRES_URL", DEFAULT_TEST_POSTGRES_URL)


def postgres_required() -> bool:
    return os.environ.get("DECISION_LEDGER_REQUIRE_POSTGRES", "") in ("1", "true", "yes")


def _postgres_unreachable_reason() -> str | None:
    try:
        with psycopg.connect(parse_database_url(postgres_server_url()).conninfo, connect_timeout=3):
            return None
    except psycopg.Error as error:
        return f"PostgreSQL at {postgres_server_url()} is unreachable: {str(error).splitlines()[0]}"


def require_postgres() -> None:
    reason = _postgres_unreachable_reason()
    if reason is None:
        return
    if postgres_required():
        pytest.fail(f"DECISION_LEDGER_REQUIRE_POSTGRES=1 but {reason}", pytrace=False)
    pytest.skip(reason)


class PostgresSchema:
    """A schema of one test's own in the test database."""

    def __init__(self) -> None:
        self.name = f"t_{uuid.uuid4().hex[:16]}"
        self.target = parse_database_url(postgres_server_url())

    @property
    def url(self) -> str:
        return f"{postgres_server_url()}?schema={self.name}"

    def connect(self) -> psycopg.Connection:
        return psycopg.connect(self.target.conninfo, autocommit=True)

    def create(self) -> None:
        with self.connect() as connection:
            connection.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(self.name)))

    def drop(self) -> None:
        with self.connect() as connection:
            connection.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(self.name)))


@contextmanager
def fresh_database_like(database_url: str, scratch: str | None = None) -> Iterator[str]:
    """A new, empty database of `database_url`'s back end, gone when the block ends: a
    SQLite file in a directory of its own (under `scratch` if given), or a PostgreSQL
    schema of its own."""
    if parse_database_url(database_url).backend == "sqlite":
        with tempfile.TemporaryDirectory(prefix="fresh-database-", dir=scratch) as directory:
            yield f"sqlite:///{Path(directory) / 'ledger.sqlite3'}"
        return
    schema = PostgresSchema()
    schema.create()
    try:
        yield schema.url
    finally:
        schema.drop()
