"""Replicas starting at the same instant on an empty PostgreSQL schema, as on a first
deployment: each makes what it needs (the ledger's tables, type, functions and triggers,
the snapshots' table, the projections' views, the election's and the checkpoints'
tables), and every one of them comes up, leaving the schema a lone replica makes."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest

from infrastructure.database import parse_database_url
from infrastructure.settings import Settings
from interfaces.bootstrap import build_service
from tests.support.databases import fresh_database_like, postgres_server_url, require_postgres

pytestmark = pytest.mark.postgres

REPLICAS = 4
#: Fresh schemas raced on: a start-up failing one time in ten passes them all with p = 0.9**12 (0.28).
ROUNDS = 12

CATALOGUE = {
    "tables": "SELECT tablename FROM pg_tables WHERE schemaname = %s",
    "indexes": "SELECT indexname FROM pg_indexes WHERE schemaname = %s",
    "types": "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
    " WHERE n.nspname = %s AND c.relkind = 'c'",
    "functions": "SELECT p.proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace"
    " WHERE n.nspname = %s",
    "triggers": "SELECT t.tgname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid"
    " JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %s AND NOT t.tgisinternal",
    "live generations": "SELECT projection || ' ' || live_generation FROM projection_generations"
    " WHERE %s::text IS NOT NULL",
}


def start_replica(database_url: str, signing_key_hex: str, barrier: threading.Barrier) -> None:
    """What `serve` makes at start-up: the service, each projection's live views, the
    election's table."""
    settings = Settings(
        database_url=database_url, signing_key=signing_key_hex, api_keys=[], api_keys_file=None
    )
    barrier.wait()
    service = build_service(settings)
    try:
        for name in service.projections.names:
            service.projections.live_store(name)
        service.election.leaders()
    finally:
        service.close()


def start_together(database_url: str, signing_key_hex: str, replicas: int) -> list[str]:
    """Start the replicas at one instant; the failures of those that did not come up."""
    barrier = threading.Barrier(replicas)
    with ThreadPoolExecutor(max_workers=replicas) as pool:
        starts = [pool.submit(start_replica, database_url, signing_key_hex, barrier) for _ in range(replicas)]
    return [repr(start.exception()) for start in starts if start.exception() is not None]


def schema_objects(database_url: str) -> dict[str, list[str]]:
    target = parse_database_url(database_url)
    with psycopg.connect(target.conninfo, options=f"-c search_path={target.schema}") as connection:
        return {
            kind: sorted(str(row[0]) for row in connection.execute(query, (target.schema,)).fetchall())
            for kind, query in CATALOGUE.items()
        }


def test_replicas_starting_together_on_an_empty_schema_all_come_up(signing_key_hex: str) -> None:
    require_postgres()
    with fresh_database_like(postgres_server_url()) as alone:
        assert start_together(alone, signing_key_hex, 1) == []
        made_alone = schema_objects(alone)
    assert made_alone["tables"] and made_alone["types"] and made_alone["triggers"], made_alone

    for round_number in range(ROUNDS):
        with fresh_database_like(postgres_server_url()) as url:
            failures = start_together(url, signing_key_hex, REPLICAS)

            # Every replica came up, and together they made what one makes alone.
            assert failures == [], (round_number, failures)
            assert schema_objects(url) == made_alone, round_number
