"""Baselines, measured in the same run as the scenarios they are compared with.

- the bare eventsourcing library: `Application.save()` of N new trivial aggregates per
  save (N = 1 on PostgreSQL and on a SQLite file; N = 100 and 1,000 on PostgreSQL),
  by one thread and by 32 threads sharing one application;
- the same library saving 1,000 of the ledger's own Decision aggregates per save, built
  from their commands (fingerprints included), with none of the ledger's index rows, by
  one thread: what the batch endpoint's decisions cost the library itself;
- raw psycopg: `INSERT` one row and `COMMIT`, one row per transaction, by one thread
  and by 32 threads (a connection each).

Each measurement works in a fresh PostgreSQL schema or a temporary SQLite file. The
rate is saves (transactions) per second, and items (aggregates, rows) per second.

    python -m bench.baselines [--duration 3] [--postgres-url URL]
"""

from __future__ import annotations

import argparse
import json
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any
from uuid import UUID

from eventsourcing.application import Application
from eventsourcing.domain import Aggregate

from bench.common import DEFAULT_POSTGRES_URL, database, latency_summary
from domain.clock import system_clock
from domain.commands import ModelRef, RecordDecision
from domain.decision import Decision
from infrastructure.database import DatabaseTarget

#: Thread counts every baseline is measured with.
THREADS = (1, 32)


class Thing(Aggregate):
    """The most trivial aggregate: created, nothing else."""


class BareApplication(Application[UUID]):
    name = "BenchBare"


@dataclass(frozen=True)
class Baseline:
    name: str
    backend: str
    threads: int
    per_save: int
    saves: int
    seconds: float
    saves_per_s: float
    items_per_s: float
    p50_ms: float
    p99_ms: float
    #: CPU time of this process per save during the timed loop (the harness process does
    #: nothing else meanwhile; the database server's CPU is not included).
    cpu_ms_per_save: float = float("nan")

    @property
    def key(self) -> str:
        return f"{self.name}@{self.threads}"


def bare_env(target: DatabaseTarget, threads: int) -> dict[str, str]:
    """The library's own recorder, on the same database settings the ledger uses."""
    env = {key: value for key, value in target.library_env().items() if key != "APPLICATION_RECORDER_TOPIC"}
    if target.backend == "postgres":
        # Enough connections that no thread waits for the pool.
        env["POSTGRES_POOL_SIZE"] = str(max(5, threads))
        env["POSTGRES_MAX_OVERFLOW"] = "0"
    return env


def timed_loop(
    threads: int, duration: float, operation: Callable[[], None]
) -> tuple[int, float, list[float]]:
    """Run `operation` in `threads` threads for `duration` seconds: (count, seconds, latencies)."""
    latencies: list[list[float]] = [[] for _ in range(threads)]
    barrier = threading.Barrier(threads + 1)
    deadline = [0.0]
    failures: list[BaseException] = []

    def work(number: int) -> None:
        mine = latencies[number]
        barrier.wait()
        try:
            while True:
                started = time.perf_counter()
                if started >= deadline[0]:
                    return
                operation()
                mine.append(time.perf_counter() - started)
        except BaseException as error:  # report it, do not hang the barrier
            failures.append(error)

    workers = [threading.Thread(target=work, args=(number,), daemon=True) for number in range(threads)]
    for worker in workers:
        worker.start()
    started = time.perf_counter()
    deadline[0] = started + duration
    barrier.wait()
    for worker in workers:
        worker.join()
    elapsed = time.perf_counter() - started
    if failures:
        raise failures[0]
    flat = [value for values in latencies for value in values]
    return len(flat), elapsed, flat


def library_saves(
    target: DatabaseTarget,
    per_save: int,
    threads: int,
    duration: float,
    make: Callable[[], Aggregate] = Thing,
) -> tuple[int, float, list[float]]:
    app = BareApplication(env=bare_env(target, threads))
    try:
        for _ in range(3):  # connections and prepared statements, untimed
            app.save(*(make() for _ in range(per_save)))
        return timed_loop(threads, duration, lambda: app.save(*[make() for _ in range(per_save)]))
    finally:
        app.close()


def new_decision() -> Aggregate:
    """One of the ledger's Decision aggregates, as the batch endpoint makes them."""
    token = f"lane-a|POST /runs/bench/decisions|{uuid.uuid4()}"
    command = RecordDecision(
        run_id="bench",
        input_id=token[-36:],
        outcome="approve",
        score=0.5,
        model=ModelRef("gbm", "7"),
        policy_version="p1",
        reasons=("velocity",),
        token=token,
        actor="lane-a",
    )
    return Decision.record(command, attempt=1, now=system_clock())


def psycopg_inserts(target: DatabaseTarget, threads: int, duration: float) -> tuple[int, float, list[float]]:
    import psycopg
    from psycopg import sql

    table = sql.SQL("{}.{}").format(sql.Identifier(target.schema), sql.Identifier("raw_rows"))
    with psycopg.connect(target.conninfo, autocommit=True) as connection:
        connection.execute(
            sql.SQL(
                "CREATE TABLE {} (id bigserial PRIMARY KEY, originator_id uuid NOT NULL, state bytea NOT NULL)"
            ).format(table)
        )
    insert = sql.SQL("INSERT INTO {} (originator_id, state) VALUES (%s, %s)").format(table)
    payload = b"x" * 200
    local = threading.local()
    connections: list[psycopg.Connection[Any]] = []
    lock = threading.Lock()

    def one() -> None:
        connection = getattr(local, "connection", None)
        if connection is None:
            connection = local.connection = psycopg.connect(target.conninfo)
            with lock:
                connections.append(connection)

        connection.execute(insert, (uuid.uuid4(), payload), prepare=True)
        connection.commit()

    try:
        return timed_loop(threads, duration, one)
    finally:
        for connection in connections:
            connection.close()


PLAN: dict[str, tuple[int, Callable[[DatabaseTarget, int, float], tuple[int, float, list[float]]]]] = {
    "lib-save-1": (1, lambda target, threads, duration: library_saves(target, 1, threads, duration)),
    "lib-save-100": (100, lambda target, threads, duration: library_saves(target, 100, threads, duration)),
    "lib-save-1000": (1000, lambda target, threads, duration: library_saves(target, 1000, threads, duration)),
    "lib-save-1000-decisions": (
        1000,
        lambda target, threads, duration: library_saves(target, 1000, threads, duration, new_decision),
    ),
    "psycopg-insert-commit": (
        1,
        lambda target, threads, duration: psycopg_inserts(target, threads, duration),
    ),
}
#: (name, back end, thread counts) in the order they are measured.
ALL = (
    ("lib-save-1", "postgres", THREADS),
    ("lib-save-1", "sqlite", THREADS),
    ("lib-save-100", "postgres", THREADS),
    ("lib-save-1000", "postgres", THREADS),
    ("lib-save-1000-decisions", "postgres", (1,)),
    ("psycopg-insert-commit", "postgres", THREADS),
)


def measure_one(
    name: str, backend: str, threads: int, duration: float, postgres_url: str = DEFAULT_POSTGRES_URL
) -> Baseline:
    """One baseline, in a fresh schema or SQLite file of its own."""
    per_save, measure = PLAN[name]
    with database(backend, postgres_url, prefix="bench_base") as target:
        cpu_before = time.process_time()
        saves, seconds, latencies = measure(target, threads, duration)
        cpu = time.process_time() - cpu_before
    summary = latency_summary(latencies)
    return Baseline(
        name=name,
        backend=backend,
        threads=threads,
        per_save=per_save,
        saves=saves,
        seconds=seconds,
        saves_per_s=saves / seconds,
        items_per_s=saves * per_save / seconds,
        p50_ms=summary["p50_ms"],
        p99_ms=summary["p99_ms"],
        cpu_ms_per_save=1000 * cpu / saves if saves else float("nan"),
    )


def measure_all(
    duration: float, postgres_url: str = DEFAULT_POSTGRES_URL, progress: Callable[[str], None] = print
) -> list[Baseline]:
    results: list[Baseline] = []
    for name, backend, thread_counts in ALL:
        for threads in thread_counts:
            baseline = measure_one(name, backend, threads, duration, postgres_url)
            progress(
                f"  baseline {name} ({backend}, {threads} thread{'s' if threads > 1 else ''}): "
                f"{baseline.saves_per_s:,.0f} saves/s, {baseline.items_per_s:,.0f} items/s, "
                f"{baseline.cpu_ms_per_save:.2f} ms CPU per save"
            )
            results.append(baseline)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=3.0, help="seconds per measurement")
    parser.add_argument("--postgres-url", default=DEFAULT_POSTGRES_URL)
    arguments = parser.parse_args()
    results = measure_all(arguments.duration, arguments.postgres_url)
    print(json.dumps([asdict(result) for result in results], indent=2))


if __name__ == "__main__":
    main()
