"""Killing the projection worker in the middle of a catch-up loses nothing and
applies nothing twice.

`decision-ledger projections run` follows a log of a few thousand events, one
transaction per event holding its view rows and its tracking position. It is killed
with SIGKILL while it is part-way through, started again, and left to catch up. Then
every event has exactly one audit record, at its own position; every run summary
counts exactly the run's stored events; and verify finds the views identical to a
rebuild. On SQLite and on PostgreSQL.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from application.ledger import DecisionLedger
from application.projections.runtime import Projections
from application.queries.read_models import ReadModels
from domain.commands import ModelRef, OpenRun, RecordDecision
from tests.support.history import write_history
from tests.support.ledger_commands import commands_of
from tests.support.polling import wait_until

pytestmark = pytest.mark.slow

#: How long the worker may take to catch up with the whole log (seconds).
CATCH_UP_TIMEOUT = 120


def start_worker(
    database_url: str, directory: Path, signing_key_hex: str, log_name: str
) -> subprocess.Popen[bytes]:
    executable = Path(sys.executable).with_name("decision-ledger")
    with (directory / log_name).open("wb") as log:
        return subprocess.Popen(
            [str(executable), "projections", "run", "--database-url", database_url],
            cwd=directory,
            env={**os.environ, "DECISION_LEDGER_SIGNING_KEY": signing_key_hex},
            stdout=log,
            stderr=subprocess.STDOUT,
        )


def write_bulk_run(ledger: DecisionLedger, run_id: str, decisions: int) -> None:
    commands_of(ledger).runs.open(
        OpenRun(token=f"open-{run_id}", actor="scheduler", run_id=run_id, lane="fraud")
    )
    input_ids = [f"{run_id}-input-{number:05d}" for number in range(decisions)]
    for start in range(0, decisions, 500):
        items = [
            RecordDecision(
                token=f"decide-{input_id}",
                actor="scorer",
                run_id=run_id,
                input_id=input_id,
                outcome="approve",
                model=ModelRef("gbm", "7"),
            )
            for input_id in input_ids[start : start + 500]
        ]
        commands_of(ledger).batches.record(run_id, items, f"batch-{run_id}-{start}", f"fingerprint-{start}")


def positions(projections: Projections) -> dict[str, int]:
    return {status.name: status.position for status in projections.status()}


def killed_part_way(positions: dict[str, int], head: int) -> bool:
    """The leading projection has applied a quarter of the log or more, and none all of it."""
    return max(positions.values()) >= head // 4 and all(position < head for position in positions.values())


def stop(worker: subprocess.Popen[bytes]) -> None:
    """Ctrl-C, as an operator stops it; SIGKILL if it does not stop in time."""
    if worker.poll() is None:
        worker.send_signal(signal.SIGINT)
        try:
            worker.wait(timeout=15)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()


def test_a_worker_killed_mid_catch_up_resumes_and_applies_every_event_exactly_once(
    ledger: DecisionLedger, database_url: str, tmp_path: Path, signing_key_hex: str
) -> None:
    projections = Projections(ledger)

    # Several thousand events are written before any worker runs: a varied history,
    # then a long run of decisions recorded in batches.
    write_history(ledger, random.Random(11), runs=2, inputs_per_run=300)
    write_bulk_run(ledger, "run-bulk", decisions=6000)
    head = ledger.index.head_position()
    assert ledger.index.count_after(0) > 6500
    # The views' first generation exists before the worker and this test both look at it.
    for name in projections.names:
        projections.live_generation(name)

    # A worker starts catching up, and is killed part-way through.
    first = start_worker(database_url, tmp_path, signing_key_hex, "first-worker.log")
    try:
        part_way = wait_until(lambda: killed_part_way(positions(projections), head), 60)
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    assert part_way, (positions(projections), head, (tmp_path / "first-worker.log").read_text())
    killed_at = positions(projections)
    assert killed_part_way(killed_at, head), (killed_at, head)

    # Another worker starts where the first one stopped and catches up.
    second = start_worker(database_url, tmp_path, signing_key_hex, "second-worker.log")
    try:
        caught_up = wait_until(
            lambda: set(positions(projections).values()) == {head}, CATCH_UP_TIMEOUT, interval=0.05
        )
    finally:
        stop(second)
    assert caught_up, (positions(projections), head, (tmp_path / "second-worker.log").read_text())

    # Every stored event has exactly one audit record, at its own position.
    stored = [
        notification.id for notification in ledger.recorder.select_notifications(start=1, limit=head + 1)
    ]
    read_models = ReadModels(projections)
    audited = [row["position"] for row in read_models.audit_stream(0, None)]
    assert audited == stored

    # Every run summary counts exactly the run's stored events, and its audit records.
    run_ids = sorted({event.run_id for event in ledger.index.events_between(0, None, head + 1)})
    for run_id in run_ids:
        summary = read_models.summary(run_id)
        stored_events = ledger.index.count_run_events(run_id, 2**62)
        assert (summary.event_count, summary.audit_records) == (stored_events, stored_events), run_id

    # Both views are identical to a rebuild of them.
    for name in projections.names:
        assert projections.verify(name) == (head, [])
