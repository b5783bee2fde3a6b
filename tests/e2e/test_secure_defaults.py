"""Defaults that fail closed: what readiness tells a stranger, and where a database
password may appear (nowhere)."""

from __future__ import annotations

import os
import subprocess
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from eventsourcing.persistence import OperationalError
from fastapi.testclient import TestClient

from application.redaction import redacted
from infrastructure.database import InvalidDatabaseUrl, parse_database_url
from infrastructure.settings import Settings
from tests.support.api import AUDITOR_KEY, CONSOLE_SCRIPT, bearer

PASSWORD = "s3cret-Pa55"
#: What a driver might say when the database is gone: it names hosts, users, even a URL.
DRIVER_ERROR = f"connection to server at 10.1.2.3 failed for postgresql://ledger:{PASSWORD}@db:5432/ledger"


# --- Readiness ---------------------------------------------------------------------------


@pytest.fixture
def database_down(secured_api: TestClient) -> Iterator[TestClient]:
    """The secured app, with its database answering every read with the driver's error."""
    index = secured_api.app.state.service.ledger.index  # type: ignore[attr-defined]

    def unavailable() -> int:
        raise OperationalError(DRIVER_ERROR)

    original = index.head_position
    index.head_position = unavailable
    try:
        yield secured_api
    finally:
        index.head_position = original


def test_readiness_tells_a_stranger_only_that_the_database_is_unavailable(database_down: TestClient) -> None:
    response = database_down.get("/readyz")

    assert response.status_code == 503
    assert response.headers["Retry-After"]
    assert response.json() == {"status": "unavailable", "detail": {"error": "the database is unavailable"}}


def test_readiness_tells_a_key_holder_why_without_the_password(database_down: TestClient) -> None:
    response = database_down.get("/readyz", headers=bearer(AUDITOR_KEY))

    assert response.status_code == 503
    error = response.json()["detail"]["error"]
    assert error.startswith("connection to server at 10.1.2.3 failed")
    assert PASSWORD not in response.text


def test_readiness_never_waits_for_the_writers(secured_api: TestClient) -> None:
    # A long write holds the ledger's writer slot (on SQLite, the one connection that writes).
    service = secured_api.app.state.service  # type: ignore[attr-defined]
    holding, release = threading.Event(), threading.Event()

    def long_write() -> None:
        with service.ledger.recorder.datastore.transaction(commit=True):
            holding.set()
            release.wait(60)

    with ThreadPoolExecutor(max_workers=2) as threads:
        writer = threads.submit(long_write)
        try:
            assert holding.wait(10)
            # Readiness only reads: it is answered while that write is still open.
            probe = threads.submit(secured_api.get, "/readyz")
            response = probe.result(timeout=20)
        finally:
            release.set()
            writer.result(timeout=20)
    assert response.status_code == 200, response.text


# --- Database URLs never show a password --------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        f"postgresql://ledger:{PASSWORD}@db:notaport/ledger",
        f"postgresql://ledger:{PASSWORD}@/ledger",
        f"mysql://ledger:{PASSWORD}@db/ledger",
        f"postgresql://ledger:{PASSWORD}@db@:notaport/ledger",
    ],
)
def test_a_refused_database_url_is_quoted_without_its_password(url: str) -> None:
    with pytest.raises(InvalidDatabaseUrl) as refused:
        parse_database_url(url)
    assert PASSWORD not in str(refused.value)
    assert "ledger:***@" in str(refused.value)
    with pytest.raises(Exception) as invalid_setting:
        Settings(database_url=url)
    assert PASSWORD not in str(invalid_setting.value)


def test_a_parsed_target_never_shows_its_password() -> None:
    target = parse_database_url(f"postgresql://ledger:{PASSWORD}@db:5432/ledger?schema=s")
    assert target.password == PASSWORD
    assert PASSWORD not in repr(target)
    assert PASSWORD not in target.describe()
    assert redacted(f"at postgres://a:{PASSWORD}@h/d and postgresql://b:x@y/z") == (
        "at postgres://a:***@h/d and postgresql://b:***@y/z"
    )


@pytest.mark.parametrize("port", ["notaport", "1"])
def test_the_cli_never_prints_the_password_of_a_database_it_cannot_use(tmp_path: Path, port: str) -> None:
    # A URL the CLI refuses, and one it cannot reach (nothing listens on port 1).
    url = f"postgresql://ledger:{PASSWORD}@127.0.0.1:{port}/ledger"
    environment = {
        name: value for name, value in os.environ.items() if not name.startswith("DECISION_LEDGER_")
    }
    result = subprocess.run(
        [str(CONSOLE_SCRIPT), "projections", "status", "--database-url", url],
        cwd=tmp_path,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert result.stderr.startswith("error: ")
    assert PASSWORD not in result.stdout + result.stderr
