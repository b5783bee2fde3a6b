"""Two real API servers on one PostgreSQL schema, raced by fifty clients at once.

Each server is its own `decision-ledger serve` process (its own pool, cache and
projections off), as two replicas behind a load balancer would be. Whatever the
interleaving, one event lands and every client gets either that event's answer
(201, original or replay) or a typed conflict (409); never a 5xx.

Each race is run ROUNDS times on the same two servers (fresh inputs and keys each
round), so that a failure showing in one race in ten would show here.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from psycopg import sql

from application.ledger import DecisionLedger
from domain.identity import decision_uuid
from infrastructure.database import parse_database_url
from tests.support.api import CONSOLE_SCRIPT, RUN_ID, decision_body, free_port, keyed
from tests.support.databases import PostgresSchema
from tests.support.servers import wait_until_live

pytestmark = pytest.mark.postgres

CLIENTS = 50
#: Races per test: a failure seen in one race in ten passes all of them with p = 0.9**ROUNDS.
ROUNDS = 30
#: The reported scenario: this many keys, each delivered DELIVERIES times across both servers.
KEYS = 50
DELIVERIES = 4


def create_tables(url: str) -> None:
    """Build the schema's tables once, so the two servers don't race on DDL."""
    DecisionLedger(env=parse_database_url(url).library_env()).close()


def start_server(
    url: str, signing_key_hex: str, workdir: Path, **settings: str
) -> tuple[subprocess.Popen[bytes], str, Path]:
    port = free_port()
    environment = {
        name: value for name, value in os.environ.items() if not name.startswith("DECISION_LEDGER_")
    }
    environment |= {
        "DECISION_LEDGER_SIGNING_KEY": signing_key_hex,
        # Replicas share one projection worker in production; these tests only write.
        "DECISION_LEDGER_RUN_PROJECTIONS": "false",
        "POSTGRES_POOL_SIZE": "4",
    }
    environment |= {f"DECISION_LEDGER_{name.upper()}": value for name, value in settings.items()}
    log = workdir / f"server-{port}.log"
    with log.open("wb") as output:
        server = subprocess.Popen(
            [str(CONSOLE_SCRIPT), "serve", "--port", str(port), "--database-url", url],
            cwd=workdir,
            env=environment,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    return server, f"http://127.0.0.1:{port}", log


@pytest.fixture
def two_servers(postgres_schema: PostgresSchema, signing_key_hex: str, tmp_path: Path) -> Iterator[list[str]]:
    """The base URLs of two servers sharing the test's schema."""
    yield from started_together(postgres_schema, signing_key_hex, tmp_path)


@pytest.fixture
def two_processes_sharing_answers(
    postgres_schema: PostgresSchema, signing_key_hex: str, tmp_path: Path
) -> Iterator[list[str]]:
    """Two API processes as `serve --workers 2` runs them: they also share first answers."""
    yield from started_together(
        postgres_schema, signing_key_hex, tmp_path, shared_answers_dir=str(tmp_path / "answers")
    )


def started_together(
    schema: PostgresSchema, signing_key_hex: str, workdir: Path, **settings: str
) -> Iterator[list[str]]:
    create_tables(schema.url)
    servers: list[tuple[subprocess.Popen[bytes], str, Path]] = []
    try:
        # One after the other (starting together on a schema is tested in
        # tests/integration/test_startup_ddl_postgres.py and by the last test here).
        for _ in range(2):
            servers.append(start_server(schema.url, signing_key_hex, workdir, **settings))
            wait_until_live(*servers[-1])
        yield [base_url for _, base_url, _ in servers]
        for server, base_url, log in servers:
            assert server.poll() is None, f"the server at {base_url} exited: {log.read_text()[-3000:]}"
            assert_clean_log(log)
    finally:
        for server, _, _ in servers:
            server.terminate()
        for server, _, _ in servers:
            try:
                server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()


def assert_clean_log(log: Path) -> None:
    """No traceback and no 5xx answer in a server's log."""
    text = log.read_text(errors="replace")
    assert "Traceback" not in text, text[-3000:]
    assert " 500 " not in text and "Internal Server Error" not in text, text[-3000:]


class Racers:
    """One client per racing thread, kept open from race to race (a race then measures the
    servers, not TCP handshakes)."""

    def __init__(self) -> None:
        self._local = threading.local()
        self._clients: list[httpx.Client] = []
        self._pool = ThreadPoolExecutor(max_workers=KEYS * DELIVERIES)

    def _client(self) -> httpx.Client:
        client = getattr(self._local, "client", None)
        if client is None:
            client = self._local.client = httpx.Client(timeout=30)
            self._clients.append(client)
        return client

    def race(self, requests: list[tuple[str, str, dict[str, Any], str]]) -> list[httpx.Response]:
        """Send (base URL, path, body, key) requests all at once, one thread each."""
        barrier = threading.Barrier(len(requests))

        def send(request: tuple[str, str, dict[str, Any], str]) -> httpx.Response:
            base_url, path, body, key = request
            client = self._client()
            barrier.wait()
            # No retry: every request is answered. (A request meeting a server that closes its
            # idle keep-alive connection is reset; servers keep them 75 s, longer than a race.)
            return client.post(base_url + path, json=body, headers=keyed(key))

        return list(self._pool.map(send, requests))

    def close(self) -> None:
        self._pool.shutdown()
        for client in self._clients:
            client.close()


@pytest.fixture
def racers() -> Iterator[Racers]:
    racing = Racers()
    try:
        yield racing
    finally:
        racing.close()


def recorded_events(schema: PostgresSchema, input_id: str) -> int:
    """Recorded events stored for the decision on this input, counted in SQL."""
    decision_id = decision_uuid(RUN_ID, input_id)
    with schema.connect() as connection:
        row = connection.execute(
            sql.SQL("SELECT count(*) FROM {} WHERE originator_id = %s AND topic LIKE %s").format(
                sql.Identifier(schema.name, "decisionledger_events")
            ),
            (decision_id, "%Decision.Recorded"),
        ).fetchone()
    assert row is not None
    return row[0]


def open_the_run(base_url: str) -> None:
    response = httpx.post(
        f"{base_url}/runs", json={"run_id": RUN_ID, "lane": "fraud"}, headers=keyed("open-race"), timeout=30
    )
    assert response.status_code == 201, response.text


def test_fifty_redeliveries_across_two_servers_record_one_decision(
    two_servers: list[str], postgres_schema: PostgresSchema, racers: Racers
) -> None:
    open_the_run(two_servers[0])
    for round_number in range(ROUNDS):
        input_id = f"txn-{round_number}"

        # Fifty deliveries of one decision, same key and body, split across both servers.
        deliveries = [
            (
                two_servers[number % 2],
                f"/runs/{RUN_ID}/decisions",
                decision_body(input_id),
                f"decide-{input_id}",
            )
            for number in range(CLIENTS)
        ]
        responses = racers.race(deliveries)

        # No server error; every answer is the decision (first or replayed) or a conflict.
        statuses = [response.status_code for response in responses]
        assert all(status in (201, 409) for status in statuses), (round_number, statuses)

        # Exactly one delivery executed; the others replayed it, with the same body.
        executed = [
            r for r in responses if r.status_code == 201 and r.headers["Idempotent-Replayed"] == "false"
        ]
        assert len(executed) == 1, round_number
        assert all(r.json() == executed[0].json() for r in responses if r.status_code == 201)
        assert recorded_events(postgres_schema, input_id) == 1


def test_fifty_different_keys_for_one_input_record_one_decision(
    two_servers: list[str], postgres_schema: PostgresSchema, racers: Racers
) -> None:
    open_the_run(two_servers[0])
    for round_number in range(ROUNDS):
        input_id = f"txn-{round_number}"

        # Fifty clients decide the same input under keys of their own, half of them disagreeing.
        decisions = [
            (
                two_servers[number % 2],
                f"/runs/{RUN_ID}/decisions",
                decision_body(input_id, "decline" if number % 4 < 2 else "approve"),
                f"decide-{input_id}-client-{number}",
            )
            for number in range(CLIENTS)
        ]
        responses = racers.race(decisions)

        # No server error; each answer is the recorded decision or "already recorded".
        statuses = [response.status_code for response in responses]
        assert all(status in (201, 409) for status in statuses), (round_number, statuses)
        assert recorded_events(postgres_schema, input_id) == 1

        # Whoever won, every 201 is that decision, and "already recorded" went only to those who disagreed.
        winners = {(r.json()["decision_id"], r.json()["outcome"]) for r in responses if r.status_code == 201}
        assert len(winners) == 1
        [(_, recorded_outcome)] = winners
        for response, (_, _, body, _) in zip(responses, decisions, strict=True):
            if response.status_code == 201:
                assert body["outcome"] == recorded_outcome
            elif response.json()["type"] == "/problems/decision-already-recorded":
                assert body["outcome"] != recorded_outcome
            else:
                assert response.json()["type"] == "/problems/request-in-flight"


def test_fifty_keys_delivered_four_times_each_never_answer_a_server_error(
    two_servers: list[str], postgres_schema: PostgresSchema, racers: Racers
) -> None:
    # The reported scenario: 50 keys, each delivered four times (twice to each server), at once.
    open_the_run(two_servers[0])
    for round_number in range(ROUNDS // 5):
        deliveries = [
            (
                two_servers[delivery % 2],
                f"/runs/{RUN_ID}/decisions",
                decision_body(f"batch-{round_number}-txn-{key}"),
                f"decide-{round_number}-{key}",
            )
            for key in range(KEYS)
            for delivery in range(DELIVERIES)
        ]
        responses = racers.race(deliveries)

        # Every delivery is answered with its decision (first or replayed), or "in flight".
        statuses = [response.status_code for response in responses]
        assert all(status in (201, 409) for status in statuses), (round_number, statuses)
        for key in range(KEYS):
            assert recorded_events(postgres_schema, f"batch-{round_number}-txn-{key}") == 1


def test_a_redelivery_reaching_the_other_process_is_answered_from_the_shared_answers(
    two_processes_sharing_answers: list[str], postgres_schema: PostgresSchema
) -> None:
    first_process, other_process = two_processes_sharing_answers
    open_the_run(first_process)
    body = json.dumps(decision_body("txn-1")).encode()
    path = f"/runs/{RUN_ID}/decisions"
    headers = {**keyed("decide-txn-1"), "Content-Type": "application/json"}
    first = httpx.post(first_process + path, content=body, headers=headers, timeout=30)
    assert first.status_code == 201, first.text

    # While nothing can read the ledger's tokens, the redelivery reaches the other process:
    # it is answered all the same, with the first answer's bytes, so it never needed the ledger.
    with postgres_schema.connect() as connection, connection.transaction():
        tokens = sql.Identifier(postgres_schema.name, "decisionledger_tokens")
        connection.execute(sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(tokens))
        again = httpx.post(other_process + path, content=body, headers=headers, timeout=5)

    assert again.status_code == 201
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.content == first.content
    assert recorded_events(postgres_schema, "txn-1") == 1


def test_replicas_starting_together_on_one_schema_all_come_up(postgres_schema: PostgresSchema) -> None:
    # The schema already holds the ledger's tables, as after a first deployment.
    create_tables(postgres_schema.url)
    environment = {**parse_database_url(postgres_schema.url).library_env(), "POSTGRES_POOL_SIZE": "1"}

    # Four replicas restart at the same instant (each builds the ledger, as `serve` does at start-up).
    def start_replica(barrier: threading.Barrier) -> None:
        barrier.wait()
        DecisionLedger(env=environment).close()

    for _ in range(3):
        barrier = threading.Barrier(4)
        with ThreadPoolExecutor(max_workers=4) as pool:
            starts = [pool.submit(start_replica, barrier) for _ in range(4)]

        # Every one of them comes up.
        for start in starts:
            start.result()
