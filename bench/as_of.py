"""Time-travel reads: latency of as-of queries as the history grows.

Measures, against the real server (PostgreSQL, projections on), the p50 and p99 latency of

    GET /runs/{run_id}/summary?as_of=<RFC 3339>
    GET /decisions/{decision_id}?as_of=<RFC 3339>

with histories of 10k, 100k and 1M events (by default), and prints p50(largest) /
p50(smallest) for each endpoint: an as-of read is an index lookup, so it should not
grow with the history (target: p50(1M) / p50(10k) <= 1.5).

How: a fresh schema per size. Its history is written with
`DecisionLedger.record_decision_batch` (runs of 5,000 decisions, a thousand per
transaction, plus each run's open and basis events) while a process per projection
catches it up a page per transaction (as a rebuild does); all sizes are written at
once. Then its tables are analyzed (as autovacuum would), and a server is started on it with its
projections on; /readyz must report a lag of 0 for every projection before anything
is measured. The as_of times are spread evenly across each whole history: for each of
`--points` evenly spaced positions, the latest decision recorded at or before it, its
run, and its recorded time. One separate load-generator process then reads them, one
request at a time, interleaving the sizes (point i of every size, then point i + 1,
...), so a noisy neighbour slows every size alike and the ratio stays fair. One warm-up
pass over every URL goes first, untimed.

    python -m bench.as_of                              # 10k, 100k, 1M
    python -m bench.as_of --sizes 10000,100000 --requests 200
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import quote

from bench.common import DEFAULT_POSTGRES_URL, Server, count_events, postgres_schema, run_loadgen, wait_ready
from infrastructure.database import DatabaseTarget

#: Decisions per run; each run also has an open and one basis event per 10,000 inputs.
RUN_SIZE = 5_000
BATCH = 1_000
ENDPOINTS = ("summary", "decision")


@dataclass
class HistoryBuilder:
    """Extends the ledger's history, run after run, to a number of events."""

    target: DatabaseTarget
    env: dict[str, str] | None = None
    runs: int = 0
    in_run: int = 0

    def extend_to(self, events: int, progress: Any = None) -> float:
        from application.commands import Commands
        from application.ledger import DecisionLedger
        from domain.canonical import fingerprint
        from domain.commands import AdmitInputs, ModelRef, OpenRun, RecordDecision

        ledger = DecisionLedger(env=self.env or self.target.library_env())
        commands = Commands.over(ledger)
        started = time.perf_counter()
        try:
            head = ledger.index.head_position()
            while head < events:
                if self.runs == 0 or self.in_run >= RUN_SIZE:
                    self.runs += 1
                    self.in_run = 0
                    run_id = self.run_id
                    commands.runs.open(
                        OpenRun(token=f"open-{run_id}", actor="bench", run_id=run_id, lane="fraud")
                    )
                    commands.runs.admit(
                        AdmitInputs(
                            token=f"basis-{run_id}",
                            actor="bench",
                            run_id=run_id,
                            input_ids=tuple(f"txn-{number}" for number in range(RUN_SIZE)),
                        )
                    )
                    head += 2
                run_id = self.run_id
                size = min(BATCH, RUN_SIZE - self.in_run, max(1, events - head))
                items = []
                for number in range(self.in_run, self.in_run + size):
                    decline = number % 5 == 0
                    items.append(
                        RecordDecision(
                            run_id=run_id,
                            input_id=f"txn-{number}",
                            outcome="decline" if decline else "approve",
                            score=round((number * 7919 % 1000) / 1000, 3),
                            model=ModelRef("gbm", "7"),
                            policy_version="2026-11",
                            reasons=("velocity",) if decline else (),
                            features_digest=None,
                            token=f"decide-{run_id}-{number}",
                            actor="bench",
                        )
                    )
                batch_token = f"batch-{run_id}-{self.in_run}"
                result = commands.batches.record(
                    run_id, items, batch_token, fingerprint("bench_batch", {"token": batch_token})
                )
                created = result.view.count("created")
                if created != size:
                    raise RuntimeError(f"a history batch created {created} of {size} decisions")
                self.in_run += size
                head = result.position
                if progress:
                    progress(head)
        finally:
            ledger.close()
        return time.perf_counter() - started

    @property
    def run_id(self) -> str:
        return f"asof-{self.runs:05d}"


def no_ddl_env(target: DatabaseTarget) -> dict[str, str]:
    """The tables exist: no DDL in the helper processes, or several of them replacing the
    same functions and triggers at once can deadlock."""
    return {**target.library_env(), "CREATE_TABLE": "n"}


def prepare(target: DatabaseTarget) -> None:
    """Create the ledger's tables and the projections' live generations, once, here."""
    from application.ledger import DecisionLedger
    from application.projections.runtime import Projections

    ledger = DecisionLedger(env=target.library_env())

    try:
        projections = Projections(ledger)
        for name in projections.names:
            projections.kind(name).build(projections.live_store(name), ledger)
    finally:
        ledger.close()


def build_history(target: DatabaseTarget, size: int) -> dict[str, Any]:
    """(In a helper process.) Write the history; its runs and seconds."""
    builder = HistoryBuilder(target, env=no_ddl_env(target))
    seconds = builder.extend_to(size)
    return {"runs": builder.runs, "build_s": seconds}


def follow(target: DatabaseTarget, name: str, done: Any) -> float:
    """(In a helper process.) Catch one projection up, a page per transaction, while the
    history is written and once more after it is done; the seconds it took."""
    from application.ledger import DecisionLedger
    from application.projections.runtime import Projections

    started = time.perf_counter()
    ledger = DecisionLedger(env=no_ddl_env(target))
    try:
        projections = Projections(ledger)
        projection = projections.kind(name).build(projections.live_store(name), ledger)
        while True:
            finished = done.is_set()
            projections.catch_up(projection)
            if finished:
                return time.perf_counter() - started
            time.sleep(0.5)
    finally:
        ledger.close()


def build_all(targets: list[tuple[DatabaseTarget, int]], progress: Any) -> list[dict[str, Any]]:
    """Write every history and catch its projections up, all at once: a writer process
    per history and a follower process per projection, so the projections catch up while
    the history is written rather than after it."""
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import Manager

    from application.projections.runtime import PROJECTION_KINDS

    for target, _ in targets:
        prepare(target)
    names = list(PROJECTION_KINDS)
    started = time.perf_counter()
    with Manager() as manager, ProcessPoolExecutor(max_workers=len(targets) * (1 + len(names))) as pool:
        jobs = []
        for target, size in targets:
            done = manager.Event()
            writer = pool.submit(build_history, target, size)
            writer.add_done_callback(lambda _, done=done: done.set())
            followers = [pool.submit(follow, target, name, done) for name in names]
            jobs.append((target, size, writer, followers))
        results = []
        for target, _, writer, followers in jobs:
            written = writer.result()
            catch_up = max(follower.result() for follower in followers)
            results.append(
                {
                    "target": target,
                    "events": count_events(target),
                    "runs": written["runs"],
                    "build_s": written["build_s"],
                    "caught_up_after_s": catch_up,
                }
            )
            progress(
                f"  as-of: {results[-1]['events']:,} events in {written['runs']} runs, written in "
                f"{written['build_s']:.0f} s, projections caught up after {catch_up:.0f} s"
            )
    progress(f"  as-of: histories ready in {time.perf_counter() - started:.0f} s")
    return results


def analyze(target: DatabaseTarget) -> None:
    """Fresh planner statistics, as autovacuum would leave them in a steady state, so no
    size is measured with stale ones."""
    import psycopg
    from psycopg import sql

    with psycopg.connect(target.conninfo, autocommit=True) as connection:
        tables = connection.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = %s", (target.schema,)
        ).fetchall()
        for (table,) in tables:
            connection.execute(sql.SQL("ANALYZE {}").format(sql.Identifier(target.schema, table)))


def sample_points(target: DatabaseTarget, points: int) -> list[dict[str, Any]]:
    """Evenly spaced points of the history: a decision, its run and a time it was known at."""
    import psycopg
    from psycopg import sql
    from psycopg.rows import dict_row

    positions = sql.Identifier(target.schema, "decisionledger_positions")
    chosen: list[dict[str, Any]] = []
    with psycopg.connect(target.conninfo, row_factory=dict_row) as connection:
        head = connection.execute(
            sql.SQL("SELECT max(position) AS head FROM {}").format(positions)
        ).fetchone()["head"]
        for index in range(points):
            position = max(1, round(head * (index + 1) / points))
            row = connection.execute(
                sql.SQL(
                    "SELECT position, originator_id, run_id, recorded_at FROM {} WHERE position <= %s"
                    " AND topic LIKE %s ORDER BY position DESC LIMIT 1"
                ).format(positions),
                (position, "%Decision%"),
            ).fetchone()
            if row is not None:
                chosen.append(row)
    return chosen


def as_of_urls(points: list[dict[str, Any]], base_url: str, suffix: str) -> list[dict[str, str]]:
    urls = []
    for point in points:
        moment: datetime = point["recorded_at"]
        as_of = quote(moment.isoformat(), safe="")
        urls.append(
            {"tag": f"summary{suffix}", "url": f"{base_url}/runs/{point['run_id']}/summary?as_of={as_of}"}
        )
        urls.append(
            {
                "tag": f"decision{suffix}",
                "url": f"{base_url}/decisions/{point['originator_id']}?as_of={as_of}",
            }
        )
    return urls


def measure(
    sizes: list[int],
    *,
    requests: int = 200,
    points: int = 50,
    postgres_url: str = DEFAULT_POSTGRES_URL,
    progress: Any = print,
) -> dict[str, Any]:
    """Build one history per size, then measure them all, interleaved."""
    sizes = sorted(set(sizes))
    with ExitStack() as stack:
        targets = [
            (stack.enter_context(postgres_schema(postgres_url, prefix="bench_asof")), size) for size in sizes
        ]
        progress(f"  as-of: writing histories of {', '.join(f'{size:,}' for size in sizes)} events ...")
        built = build_all(targets, progress)
        for entry in built:
            analyze(entry["target"])
        urls_by_size = []
        for entry in built:
            server = stack.enter_context(Server(entry["target"], run_projections=True))
            entry["ready"] = wait_ready(server.base_url)
            urls = as_of_urls(sample_points(entry["target"], points), server.base_url, f"@{entry['events']}")
            entry["points"] = len(urls) // 2
            urls_by_size.append(urls)
        # Interleaved: point i of every size, both endpoints, then point i + 1, ...
        interleaved = [url for group in zip(*urls_by_size, strict=False) for url in group]
        spec = {
            "workload": "get",
            "base_url": "http://127.0.0.1",
            "concurrency": 1,
            "connections": len(built),
            "requests": 2 * requests * len(built),
            "warmup": len(interleaved),
            "urls": interleaved,
        }
        result = run_loadgen(spec)
    if result["error_count"]:
        raise RuntimeError(f"as-of reads failed: {result['errors'][:3]}")
    results = []
    for entry in built:
        row = {key: value for key, value in entry.items() if key != "target"}
        for endpoint in ENDPOINTS:
            row[endpoint] = result["tags"][f"{endpoint}@{entry['events']}"]
        results.append(row)
        progress(
            f"  as-of @ {row['events']:,} events: summary p50 {row['summary']['p50_ms']:.2f} ms "
            f"p99 {row['summary']['p99_ms']:.2f} ms, decision p50 {row['decision']['p50_ms']:.2f} ms "
            f"p99 {row['decision']['p99_ms']:.2f} ms"
        )
    smallest, largest = results[0], results[-1]
    ratios = {endpoint: largest[endpoint]["p50_ms"] / smallest[endpoint]["p50_ms"] for endpoint in ENDPOINTS}
    return {
        "sizes": results,
        "ratio_p50_largest_over_smallest": ratios,
        "largest_events": largest["events"],
        "smallest_events": smallest["events"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10000,100000,1000000", help="history sizes, in events")
    parser.add_argument("--requests", type=int, default=500, help="timed requests per endpoint and size")
    parser.add_argument("--points", type=int, default=50, help="as_of times spread across the history")
    parser.add_argument("--postgres-url", default=DEFAULT_POSTGRES_URL)
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    arguments = parser.parse_args()
    sizes = [int(size.replace("_", "")) for size in arguments.sizes.split(",")]
    report = measure(
        sizes,
        requests=arguments.requests,
        points=arguments.points,
        postgres_url=arguments.postgres_url,
        progress=lambda line: print(line, file=sys.stderr, flush=True),
    )
    if arguments.json:
        print(json.dumps(report, indent=2, default=str))
        return
    print(f"{'events':>10}  {'endpoint':<9} {'p50 ms':>8} {'p99 ms':>8}")
    for entry in report["sizes"]:
        for endpoint in ENDPOINTS:
            stats = entry[endpoint]
            print(f"{entry['events']:>10,}  {endpoint:<9} {stats['p50_ms']:>8.2f} {stats['p99_ms']:>8.2f}")
    for endpoint, ratio in report["ratio_p50_largest_over_smallest"].items():
        verdict = "met" if ratio <= 1.5 else "NOT met"
        print(
            f"p50({report['largest_events']:,}) / p50({report['smallest_events']:,}) {endpoint}: "
            f"{ratio:.2f} (target <= 1.5: {verdict})"
        )


if __name__ == "__main__":
    main()
