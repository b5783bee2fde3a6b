"""How fast a projection rebuilds from the log, and how much memory that takes, as the
log grows.

For each size N the script writes a history of N events into a database of its own,
then rebuilds one projection (default `runs`) from position 0 in a child process, as
`decision-ledger projections rebuild --name runs` does. It reports the rebuild's
seconds and events per second (timed inside the child, around the rebuild alone) and
the child's peak resident memory (sampled every 50 ms with psutil, and the kernel's own
high-water mark from wait4). A rebuild that streams the log needs about the same memory
at any size: the last column compares the largest size with 100k.

The history is written quickly, in batches: runs of `--events-per-run` events, each
opened, its basis admitted in batches of 10,000, then decisions saved a thousand per
transaction, with a correction for one decision in fifty and an action requested and
committed for another one in fifty.

    python -m bench.rebuild                                           # temporary PostgreSQL schemas in db `test`
    python -m bench.rebuild --sizes 10000,100000
    python -m bench.rebuild --database-url sqlite:///rebuild.sqlite3 --sizes 10000

A PostgreSQL run works in fresh schemas it creates (or in the one named by `?schema=`,
suffixed per size) and drops them at the end; a SQLite run writes `<file>.<size>` files
(or temporary ones) and removes them.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import psutil

from application.commands import Commands
from application.ledger import DecisionLedger
from bench.common import DEFAULT_POSTGRES_URL, new_database, sqlite_file
from domain.action import Action
from domain.commands import (
    AdmitInputs,
    CommitAction,
    CorrectDecision,
    ModelRef,
    OpenRun,
    RecordDecision,
    RequestAction,
)
from domain.decision import Decision
from infrastructure.database import DatabaseTarget, parse_database_url
from infrastructure.settings import Settings
from interfaces.bootstrap import build_service

DEFAULT_SIZES = "10000,100000,1000000"
SAMPLE_INTERVAL = 0.05
DECISIONS_PER_SAVE = 1_000
BASIS_BATCH = 10_000


@dataclass(frozen=True)
class Measurement:
    events: int
    write_seconds: float
    rebuild_seconds: float
    peak_rss_sampled: int
    peak_rss_kernel: int

    @property
    def events_per_second(self) -> float:
        return self.events / self.rebuild_seconds

    @property
    def peak_rss(self) -> int:
        return max(self.peak_rss_sampled, self.peak_rss_kernel)


# --- Databases of the benchmark's own ------------------------------------------------------


def database_url_of(target: DatabaseTarget) -> str:
    """The URL that names a DatabaseTarget again (for the child process)."""
    if target.backend == "sqlite":
        return f"sqlite:///{target.sqlite_path}"
    password = f":{target.password}" if target.password else ""
    return f"postgresql://{target.user}{password}@{target.host}:{target.port}/{target.dbname}?schema={target.schema}"


@contextmanager
def fresh_database(database_url: str | None, size: int) -> Iterator[str]:
    """A new, empty database for one size, removed afterwards."""
    base = parse_database_url(database_url or DEFAULT_POSTGRES_URL)
    if base.backend == "sqlite" and not database_url:
        with sqlite_file("bench-rebuild-") as target:
            yield database_url_of(target)
        return
    if base.backend == "sqlite":
        assert base.sqlite_path is not None
        sized = replace(base, sqlite_path=Path(f"{base.sqlite_path}.{size}"))
    else:
        schema = f"{base.schema}_{size}" if base.schema else f"bench_rebuild_{uuid.uuid4().hex[:8]}_{size}"
        sized = replace(base, schema=schema)
    with new_database(sized) as target:
        yield database_url_of(target)


# --- Writing a history ------------------------------------------------------------------------


def write_history(database_url: str, events: int, events_per_run: int) -> int:
    """About `events` events, in batch saves; returns how many were written."""
    # A small aggregate cache: the history is written once and never read back here.
    env = {
        **parse_database_url(database_url).library_env(),
        "AGGREGATE_CACHE_MAXSIZE": "100",
        "GROUP_COMMIT": "n",
    }
    ledger = DecisionLedger(env=env)
    commands = Commands.over(ledger)
    model = ModelRef("gbm", "7")
    written = 0
    try:
        run_number = 0
        while written < events:
            run_id = f"bench-{run_number:05d}"
            run_number += 1
            commands.runs.open(OpenRun(token=f"open-{run_id}", actor="bench", run_id=run_id, lane="fraud"))
            written += 1
            # Decisions, plus the admissions, corrections and actions that go with them.
            budget = min(events_per_run, events - written)
            decisions = max(1, int(budget / (1 + 1 / BASIS_BATCH + 1 / 50 + 2 / 50)))
            input_ids = [f"{run_id}-input-{number:07d}" for number in range(decisions)]
            for start in range(0, len(input_ids), BASIS_BATCH):
                commands.runs.admit(
                    AdmitInputs(
                        token=f"basis-{run_id}-{start}",
                        actor="bench",
                        run_id=run_id,
                        input_ids=tuple(input_ids[start : start + BASIS_BATCH]),
                    )
                )
                written += 1
            for start in range(0, len(input_ids), DECISIONS_PER_SAVE):
                aggregates: list[object] = []
                for number, input_id in enumerate(input_ids[start : start + DECISIONS_PER_SAVE], start):
                    decision = Decision.record(
                        RecordDecision(
                            token=f"decide-{input_id}",
                            actor="bench",
                            run_id=run_id,
                            input_id=input_id,
                            outcome=("approve", "decline", "refer")[number % 3],
                            score=0.5,
                            model=model,
                        ),
                        1,
                    )
                    aggregates.append(decision)
                    if number % 50 == 1:
                        decision.correct(
                            CorrectDecision(
                                token=f"correct-{input_id}",
                                actor="bench",
                                decision_id=decision.id,
                                outcome="refer",
                                reason="second look",
                            ),
                            1,
                        )
                    if number % 50 == 2:
                        action = Action.request(
                            RequestAction(
                                token=f"request-{input_id}",
                                actor="bench",
                                run_id=run_id,
                                action_key=f"block-{input_id}",
                                decision_id=decision.id,
                                kind="block-card",
                            ),
                            1,
                            input_id,
                        )
                        action.commit(
                            CommitAction(token=f"commit-{input_id}", actor="bench", action_id=action.id), 1
                        )
                        aggregates.append(action)
                recordings = ledger.save(*aggregates)  # type: ignore[arg-type]
                written += len(recordings)
        return ledger.index.count_after(0)
    finally:
        ledger.close()


# --- Rebuilding in a child process ------------------------------------------------------------


def child_main(database_url: str, projection: str) -> None:
    """What `decision-ledger projections rebuild --name NAME` runs, timed around the rebuild."""
    service = build_service(Settings(database_url=database_url, signing_key=os.urandom(32).hex()))
    try:
        started = time.perf_counter()
        service.projections.rebuild(projection)
        seconds = time.perf_counter() - started
        position = service.projections.live_store(projection).position()
    finally:
        service.close()
    print(json.dumps({"seconds": seconds, "position": position}))


def rebuild_in_child(database_url: str, projection: str) -> tuple[float, int, int, list[str]]:
    """(rebuild seconds, sampled peak RSS, kernel peak RSS, the command) of one rebuild."""
    command = [
        sys.executable,
        "-m",
        "bench.rebuild",
        "--child",
        "--database-url",
        database_url,
        "--projection",
        projection,
    ]
    child = subprocess.Popen(command, stdout=subprocess.PIPE, cwd=Path(__file__).resolve().parent.parent)
    process = psutil.Process(child.pid)
    sampled_peak = 0
    finished = threading.Event()

    def sample() -> None:
        nonlocal sampled_peak
        while not finished.wait(SAMPLE_INTERVAL):
            try:
                sampled_peak = max(sampled_peak, process.memory_info().rss)
            except psutil.Error:
                return

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    assert child.stdout is not None
    output = child.stdout.read()
    # wait4 gives this child's own high-water mark (ru_maxrss, in KiB on Linux).
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    finished.set()
    sampler.join()
    if child.returncode != 0:
        raise SystemExit(f"the rebuild failed with exit code {child.returncode}")
    result = json.loads(output.decode().strip().splitlines()[-1])
    return result["seconds"], sampled_peak, usage.ru_maxrss * 1024, command


# --- Reporting ----------------------------------------------------------------------------------


def megabytes(size: int) -> str:
    return f"{size / 2**20:,.0f}"


def print_table(measurements: list[Measurement]) -> None:
    header = ("events", "write s", "rebuild s", "events/s", "peak RSS MB (sampled / kernel)")
    rows = [
        (
            f"{m.events:,}",
            f"{m.write_seconds:,.1f}",
            f"{m.rebuild_seconds:,.1f}",
            f"{m.events_per_second:,.0f}",
            f"{megabytes(m.peak_rss_sampled)} / {megabytes(m.peak_rss_kernel)}",
        )
        for m in measurements
    ]
    widths = [max(len(row[column]) for row in [header, *rows]) for column in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(cell.rjust(width) for cell, width in zip(row, widths, strict=True)))
    at_100k = next(
        (m for m in measurements if m.events >= 100_000 * 0.99 and m.events <= 100_000 * 1.01), None
    )
    largest = max(measurements, key=lambda m: m.events)
    if at_100k is not None and largest is not at_100k:
        print(
            f"peak RSS at {largest.events:,} events / at {at_100k.events:,}: {largest.peak_rss / at_100k.peak_rss:.2f}"
        )


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--database-url",
        help=f"postgresql://user@host/db[?schema=prefix] or sqlite:///path (default: fresh schemas in {DEFAULT_POSTGRES_URL})",
    )
    parser.add_argument(
        "--sizes", default=DEFAULT_SIZES, help=f"comma-separated event counts (default {DEFAULT_SIZES})"
    )
    parser.add_argument(
        "--projection", default="runs", choices=["runs", "audit"], help="the projection to rebuild"
    )
    parser.add_argument(
        "--events-per-run", type=int, default=10_000, help="events in each run of the history"
    )
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    try:
        arguments.sizes = [int(size.replace("_", "")) for size in arguments.sizes.split(",")]
    except ValueError:
        parser.error("--sizes takes comma-separated integers, e.g. 10000,100000")
    return arguments


def main() -> None:
    arguments = parse_arguments()
    if arguments.child:
        child_main(arguments.database_url, arguments.projection)
        return
    measurements = []
    for size in arguments.sizes:
        with fresh_database(arguments.database_url, size) as database_url:
            print(f"writing {size:,} events ...", file=sys.stderr, flush=True)
            started = time.perf_counter()
            events = write_history(database_url, size, arguments.events_per_run)
            write_seconds = time.perf_counter() - started
            print(
                f"rebuilding {arguments.projection} over {events:,} events ...", file=sys.stderr, flush=True
            )
            seconds, sampled, kernel, command = rebuild_in_child(database_url, arguments.projection)
            measurements.append(Measurement(events, write_seconds, seconds, sampled, kernel))
            print(f"  {' '.join(command)}", file=sys.stderr)
            print(
                f"  {events:,} events: {seconds:,.1f} s, {events / seconds:,.0f} events/s,"
                f" peak RSS {megabytes(max(sampled, kernel))} MB",
                file=sys.stderr,
                flush=True,
            )
    print(
        f"rebuild of {arguments.projection!r} from position 0, in a child process (python -m bench.rebuild --child)"
    )
    print_table(measurements)


if __name__ == "__main__":
    main()
