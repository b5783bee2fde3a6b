"""Behind PgBouncer in transaction mode psycopg must not prepare statements: the setting
turns preparing off on every connection of the ledger's pool."""

from __future__ import annotations

import pytest

from application.ledger import DecisionLedger
from domain.commands import OpenRun
from infrastructure.settings import Settings
from tests.support.ledger_commands import commands_of

pytestmark = pytest.mark.postgres


def prepared_on_pool_connections(ledger: DecisionLedger) -> tuple[list[object], int]:
    """(prepare_threshold, statements prepared) of a connection the pool hands out."""
    datastore = ledger.factory.datastore  # type: ignore[attr-defined]
    with datastore.get_connection() as connection:
        count = connection.execute("SELECT count(*) AS n FROM pg_prepared_statements").fetchone()["n"]
        return [connection.prepare_threshold], count


@pytest.mark.parametrize("prepared", [True, False])
def test_the_setting_decides_whether_psycopg_prepares_statements(postgres_schema, prepared: bool) -> None:
    settings = Settings(
        database_url=postgres_schema.url,
        postgres_prepared_statements=prepared,
        pool_size=1,
        pool_max_overflow=0,
    )
    ledger = DecisionLedger(env=settings.library_env())
    try:
        # The same statements, run more often than psycopg's threshold, on one connection.
        for number in range(8):
            commands_of(ledger).runs.open(
                OpenRun(token=f"open-{number}", actor="scheduler", run_id=f"run-{number}", lane="fraud")
            )
            ledger.index.head_position()

        thresholds, prepared_count = prepared_on_pool_connections(ledger)

        if prepared:
            assert thresholds == [5] and prepared_count > 0
        else:
            assert thresholds == [None] and prepared_count == 0
    finally:
        ledger.close()


def test_the_setting_is_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DECISION_LEDGER_POSTGRES_PREPARED_STATEMENTS", "false")
    settings = Settings(database_url="postgresql://postgres@127.0.0.1/test")
    assert settings.library_env()["LEDGER_PREPARED_STATEMENTS"] == "no"
