"""How long it takes to load a big run, with and without snapshots.

A run admits N inputs in B batches through DecisionLedger.admit_inputs, so it has
B + 1 events, each BasisAdmitted event carrying its batch's input IDs. The script
then loads the run several times, each time with a fresh application instance and
no aggregate cache:

- with snapshots, as the ledger does by default (a Run snapshot every 20 versions,
  so only the events after the last snapshot are replayed);
- without snapshots, as the baseline: the same database, read by an application
  that ignores the snapshots table and replays every event.

It prints the median load times and their ratio.

    python -m bench.run_load                                  # a temporary SQLite file
    python -m bench.run_load --database-url 'postgresql://postgres@127.0.0.1:5432/test'

A PostgreSQL run works in a schema of its own: the one named by `?schema=`, which
must not exist yet, or a fresh `bench_...` one. The script creates it and drops it at
the end, so it never touches a schema it did not create.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import ClassVar

from application.commands import Commands
from application.ledger import DecisionLedger
from bench.common import new_database, sqlite_file
from domain.commands import AdmitInputs, OpenRun
from domain.identity import run_uuid
from domain.limits import MAX_BASIS_BATCH
from domain.run import Run
from infrastructure.database import DatabaseTarget, parse_database_url

RUN_ID = "bench-load"

#: No aggregate cache: every load reads the database.
WITHOUT_CACHE = {"AGGREGATE_CACHE_MAXSIZE": ""}


class DecisionLedgerWithoutSnapshots(DecisionLedger):
    """The same ledger and the same tables, reading every event instead of snapshots."""

    name = "DecisionLedger"
    is_snapshotting_enabled = False
    snapshotting_intervals: ClassVar = {}


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--database-url",
        help="sqlite:///path or postgresql://user@host/db[?schema=new_schema] "
        "(default: a temporary SQLite file)",
    )
    parser.add_argument("--inputs", type=int, default=200_000, help="inputs the run admits")
    parser.add_argument("--batches", type=int, default=200, help="batches they arrive in")
    parser.add_argument("--repetitions", type=int, default=7, help="loads of each kind")
    arguments = parser.parse_args()
    batch_size = -(-arguments.inputs // arguments.batches)
    if arguments.inputs < arguments.batches or batch_size > MAX_BASIS_BATCH:
        parser.error(
            f"each batch must hold 1 to {MAX_BASIS_BATCH} inputs; "
            f"{arguments.inputs} inputs in {arguments.batches} batches do not fit"
        )
    return arguments


# --- Where the benchmark runs -------------------------------------------------------------


@contextmanager
def benchmark_database(database_url: str | None) -> Iterator[DatabaseTarget]:
    """A database target of the benchmark's own, removed afterwards."""
    if database_url is None:
        with sqlite_file("bench-run-load-") as target:
            yield target
        return
    with new_database(parse_database_url(database_url)) as target:
        yield target


# --- Writing the run ------------------------------------------------------------------------


def write_big_run(target: DatabaseTarget, inputs: int, batches: int) -> float:
    """Open the run and admit its inputs batch by batch; the seconds it took."""
    ledger = DecisionLedger(env=target.library_env())
    commands = Commands.over(ledger)
    try:
        started = time.perf_counter()
        commands.runs.open(OpenRun(token="bench-open", actor="bench", run_id=RUN_ID, lane="bench"))
        input_ids = [f"input-{number:08d}" for number in range(inputs)]
        # Exactly `batches` batches, whose sizes differ by one at most.
        bounds = [inputs * batch_number // batches for batch_number in range(batches + 1)]
        for batch_number, (start, stop) in enumerate(itertools.pairwise(bounds)):
            commands.runs.admit(
                AdmitInputs(
                    token=f"bench-admit-{batch_number}",
                    actor="bench",
                    run_id=RUN_ID,
                    input_ids=tuple(input_ids[start:stop]),
                )
            )
        return time.perf_counter() - started
    finally:
        ledger.close()


# --- Loading it ----------------------------------------------------------------------------


def load_times(
    application_class: type[DecisionLedger], target: DatabaseTarget, repetitions: int
) -> tuple[list[float], Run]:
    """Load the run `repetitions` times, each with a fresh application and no cache."""
    env = {**target.library_env(), **WITHOUT_CACHE}
    if application_class is DecisionLedgerWithoutSnapshots:
        env["IS_SNAPSHOTTING_ENABLED"] = "n"
    seconds: list[float] = []
    run: Run | None = None
    for _ in range(repetitions):
        ledger = application_class(env=env)
        try:
            assert ledger.repository.cache is None, "the aggregate cache must be off"
            # Open a connection first: the figure is the load, not the connection set-up.
            ledger.recorder.max_notification_id()
            started = time.perf_counter()
            loaded = ledger.repository.get(run_uuid(RUN_ID))
            seconds.append(time.perf_counter() - started)
        finally:
            ledger.close()
        assert isinstance(loaded, Run)
        run = loaded
    assert run is not None
    return seconds, run


def snapshot_version(target: DatabaseTarget) -> int | None:
    ledger = DecisionLedger(env=target.library_env())
    try:
        assert ledger.snapshots is not None
        latest = list(ledger.snapshots.get(run_uuid(RUN_ID), desc=True, limit=1))
        return latest[0].originator_version if latest else None
    finally:
        ledger.close()


def milliseconds(seconds: float) -> str:
    return f"{seconds * 1000:,.1f} ms"


def print_table(rows: list[tuple[str, str]]) -> None:
    width = max(len(label) for label, _ in rows)
    for label, value in rows:
        print(f"  {label:<{width}}  {value}")


def main() -> None:
    arguments = parse_arguments()
    with benchmark_database(arguments.database_url) as target:
        print(f"Writing run {RUN_ID!r} on {target.describe()} ...", flush=True)
        write_seconds = write_big_run(target, arguments.inputs, arguments.batches)

        with_snapshots, run_from_snapshot = load_times(DecisionLedger, target, arguments.repetitions)
        without_snapshots, run_from_events = load_times(
            DecisionLedgerWithoutSnapshots, target, arguments.repetitions
        )

        # Both ways must give the same run, or the comparison means nothing.
        assert run_from_snapshot.version == run_from_events.version
        assert run_from_snapshot.admitted_count == run_from_events.admitted_count == arguments.inputs
        assert run_from_snapshot.basis_digest == run_from_events.basis_digest

        median_with = statistics.median(with_snapshots)
        median_without = statistics.median(without_snapshots)
        print_table(
            [
                ("back end", target.backend),
                ("inputs admitted", f"{arguments.inputs:,} in {arguments.batches} batches"),
                ("run events", f"{run_from_events.version}"),
                ("latest snapshot at version", f"{snapshot_version(target)}"),
                ("time to admit them", f"{write_seconds:,.1f} s"),
                ("repetitions per load", f"{arguments.repetitions} (median below)"),
                ("load with snapshots", milliseconds(median_with)),
                ("load without snapshots", milliseconds(median_without)),
                ("ratio (without / with)", f"{median_without / median_with:,.1f}x"),
            ]
        )


if __name__ == "__main__":
    main()
