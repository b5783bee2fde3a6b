"""Verifying the projections: `Projections.verify` rebuilds them into scratch tables and
compares those with the live views, row by row, as of the live position.

After a long random history the live views, built a page at a time as the log grew,
are identical to a rebuild. Once someone alters a view row by hand, verify names the
difference, and `decision-ledger projections verify` exits 1. On SQLite and PostgreSQL.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from uuid import UUID

import psycopg
import pytest

from application.ledger import DecisionLedger
from application.projections.base import LedgerProjection
from application.projections.runtime import Projections
from domain.commands import (
    AdmitInputs,
    CommitAction,
    CorrectDecision,
    FailAction,
    ModelRef,
    OpenRun,
    RecordDecision,
    RequestAction,
    WaiveAction,
)
from domain.identity import decision_uuid
from infrastructure.database import parse_database_url
from tests.ledger_commands import commands_of

MODEL = ModelRef("gbm", "7")
OUTCOMES = ("approve", "decline", "refer")
DECISION_BATCH = 250


def write_history(
    ledger: DecisionLedger,
    rng: random.Random,
    *,
    runs: int,
    inputs_per_run: int,
    after_each_write: Callable[[], None] = lambda: None,
) -> None:
    """Runs that admit overlapping batches (with duplicates), decide most of their inputs
    and a few never admitted, correct some decisions, and request actions that commit,
    fail, fail for good and are waived, or stay pending. About `runs * inputs_per_run`
    events in all, most of them decisions recorded in batches."""
    for run_number in range(runs):
        run_id = f"run-{run_number:03d}"
        commands_of(ledger).runs.open(
            OpenRun(
                token=f"open-{run_id}", actor="scheduler", run_id=run_id, lane=rng.choice(["fraud", "credit"])
            )
        )
        inputs = [f"{run_id}-input-{number:05d}" for number in range(inputs_per_run)]
        for batch_number in range(3):
            batch = rng.sample(inputs, k=len(inputs) // 2) + rng.sample(inputs, k=5)
            commands_of(ledger).runs.admit(
                AdmitInputs(
                    token=f"basis-{run_id}-{batch_number}",
                    actor="loader",
                    run_id=run_id,
                    input_ids=tuple(batch),
                )
            )
            after_each_write()
        # Most inputs are decided, and a few decisions name inputs never admitted.
        decided = rng.sample(inputs, k=int(len(inputs) * 0.9)) + [
            f"{run_id}-stray-{number}" for number in range(3)
        ]
        for start in range(0, len(decided), DECISION_BATCH):
            items = [
                RecordDecision(
                    token=f"decide-{run_id}-{input_id}",
                    actor="scorer",
                    run_id=run_id,
                    input_id=input_id,
                    outcome=rng.choice(OUTCOMES),
                    score=rng.random(),
                    model=MODEL,
                )
                for input_id in decided[start : start + DECISION_BATCH]
            ]
            token = f"batch-{run_id}-{start}"
            commands_of(ledger).batches.record(run_id, items, token, f"fingerprint-{token}")
            after_each_write()
        for input_id in rng.sample(decided, k=len(decided) // 20):
            commands_of(ledger).decisions.correct(
                CorrectDecision(
                    token=f"correct-{run_id}-{input_id}",
                    actor="operator",
                    decision_id=decision_uuid(run_id, input_id),
                    outcome=rng.choice(OUTCOMES),
                    reason="second look",
                )
            )
        for input_id in rng.sample(decided, k=len(decided) // 20):
            write_action(ledger, rng, run_id, input_id)
        after_each_write()


def write_action(ledger: DecisionLedger, rng: random.Random, run_id: str, input_id: str) -> None:
    action = (
        commands_of(ledger)
        .actions.request(
            RequestAction(
                token=f"request-{run_id}-{input_id}",
                actor="scorer",
                run_id=run_id,
                action_key=f"block-{input_id}",
                decision_id=decision_uuid(run_id, input_id),
                kind="block-card",
            )
        )
        .view
    )
    action_id, token = UUID(action.action_id), f"{run_id}-{input_id}"
    fate = rng.choice(["commit", "fail then commit", "fail for good", "fail then waive", "pending"])
    if fate.startswith("fail"):
        commands_of(ledger).actions.fail(
            FailAction(
                token=f"fail-{token}",
                actor="scorer",
                action_id=action_id,
                error="timeout",
                retryable=fate != "fail for good",
            )
        )
    if fate.endswith("commit"):
        commands_of(ledger).actions.commit(
            CommitAction(token=f"commit-{token}", actor="scorer", action_id=action_id)
        )
    if fate.endswith("waive"):
        commands_of(ledger).actions.waive(
            WaiveAction(token=f"waive-{token}", actor="operator", action_id=action_id, reason="by hand")
        )


def live_projections(projections: Projections) -> dict[str, LedgerProjection]:
    """Each projection over its live generation, as a worker holds them."""
    return {
        name: projections.kind(name).build(projections.live_store(name), projections.app)
        for name in projections.names
    }


def execute_by_hand(database_url: str, statement: str) -> None:
    """Run one statement on its own connection, as someone at a SQL prompt would."""
    target = parse_database_url(database_url)
    if target.backend == "sqlite":
        import sqlite3

        with sqlite3.connect(str(target.sqlite_path)) as connection:
            connection.execute(statement)
        return
    with psycopg.connect(target.conninfo, autocommit=True) as connection:
        connection.execute(statement)  # type: ignore[arg-type]


def decision_ledger_cli(*arguments: str, cwd: Path, signing_key_hex: str) -> subprocess.CompletedProcess[str]:
    executable = Path(sys.executable).with_name("decision-ledger")
    environment = {**os.environ, "DECISION_LEDGER_SIGNING_KEY": signing_key_hex}
    return subprocess.run(
        [str(executable), *arguments], cwd=cwd, env=environment, capture_output=True, text=True, timeout=120
    )


@pytest.mark.slow
def test_the_live_views_equal_a_rebuild_after_a_long_random_history(ledger: DecisionLedger) -> None:
    projections = Projections(ledger)
    live = live_projections(projections)
    rng = random.Random(20261127)

    def follow_the_log() -> None:
        # The live views follow the log a page at a time, pages of any size.
        for projection in live.values():
            projections.catch_up(projection, page=rng.randint(1, 400))

    # A few thousand events, followed as they are written.
    write_history(ledger, rng, runs=6, inputs_per_run=450, after_each_write=follow_the_log)
    follow_the_log()
    head = ledger.index.head_position()
    assert ledger.index.count_after(0) > 2500

    # Each view is identical to a rebuild of it, as of the head.
    for name in projections.names:
        assert projections.verify(name) == (head, [])


def test_a_view_row_altered_by_hand_fails_verification(
    ledger: DecisionLedger, database_url: str, tmp_path: Path, signing_key_hex: str
) -> None:
    projections = Projections(ledger)
    live = live_projections(projections)

    # A short history; the live views follow it.
    write_history(ledger, random.Random(7), runs=2, inputs_per_run=40)
    for projection in live.values():
        projections.catch_up(projection)
    assert [projections.verify(name)[1] for name in projections.names] == [[] for _ in projections.names]

    # Someone bumps a run's current decision count in the live summary table.
    summary_table = projections.live_tables("runs")["summary"]
    execute_by_hand(
        database_url,
        f"UPDATE {summary_table} SET decision_count = decision_count + 1 WHERE run_id = 'run-001' AND valid_to IS NULL",
    )

    # Verify names the altered row: live and rebuilt differ in that count only.
    position, differences = projections.verify("runs")
    assert position == ledger.index.head_position()
    [difference] = differences
    assert (difference.table, difference.key.split(", ")[0]) == ("summary", "run-001")
    assert difference.live is not None and difference.rebuilt is not None
    changed = {column for column in difference.live if difference.live[column] != difference.rebuilt[column]}
    assert changed == {"decision_count"}
    assert difference.live["decision_count"] == difference.rebuilt["decision_count"] + 1

    # The audit log, untouched, still verifies.
    assert projections.verify("audit")[1] == []

    # The command line says so too, and exits 1.
    result = decision_ledger_cli(
        "projections",
        "verify",
        "--name",
        "runs",
        "--database-url",
        database_url,
        cwd=tmp_path,
        signing_key_hex=signing_key_hex,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "1 difference(s)" in result.stdout and "summary" in result.stdout
