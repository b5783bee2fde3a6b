"""A view row altered by hand fails `Projections.verify`, which names the difference, and
`decision-ledger projections verify` exits 1. On SQLite and PostgreSQL.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
from pathlib import Path

import psycopg

from application.ledger import DecisionLedger
from application.projections.runtime import Projections
from infrastructure.database import parse_database_url
from tests.support.history import write_history
from tests.support.views import live_projections


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
