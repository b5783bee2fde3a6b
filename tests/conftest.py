"""Shared fixtures: every behavioural test runs on SQLite and on PostgreSQL.

PostgreSQL comes from DECISION_LEDGER_TEST_POSTGRES_URL (default: the local trust
server, database `test`). Each test gets a schema of its own, dropped afterwards.
Without a reachable server the PostgreSQL cases skip, unless
DECISION_LEDGER_REQUIRE_POSTGRES=1, which turns the skip into a failure.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from application.ledger import DecisionLedger
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


@pytest.fixture
def postgres_schema() -> Iterator[PostgresSchema]:
    require_postgres()
    schema = PostgresSchema()
    schema.create()
    try:
        yield schema
    finally:
        schema.drop()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database of each back end."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'ledger.sqlite3'}"
        return
    schema: PostgresSchema = request.getfixturevalue("postgres_schema")
    yield schema.url


@pytest.fixture
def ledger(database_url: str) -> Iterator[DecisionLedger]:
    app = DecisionLedger(env=parse_database_url(database_url).library_env())
    try:
        yield app
    finally:
        app.close()


@pytest.fixture
def signing_key_hex() -> str:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    return Ed25519PrivateKey.generate().private_bytes_raw().hex()


@pytest.fixture
def api_settings(database_url: str, signing_key_hex: str):
    """Open local mode on a fresh database, with a throwaway signing key."""
    from infrastructure.settings import Settings

    return Settings(database_url=database_url, signing_key=signing_key_hex, api_keys=[], api_keys_file=None)


@pytest.fixture
def api(api_settings):
    """A TestClient over the real app (projections running in-process)."""
    from fastapi.testclient import TestClient

    from interfaces.api.app import create_app

    with TestClient(create_app(api_settings)) as client:
        yield client


@pytest.fixture
def secured_api(database_url: str, signing_key_hex: str):
    """The real app with keys for two scoring lanes (writers), an operator and an auditor."""
    from fastapi.testclient import TestClient

    from infrastructure.settings import ApiKeyEntry, Role, Settings
    from interfaces.api.app import create_app
    from interfaces.api.security import hash_api_key
    from tests.api_helpers import AUDITOR_KEY, OPERATOR_KEY, SECOND_WRITER_KEY, WRITER_KEY

    settings = Settings(
        database_url=database_url,
        signing_key=signing_key_hex,
        api_keys_file=None,
        api_keys=[
            ApiKeyEntry(principal="lane-a", roles=[Role.WRITER], key_sha256=hash_api_key(WRITER_KEY)),
            ApiKeyEntry(principal="lane-b", roles=[Role.WRITER], key_sha256=hash_api_key(SECOND_WRITER_KEY)),
            ApiKeyEntry(principal="ops", roles=[Role.OPERATOR], key_sha256=hash_api_key(OPERATOR_KEY)),
            ApiKeyEntry(principal="audit", roles=[Role.AUDITOR], key_sha256=hash_api_key(AUDITOR_KEY)),
        ],
    )
    with TestClient(create_app(settings)) as client:
        yield client
