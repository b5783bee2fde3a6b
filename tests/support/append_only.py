"""Tampering with the ledger's tables behind the application's back: a raw connection
per back end, each protected table with a change an intruder might make, and some
history to tamper with."""

from __future__ import annotations

import sqlite3
from typing import Any

import psycopg
from psycopg import sql

from application.ledger import DecisionLedger
from domain.commands import AdmitInputs, CloseRun, ModelRef, OpenRun, RecordDecision
from domain.identity import run_uuid
from domain.run import Run
from infrastructure.database import DatabaseTarget
from tests.support.ledger_commands import commands_of

RUN_ID = "audit-2024-06-01"
REFUSAL = "the ledger is append-only"

#: Each protected table, and a change an intruder might make to it.
TAMPERING = {
    "events": ("topic", "'tampered'"),
    "positions": ("run_id", "'tampered'"),
    "tokens": ("fingerprint", "'tampered'"),
    "basis": ("input_id", "'tampered'"),
    "seals": ("attempt", "attempt + 1"),
}


class RawTables:
    """A connection that bypasses the application, for one back end's tables."""

    def __init__(self, target: DatabaseTarget) -> None:
        self.target = target
        if target.backend == "sqlite":
            self.connection: Any = sqlite3.connect(str(target.sqlite_path))
        else:
            self.connection = psycopg.connect(target.conninfo, autocommit=True)

    def table(self, name: str) -> sql.Composable:
        if self.target.backend == "sqlite":
            physical = "stored_events" if name == "events" else f"ledger_{name}"
            return sql.Identifier(physical)
        return sql.Identifier(self.target.schema, f"decisionledger_{name}")

    def execute(self, statement: sql.Composed) -> None:
        if self.target.backend == "sqlite":
            try:
                self.connection.execute(statement.as_string(None))
            finally:
                self.connection.rollback()
        else:
            self.connection.execute(statement)

    def rows(self, name: str) -> list[tuple[Any, ...]]:
        statement = sql.SQL("SELECT * FROM {}").format(self.table(name))
        if self.target.backend == "sqlite":
            rows = self.connection.execute(statement.as_string(None)).fetchall()
        else:
            rows = [tuple(row) for row in self.connection.execute(statement).fetchall()]
        return sorted(rows, key=repr)

    def close(self) -> None:
        self.connection.close()


def refusal_errors(backend: str) -> type[Exception]:
    return sqlite3.DatabaseError if backend == "sqlite" else psycopg.Error


def write_some_history(ledger: DecisionLedger) -> None:
    """A run with a basis and a decision, then sealed: a row in every protected table."""
    commands_of(ledger).runs.open(OpenRun(token="open-1", actor="scheduler", run_id=RUN_ID, lane="credit"))
    commands_of(ledger).runs.admit(
        AdmitInputs(token="admit-1", actor="loader", run_id=RUN_ID, input_ids=("a", "b"))
    )
    commands_of(ledger).decisions.record(
        RecordDecision(
            token="record-1",
            actor="scorer",
            run_id=RUN_ID,
            input_id="a",
            outcome="approve",
            model=ModelRef("scorecard", "7.1"),
        )
    )
    run = ledger.repository.get(run_uuid(RUN_ID))
    assert isinstance(run, Run)
    run.seal(CloseRun(token="close-1", actor="scheduler", run_id=RUN_ID))
    ledger.save(run)
