"""Shared fixtures: every behavioural test runs on SQLite and on PostgreSQL.

PostgreSQL comes from DECISION_LEDGER_TEST_POSTGRES_URL (default: the local trust
server, database `test`). Each test gets a schema of its own, dropped afterwards.
Without a reachable server the PostgreSQL cases skip, unless
DECISION_LEDGER_REQUIRE_POSTGRES=1, which turns the skip into a failure.

Tests live in three tiers, each marked after its folder: `unit` (the domain and pure
code: no database, no I/O), `integration` (the application and the adapters on both
back ends) and `e2e` (HTTP, the command line, processes). Their helpers are in
`tests/support/`; no test module imports another.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from application.ledger import DecisionLedger
from infrastructure.database import parse_database_url
from tests.support.databases import PostgresSchema, require_postgres

TIERS = ("unit", "integration", "e2e")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark each test with its tier, so `-m unit` runs the fast, pure ones alone."""
    tests_root = Path(__file__).parent
    for item in items:
        if item.path.is_relative_to(tests_root):
            tier = item.path.relative_to(tests_root).parts[0]
            if tier in TIERS:
                item.add_marker(getattr(pytest.mark, tier))


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
    from tests.support.api import AUDITOR_KEY, OPERATOR_KEY, SECOND_WRITER_KEY, WRITER_KEY

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
