"""How fast the dispatcher carries actions out, against a bare httpx loop posting the
same bodies to the same receiver, in the same run.

A receiver that answers at once runs in a process of its own (a minimal keep-alive
HTTP/1.1 server: the measure is the sender's, not the receiver's). Then, for each
back end:

1. baseline: 16 asyncio workers over one pooled httpx.AsyncClient post the N action
   bodies, unsigned, as fast as answers come back (measured before and after the
   dispatcher, and averaged: the machine's load moves);
2. dispatcher: N actions are requested in the ledger with no dispatcher running and
   the outbox projection catches up; then a Dispatcher (concurrency 16) starts, and
   the clock runs until every action is delivered and committed: per action it loads
   the aggregate, saves DeliveryStarted, signs and posts, and saves the commit.

The ratio dispatcher / baseline is the figure; the target is >= 0.5.

    python -m bench.dispatch                                    # SQLite and PostgreSQL, 2,000 actions
    python -m bench.dispatch --actions 5000 --backends postgres
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import psycopg
from psycopg import sql

from application.dispatch.dispatcher import Dispatcher
from application.dispatch.messages import action_message
from application.service import LedgerService
from domain.action import Action
from domain.commands import AdmitInputs, ModelRef, OpenRun, RecordDecision, RequestAction
from domain.identity import decision_uuid
from infrastructure.database import parse_database_url
from infrastructure.effectors import Effector, Effectors
from infrastructure.signing import Signer

DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"
SECRET = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
KIND = "block-card"
CONCURRENCY = 16
TARGET = 0.5

RECEIVER = r"""
import asyncio, sys
ANSWER = b'HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 12\r\n\r\n{"ref":"r1"}'
async def handle(reader, writer):
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            if length:
                await reader.readexactly(length)
            writer.write(ANSWER)
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()
async def main():
    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    await server.serve_forever()
asyncio.run(main())
"""


@contextmanager
def receiver() -> Iterator[str]:
    process = subprocess.Popen([sys.executable, "-c", RECEIVER], stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        port = int(process.stdout.readline())
        yield f"http://127.0.0.1:{port}/hooks"
    finally:
        process.terminate()
        process.wait(timeout=10)


@contextmanager
def database(backend: str, postgres_url: str) -> Iterator[str]:
    if backend == "sqlite":
        with tempfile.TemporaryDirectory() as directory:
            yield f"sqlite:///{Path(directory) / 'bench.sqlite3'}"
        return
    schema = f"bench_dispatch_{uuid.uuid4().hex[:12]}"
    conninfo = parse_database_url(postgres_url).conninfo
    with psycopg.connect(conninfo, autocommit=True) as connection:
        connection.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    try:
        yield f"{postgres_url}?schema={schema}"
    finally:
        with psycopg.connect(conninfo, autocommit=True) as connection:
            connection.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))


def request_actions(service: LedgerService, count: int) -> list[bytes]:
    """N requested actions (one decision each); returns their bodies."""
    ledger = service.ledger
    run_id = "bench-dispatch"
    inputs = [f"card-{n:06d}" for n in range(count)]
    service.commands.runs.open(OpenRun(token="open", actor="bench", run_id=run_id, lane="cards"))
    for start in range(0, count, 5000):
        chunk = tuple(inputs[start : start + 5000])
        service.commands.runs.admit(
            AdmitInputs(token=f"admit-{start}", actor="bench", run_id=run_id, input_ids=chunk)
        )
    for start in range(0, count, 1000):
        items = [
            RecordDecision(
                token=f"decide-{input_id}",
                actor="bench",
                run_id=run_id,
                input_id=input_id,
                outcome="block",
                model=ModelRef("gbm", "7"),
            )
            for input_id in inputs[start : start + 1000]
        ]
        service.commands.batches.record(run_id, items, f"batch-{start}", f"fingerprint-{start}")
    bodies = []
    for input_id in inputs:
        result = service.commands.actions.request(
            RequestAction(
                token=f"request-{input_id}",
                actor="bench",
                run_id=run_id,
                action_key=f"block-{input_id}",
                decision_id=decision_uuid(run_id, input_id),
                kind=KIND,
                target=input_id,
                params={"reason": "fraud"},
            )
        )
        action = ledger.repository.get(uuid.UUID(result.view.action_id))
        assert isinstance(action, Action)
        bodies.append(action_message(action))
    return bodies


def bare_loop_rate(url: str, bodies: list[bytes]) -> float:
    """Deliveries/s of 16 workers posting the bodies over one pooled client."""

    async def run() -> float:
        limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)
        async with httpx.AsyncClient(limits=limits, trust_env=False) as client:
            queue = list(reversed(bodies))

            async def worker() -> None:
                while queue:
                    body = queue.pop()
                    response = await client.post(
                        url, content=body, headers={"content-type": "application/json"}, timeout=10
                    )
                    assert response.status_code == 200

            started = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
            return len(bodies) / (time.perf_counter() - started)

    return asyncio.run(run())


def dispatcher_rate(service: LedgerService, url: str, count: int) -> float:
    effector = Effector("bench", url, frozenset({KIND}), SECRET, 10.0, (0.0, 1.0))
    # Everything requested is in the outbox before the clock starts.
    head = service.ledger.index.head_position()
    assert service.projections.wait_for(head, timeout=300, names=["outbox"])
    dispatcher = Dispatcher(
        service.ledger, service.projections, Effectors({KIND: effector}), concurrency=CONCURRENCY
    )
    delivered = dispatcher.metrics.deliveries.labels("bench", "delivered")
    started = time.perf_counter()
    dispatcher.start()
    try:
        while delivered._value.get() < count:
            if time.perf_counter() - started > 600:
                raise RuntimeError(f"only {delivered._value.get()} of {count} delivered in 600 s")
            time.sleep(0.005)
        elapsed = time.perf_counter() - started
    finally:
        dispatcher.stop()
    return count / elapsed


def measure(backend: str, postgres_url: str, count: int, url: str) -> dict[str, float | str]:
    with database(backend, postgres_url) as database_url:
        env = parse_database_url(database_url).library_env()
        service = LedgerService.build(env, Signer.from_hex(os.urandom(32).hex()))
        service.start_projections()
        try:
            bodies = request_actions(service, count)
            before = bare_loop_rate(url, bodies)
            dispatched = dispatcher_rate(service, url, count)
            after = bare_loop_rate(url, bodies)
        finally:
            service.close()
    baseline = (before + after) / 2
    return {
        "backend": backend,
        "actions": count,
        "baseline_before": round(before, 1),
        "baseline_after": round(after, 1),
        "dispatcher": round(dispatched, 1),
        "ratio": round(dispatched / baseline, 3),
        "target": f">= {TARGET}",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--actions", type=int, default=2000)
    parser.add_argument(
        "--backends", nargs="+", default=["sqlite", "postgres"], choices=["sqlite", "postgres"]
    )
    parser.add_argument("--postgres-url", default=DEFAULT_POSTGRES_URL)
    arguments = parser.parse_args()
    rows = []
    with receiver() as url:
        for backend in arguments.backends:
            rows.append(measure(backend, arguments.postgres_url, arguments.actions, url))
            print(json.dumps(rows[-1]), flush=True)
    print(f"{'backend':<10} {'baseline/s':>11} {'dispatcher/s':>13} {'ratio':>7}  target >= {TARGET}")
    for row in rows:
        baseline = (float(row["baseline_before"]) + float(row["baseline_after"])) / 2
        verdict = "ok" if float(row["ratio"]) >= TARGET else "NO"
        print(f"{row['backend']:<10} {baseline:>11.1f} {row['dispatcher']:>13} {row['ratio']:>7}  {verdict}")


if __name__ == "__main__":
    main()
