"""Where a rebuild of the runs view spends its Python: the CPU seconds of each step over
the same events, in one process, with the database left out.

A rebuild runs in one Python process, and its threads share one interpreter lock: the
reading thread's parsing and the main thread's fold and writes take turns on one core,
while the database's backends use the machine's other cores. So the rebuild's rate against
the library's read+decode rate (bench/rebuild.py) is bounded by this process's CPU: at
0.5, reading, parsing, folding and formatting the events may cost no more than twice the
CPU of the library's reading and decoding, before the driver's and the database's own
work. This script measures each part:

- read:   the projections' reader fetching the stored events with their index rows;
- decode: the application's mapper turning each stored event into a domain event (the
          library's decoding, in the denominator of the rebuild's ratio);
- parse:  the runs projection's own decoding (it folds each event's stored state, parsed);
- fold:   the runs projection folding the parsed events a page at a time (reads of
          versions stored by earlier pages answered from memory, writes kept);
- format: the fold, plus the rows it writes formatted as psycopg's COPY would send them.

Each step runs `--repeat` times; the least CPU time is reported (this machine is shared).

    python -m bench.fold_cpu                                  # 100,000 events, PostgreSQL
    python -m bench.fold_cpu --backend sqlite --events 20000
    python -m bench.fold_cpu --database-url postgresql://postgres@127.0.0.1:5432/test?schema=NAME
"""

from __future__ import annotations

import argparse
import gc
import time
from collections.abc import Callable, Iterable, Sequence
from contextlib import closing
from typing import Any

from psycopg._copy_base import TextFormatter
from psycopg.adapt import Transformer

from application.gc_pauses import fewer_collections
from application.ledger import DecisionLedger
from application.projections.base import LogPage
from application.projections.run_views import RunViewsProjection
from application.projections.runtime import CATCH_UP_PAGE
from bench.common import database, url_of
from bench.rebuild import write_history
from infrastructure.database import parse_database_url


class KeptTables:
    """A view's tables as the fold sees them: the versions in force that the last two
    pages wrote are read back by key (as a database would answer; older ones are let go,
    so memory stays flat), and, with `formatted`, every row is formatted for COPY."""

    projection = "runs"
    generation = 1

    def __init__(self, *, formatted: bool) -> None:
        self.formatter = TextFormatter(Transformer()) if formatted else None
        #: Per table: (the versions in force the last page wrote, those of the page before).
        self.in_force: dict[str, tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]] = {}

    def tables(self, names: Iterable[str]) -> dict[str, str]:
        return {name: name for name in names}

    def create_tables(self, *arguments: Any) -> None:
        pass

    def position_within(self, cursor: Any) -> None:
        return None  # as the projection left it: it keeps what it knows

    def insert_rows(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        if self.formatter is not None:
            for row in rows:
                self.formatter.write_row(row)
            self.formatter.end()
        if "valid_to" in columns:
            open_at = list(columns).index("valid_to")
            written = {
                str(row[0]): dict(zip(columns, row, strict=True)) for row in rows if row[open_at] is None
            }
            self.in_force[table] = (written, self.in_force.get(table, ({}, {}))[0])

    def executemany(self, statement: str, rows: Sequence[Sequence[Any]]) -> None:
        pass

    def select_in(self, statement: str, params: Sequence[Any], values: Sequence[Any]) -> list[dict[str, Any]]:
        last, before = self.in_force.get(statement.split(" FROM ")[1].split()[0], ({}, {}))
        return [last.get(value) or before[value] for value in values if value in last or value in before]


def least_cpu(step: Callable[[], object], repeat: int) -> float:
    seconds = []
    for _ in range(repeat):
        started = time.process_time()
        step()
        seconds.append(time.process_time() - started)
    return min(seconds)


def measure(database_url: str, repeat: int) -> dict[str, float]:
    ledger = DecisionLedger(env=parse_database_url(database_url).library_env())
    with closing(ledger), fewer_collections():  # as a rebuild runs

        def read() -> list[list[Any]]:
            pages, position = [], 0
            while rows := ledger.index.logged_events_between(position, None, CATCH_UP_PAGE):
                pages.append(rows)
                position = rows[-1].position
            return pages

        stored_pages = read()
        library_decode = ledger.mapper.to_domain_event
        decode = RunViewsProjection.decoder(ledger.mapper)  # what the runs view folds
        pages = [LogPage([(decode(row), row) for row in rows]) for rows in stored_pages]
        # The log is held whole here (a rebuild holds a few pages): the collector is told
        # to leave it be, so each step pays for its own objects only.
        gc.freeze()

        def fold(formatted: bool) -> None:
            tables = KeptTables(formatted=formatted)
            projection = RunViewsProjection(tables, None)
            for page in pages:
                projection.begin_batch(tables, page)
                for domain_event, logged in page.events:
                    projection.apply(tables, domain_event, logged)
                projection.end_batch(tables)

        cpu = {
            "events": sum(len(page.events) for page in pages),
            "read": least_cpu(read, repeat),
            "decode": least_cpu(
                lambda: [[library_decode(row) for row in rows] for rows in stored_pages], repeat
            ),
            "parse": least_cpu(lambda: [[decode(row) for row in rows] for rows in stored_pages], repeat),
            "fold": least_cpu(lambda: fold(False), repeat),
            "format": least_cpu(lambda: fold(True), repeat),
        }
        gc.unfreeze()
        return cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", choices=("postgres", "sqlite"), default="postgres")
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--events-per-run", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--database-url", help="measure the history of this database, as it is")
    arguments = parser.parse_args()
    if arguments.database_url:
        cpu = measure(arguments.database_url, arguments.repeat)
    else:
        with database(arguments.backend, prefix="bench_fold") as target:
            url = url_of(target)
            print(f"writing {arguments.events:,} events ...", flush=True)
            write_history(url, arguments.events, arguments.events_per_run)
            cpu = measure(url, arguments.repeat)
    reading = cpu["read"] + cpu["decode"]
    print(
        f"{int(cpu['events']):,} events, least CPU seconds of {arguments.repeat} runs:"
        f" read {cpu['read']:.2f}, decode {cpu['decode']:.2f}, parse {cpu['parse']:.2f},"
        f" fold {cpu['fold']:.2f}, fold+format {cpu['format']:.2f};"
        f" (read+parse+fold+format) / (read+decode) = {(cpu['read'] + cpu['parse'] + cpu['format']) / reading:.2f}"
        " (a rebuild at 0.5 of the library's rate needs it under 2, with the driver's own work on top)"
    )


if __name__ == "__main__":
    main()
