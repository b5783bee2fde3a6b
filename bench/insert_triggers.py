"""What SQLite's refuse-an-existing-key triggers cost a write (append-only against
`INSERT OR REPLACE`, infrastructure/sqlite_store.py).

Two ledgers in one process, one with the BEFORE INSERT triggers and one with them
dropped, take the same commands (admit one input, decide it) in alternating blocks;
the result is the ratio of their median seconds per write.

    python -m bench.insert_triggers
    python -m bench.insert_triggers --blocks 12 --block-size 500
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path

from application.commands import Commands
from application.ledger import DecisionLedger, LedgerTuning
from domain.commands import AdmitInputs, ModelRef, OpenRun, RecordDecision
from infrastructure.database import parse_database_url

RUN_ID = "bench-triggers"


class Writer:
    def __init__(self, directory: Path, with_triggers: bool) -> None:
        path = directory / ("with.sqlite3" if with_triggers else "without.sqlite3")
        environment = parse_database_url(f"sqlite:///{path}").library_env()
        self.ledger = DecisionLedger(env=environment, tuning=LedgerTuning(group_commit=False))
        self.commands = Commands.over(self.ledger)
        if not with_triggers:
            with sqlite3.connect(path) as connection:
                names = connection.execute(
                    "SELECT name FROM sqlite_master WHERE type = 'trigger' AND name LIKE '%refuse_existing_key'"
                ).fetchall()
                for (name,) in names:
                    connection.execute(f"DROP TRIGGER {name}")
        self.commands.runs.open(OpenRun(token="open", actor="bench", run_id=RUN_ID, lane="fraud"))
        self.written = 0
        self.seconds_per_write: list[float] = []

    def block(self, size: int) -> None:
        start = time.perf_counter()
        for _ in range(size):
            number = self.written
            self.written += 1
            self.commands.runs.admit(
                AdmitInputs(
                    token=f"admit-{number}", actor="bench", run_id=RUN_ID, input_ids=(f"in-{number}",)
                )
            )
            self.commands.decisions.record(
                RecordDecision(
                    token=f"decide-{number}",
                    actor="bench",
                    run_id=RUN_ID,
                    input_id=f"in-{number}",
                    outcome="approve",
                    model=ModelRef("bench", "1"),
                )
            )
        self.seconds_per_write.append((time.perf_counter() - start) / (2 * size))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--blocks", type=int, default=8)
    parser.add_argument("--block-size", type=int, default=300, help="commands of each kind per block")
    arguments = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        with_triggers, without = Writer(Path(directory), True), Writer(Path(directory), False)
        for number in range(arguments.blocks):
            for writer in (with_triggers, without) if number % 2 else (without, with_triggers):
                writer.block(arguments.block_size)
        medians = [statistics.median(writer.seconds_per_write) for writer in (with_triggers, without)]
        for writer in (with_triggers, without):
            writer.ledger.close()
    print(f"with the triggers:    {medians[0] * 1000:.3f} ms per write (median of {arguments.blocks} blocks)")
    print(f"without the triggers: {medians[1] * 1000:.3f} ms per write")
    print(f"ratio: {medians[0] / medians[1]:.3f}")


if __name__ == "__main__":
    main()
