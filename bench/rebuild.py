"""How fast a projection rebuilds from the log, and how much memory that takes, as the
log grows.

For each size N the script writes a history of N events into a database of its own,
then rebuilds one projection (default `runs`) from position 0 in a child process, as
`decision-ledger projections rebuild --name runs` does. It reports the rebuild's
seconds and events per second (timed inside the child, around the rebuild alone) and
the child's peak resident memory (sampled every 50 ms with psutil, and the kernel's own
high-water mark from wait4). A rebuild that streams the log needs about the same memory
at any size: the last line compares the largest size with the smallest.

Each rate is compared with the eventsourcing library's own read+decode rate on the same
log (and so is the projections' own reading of the log, applied to nothing: the ceiling
of any rebuild), measured in the same run, in a child process of its own, right before and right
after the rebuilds (their mean): `select_notifications` in pages of 1,000, each
notification decoded to a domain event by the application's mapper. With `--verify` the
script also rebuilds the audit log and times `audit verify` (the chain recomputed over
every stored event and compared with the audit log), against the same rate.

The history is written quickly, in batches: runs of `--events-per-run` events, each
opened, its basis admitted in batches of 10,000, then decisions saved a thousand per
transaction, with a correction for one decision in fifty and an action requested and
committed for another one in fifty.

    python -m bench.rebuild                                           # temporary PostgreSQL schemas in db `test`
    python -m bench.rebuild --sizes 10000,100000
    python -m bench.rebuild --backend sqlite --sizes 100000 --verify  # a temporary SQLite file
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
from contextlib import closing, contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import psutil

from application.commands import Commands
from application.gc_pauses import fewer_collections
from application.ledger import DecisionLedger
from application.projections.log_pages import log_pages
from application.projections.runtime import CATCH_UP_PAGE
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
    #: The library's read+decode rate on the same log (mean of before and after).
    library_rate: float
    #: Seconds the projections' own reading of the log takes (no event applied).
    scan_seconds: float
    verify_seconds: float | None = None

    @property
    def events_per_second(self) -> float:
        return self.events / self.rebuild_seconds

    @property
    def ratio(self) -> float:
        return self.events_per_second / self.library_rate

    @property
    def scan_ratio(self) -> float:
        return self.events / self.scan_seconds / self.library_rate

    @property
    def verify_rate(self) -> float | None:
        return None if self.verify_seconds is None else self.events / self.verify_seconds

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
def fresh_database(database_url: str | None, backend: str, size: int) -> Iterator[str]:
    """A new, empty database for one size, removed afterwards."""
    if backend == "sqlite" and not database_url:
        with sqlite_file("bench-rebuild-") as target:
            yield database_url_of(target)
        return
    base = parse_database_url(database_url or DEFAULT_POSTGRES_URL)
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
                        ledger.clock(),
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
                            ledger.clock(),
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


# --- In child processes ---------------------------------------------------------------------


def child_read(database_url: str) -> dict[str, float]:
    """The library's read+decode rate: every stored event, in pages of 1,000, each
    decoded to a domain event by the application's mapper."""
    ledger = DecisionLedger(env=parse_database_url(database_url).library_env())
    try:
        started = time.perf_counter()
        position, events = 0, 0
        while True:
            page = ledger.recorder.select_notifications(start=position, limit=1000, inclusive_of_start=False)
            if not page:
                break
            for notification in page:
                ledger.mapper.to_domain_event(notification)
            events += len(page)
            position = page[-1].id
        return {"seconds": time.perf_counter() - started, "events": events}
    finally:
        ledger.close()


def child_scan(database_url: str, projection: str) -> dict[str, float]:
    """The log read as the projection's catch-up reads it (pages of events decoded as it
    folds them, with their index rows; from PostgreSQL read ahead by a thread), applied
    to nothing: no rebuild can be faster."""
    service = build_service(Settings(database_url=database_url, signing_key=os.urandom(32).hex()))
    try:
        started, events = time.perf_counter(), 0
        app = service.projections.app
        decode = service.projections.kind(projection).decoder(app)
        scan = log_pages(app, after=0, up_to=None, page=CATCH_UP_PAGE, decode=decode)
        with fewer_collections(), closing(scan) as pages:
            for page in pages:
                events += len(page.events)
        return {"seconds": time.perf_counter() - started, "events": events}
    finally:
        service.close()


def child_rebuild(database_url: str, projection: str) -> dict[str, float]:
    """What `decision-ledger projections rebuild --name NAME` runs, timed around the rebuild."""
    service = build_service(Settings(database_url=database_url, signing_key=os.urandom(32).hex()))
    try:
        started = time.perf_counter()
        service.projections.rebuild(projection, grace=0)
        seconds = time.perf_counter() - started
        position = service.projections.live_store(projection).position()
    finally:
        service.close()
    return {"seconds": seconds, "position": position}


def child_verify(database_url: str) -> dict[str, float]:
    """What `decision-ledger audit verify` runs, timed; the audit log is rebuilt first."""
    service = build_service(Settings(database_url=database_url, signing_key=os.urandom(32).hex()))
    try:
        service.projections.rebuild("audit", grace=0)
        started = time.perf_counter()
        report, unaudited = service.verify_audit_log(lambda proof: None)
        seconds = time.perf_counter() - started
    finally:
        service.close()
    if unaudited:
        raise SystemExit(f"{unaudited} events are not in the audit log")
    return {"seconds": seconds, "events": report.checked}


CHILDREN = {
    "read": lambda url, projection: child_read(url),
    "scan": child_scan,
    "rebuild": child_rebuild,
    "verify": lambda url, projection: child_verify(url),
}


def in_child(database_url: str, mode: str, projection: str) -> tuple[dict[str, float], int, int, list[str]]:
    """(the child's answer, its sampled peak RSS, its kernel peak RSS, the command)."""
    command = [
        sys.executable,
        "-m",
        "bench.rebuild",
        "--child",
        mode,
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
        raise SystemExit(f"the {mode} child failed with exit code {child.returncode}")
    result = json.loads(output.decode().strip().splitlines()[-1])
    return result, sampled_peak, usage.ru_maxrss * 1024, command


def measure(
    database_url: str, events: int, write_seconds: float, arguments: argparse.Namespace
) -> Measurement:
    """The library's rate, the rebuild (and verify), then the library's rate again."""
    before, *_ = in_child(database_url, "read", arguments.projection)
    say(f"  library read+decode: {before['events'] / before['seconds']:,.0f} events/s")
    scanned, *_ = in_child(database_url, "scan", arguments.projection)
    say(f"  the projections' reading alone: {scanned['events'] / scanned['seconds']:,.0f} events/s")
    rebuilt, sampled, kernel, command = in_child(database_url, "rebuild", arguments.projection)
    say(f"  {' '.join(command)}")
    say(
        f"  rebuild: {rebuilt['seconds']:,.1f} s, {events / rebuilt['seconds']:,.0f} events/s,"
        f" peak RSS {megabytes(max(sampled, kernel))} MB"
    )
    verify_seconds = None
    if arguments.verify:
        verified, *_ = in_child(database_url, "verify", arguments.projection)
        verify_seconds = verified["seconds"]
        say(f"  audit verify: {verify_seconds:,.1f} s, {verified['events'] / verify_seconds:,.0f} events/s")
    after, *_ = in_child(database_url, "read", arguments.projection)
    say(f"  library read+decode again: {after['events'] / after['seconds']:,.0f} events/s")
    library_rate = (before["events"] / before["seconds"] + after["events"] / after["seconds"]) / 2
    return Measurement(
        events,
        write_seconds,
        rebuilt["seconds"],
        sampled,
        kernel,
        library_rate,
        scanned["seconds"],
        verify_seconds,
    )


# --- Reporting ----------------------------------------------------------------------------------


def megabytes(size: int) -> str:
    return f"{size / 2**20:,.0f}"


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def print_table(measurements: list[Measurement]) -> None:
    header = (
        "events",
        "write s",
        "library events/s",
        "scan ratio",
        "rebuild s",
        "events/s",
        "ratio",
        "verify events/s",
        "verify ratio",
        "peak RSS MB (sampled / kernel)",
    )
    rows = [
        (
            f"{m.events:,}",
            f"{m.write_seconds:,.1f}",
            f"{m.library_rate:,.0f}",
            f"{m.scan_ratio:.2f}",
            f"{m.rebuild_seconds:,.1f}",
            f"{m.events_per_second:,.0f}",
            f"{m.ratio:.2f}",
            "-" if m.verify_rate is None else f"{m.verify_rate:,.0f}",
            "-" if m.verify_rate is None else f"{m.verify_rate / m.library_rate:.2f}",
            f"{megabytes(m.peak_rss_sampled)} / {megabytes(m.peak_rss_kernel)}",
        )
        for m in measurements
    ]
    widths = [max(len(row[column]) for row in [header, *rows]) for column in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(cell.rjust(width) for cell, width in zip(row, widths, strict=True)))
    smallest = min(measurements, key=lambda m: m.events)
    largest = max(measurements, key=lambda m: m.events)
    if largest is not smallest:
        print(
            f"peak RSS at {largest.events:,} events / at {smallest.events:,}: {largest.peak_rss / smallest.peak_rss:.2f}"
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
    parser.add_argument(
        "--backend",
        default="postgres",
        choices=["postgres", "sqlite"],
        help="without --database-url: fresh PostgreSQL schemas, or temporary SQLite files",
    )
    parser.add_argument(
        "--verify", action="store_true", help="also rebuild the audit log and time `audit verify`"
    )
    parser.add_argument("--child", choices=sorted(CHILDREN), help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    try:
        arguments.sizes = [int(size.replace("_", "")) for size in arguments.sizes.split(",")]
    except ValueError:
        parser.error("--sizes takes comma-separated integers, e.g. 10000,100000")
    return arguments


def main() -> None:
    arguments = parse_arguments()
    if arguments.child:
        print(json.dumps(CHILDREN[arguments.child](arguments.database_url, arguments.projection)))
        return
    measurements = []
    for size in arguments.sizes:
        with fresh_database(arguments.database_url, arguments.backend, size) as database_url:
            say(f"writing {size:,} events ...")
            started = time.perf_counter()
            events = write_history(database_url, size, arguments.events_per_run)
            write_seconds = time.perf_counter() - started
            say(f"rebuilding {arguments.projection} over {events:,} events ...")
            measurements.append(measure(database_url, events, write_seconds, arguments))
    backend = (
        parse_database_url(arguments.database_url).backend if arguments.database_url else arguments.backend
    )
    print(
        f"rebuild of {arguments.projection!r} from position 0 on {backend}, in a child process"
        " (python -m bench.rebuild --child rebuild); ratio: against the library's read+decode"
        " rate on the same log, measured just before and just after (their mean); scan ratio: the"
        " projections' own reading of the log, applied to nothing (python -m bench.rebuild --child scan),"
        " against the same rate: no rebuild's ratio can exceed it"
    )
    print_table(measurements)


if __name__ == "__main__":
    main()
