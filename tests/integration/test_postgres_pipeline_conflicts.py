"""A write that loses a race on PostgreSQL leaves its connection as good as new.

The recorder sends each transaction's statements in one pipeline. When one of them fails
after waiting for the writers' lock (another replica was saving the same event), the server
skips the rest of the pipeline, including any statement psycopg meant to prepare there for
the first time; psycopg still counted such a statement as prepared, and a later write on
that connection failed with `prepared statement "_pg3_N" does not exist` (a 500 over HTTP).
These tests lose such races on one connection, again and again, so that every statement
of a write crosses psycopg's preparation threshold (5 executions) inside a lost race.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor

import psycopg
import pytest
from eventsourcing.persistence import IntegrityError, StoredEvent
from psycopg import sql

from application.ledger import DecisionLedger
from application.ports import LedgerIndexRows
from infrastructure.database import parse_database_url
from infrastructure.postgres_store import PostgresLedgerRecorder
from tests.support.databases import PostgresSchema

pytestmark = pytest.mark.postgres

#: Enough lost races that each statement's sixth execution falls in one, whatever the pattern.
LOST_RACES = 12
RUN_ID = "pipeline-2026-12-02"


@pytest.fixture
def one_connection(postgres_schema: PostgresSchema) -> Iterator[PostgresLedgerRecorder]:
    """The recorder of a ledger whose pool holds one connection, so every write reuses it."""
    environment = parse_database_url(postgres_schema.url).library_env()
    environment |= {"POSTGRES_POOL_SIZE": "1", "POSTGRES_MAX_OVERFLOW": "0"}
    ledger = DecisionLedger(env=environment)
    try:
        recorder = ledger.recorder
        assert isinstance(recorder, PostgresLedgerRecorder)
        yield recorder
    finally:
        ledger.close()


def write(recorder: PostgresLedgerRecorder, originator_id: uuid.UUID, token: str) -> None:
    """One event with its index rows, as the application saves a command."""
    event = StoredEvent(originator_id=originator_id, originator_version=1, topic="test:Event", state=b"{}")
    rows = LedgerIndexRows(
        events=[(originator_id, 1, RUN_ID)], tokens=[(token, f"fingerprint-{token}", originator_id, 1, None)]
    )
    recorder.insert_events([event], ledger_index=rows)


class OtherReplica:
    """Another process saving an event: its insert is held open until ours waits behind it."""

    def __init__(self, schema: PostgresSchema) -> None:
        self.schema = schema
        self.events = sql.Identifier(schema.name, "decisionledger_events")

    def race(self, ours: ThreadPoolExecutor, recorder: PostgresLedgerRecorder, token: str) -> Future[None]:
        """Our write of the event the other replica is saving; it has lost once this returns."""
        contested = uuid.uuid4()
        with self.schema.connect() as connection, connection.transaction():
            connection.execute(
                sql.SQL(
                    "INSERT INTO {} (originator_id, originator_version, topic, state) VALUES (%s, 1, %s, %s)"
                ).format(self.events),
                (contested, "test:Event", b"{}"),
            )
            lost = ours.submit(write, recorder, contested, token)
            self._wait_until_blocked(connection, lost)
        return lost

    def _wait_until_blocked(self, connection: psycopg.Connection, ours: Future[None]) -> None:
        """Until our write waits for the lock this transaction holds."""
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not ours.done():
            waiting = connection.execute(
                "SELECT count(*) FROM pg_locks WHERE NOT granted AND relation = %s::regclass",
                (self.events.as_string(connection),),
            ).fetchone()
            if waiting and waiting[0]:
                return
            time.sleep(0.01)
        raise AssertionError("our write never waited for the other replica's insert")


@pytest.mark.parametrize("wins_between_losses", [1, 2])
def test_writes_after_races_lost_on_the_same_connection_succeed(
    one_connection: PostgresLedgerRecorder, postgres_schema: PostgresSchema, wins_between_losses: int
) -> None:
    other = OtherReplica(postgres_schema)
    with ThreadPoolExecutor(max_workers=1) as ours:
        for race in range(LOST_RACES):
            # Another replica saves an event while ours queues to save the same one: ours loses.
            lost = other.race(ours, one_connection, f"token-lost-{race}")
            with pytest.raises(IntegrityError):
                lost.result(timeout=30)

            # The next writes on that connection go through, and their rows are stored.
            for win in range(wins_between_losses):
                originator_id = uuid.uuid4()
                ours.submit(write, one_connection, originator_id, f"token-won-{race}-{win}").result(
                    timeout=30
                )
                receipt = one_connection.token_receipt(f"token-won-{race}-{win}")
                assert receipt is not None and receipt.originator_id == originator_id

    # No lost race left a row behind.
    assert one_connection.token_receipts([f"token-lost-{race}" for race in range(LOST_RACES)]) == {}
