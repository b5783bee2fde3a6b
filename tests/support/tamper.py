"""Tampering with stored events behind the application's back (a raw connection per back
end), and a history of runs to tamper with: shared by the audit-chain and transparency tests."""

from __future__ import annotations

import json
import sqlite3
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from fastapi.testclient import TestClient
from psycopg import sql

from application.proof_checks import verify_run_proof
from application.store_verification import ChainReport, StoreVerifier
from infrastructure.database import parse_database_url
from infrastructure.settings import Settings
from infrastructure.signing import Signer
from interfaces.api.app import create_app
from interfaces.bootstrap import build_service
from tests.support.proofs import CliResult, LedgerApi, decision_ledger

COMMITTED_RUN = "tamper-committed"
OPEN_RUN = "tamper-open"


class RawEvents:
    """The stored events table over a plain connection, as an intruder would reach it."""

    def __init__(self, database_url: str) -> None:
        self.target = parse_database_url(database_url)
        if self.target.backend == "sqlite":
            self.connection: Any = sqlite3.connect(str(self.target.sqlite_path), isolation_level=None)
            self.events: Any = sql.Identifier("stored_events")
            self.position: Any = sql.SQL("rowid")
        else:
            self.connection = psycopg.connect(self.target.conninfo, autocommit=True)
            self.events = sql.Identifier(self.target.schema, "decisionledger_events")
            self.position = sql.Identifier("notification_id")

    def execute(self, statement: sql.Composable, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        if self.target.backend == "sqlite":
            return self.connection.execute(statement.as_string(None).replace("%s", "?"), params).fetchall()
        cursor = self.connection.execute(statement, params)
        return cursor.fetchall() if cursor.description else []

    def drop_append_only_triggers(self) -> None:
        if self.target.backend == "sqlite":
            for trigger in ("stored_events_refuse_update", "stored_events_refuse_delete"):
                self.execute(sql.SQL("DROP TRIGGER {}").format(sql.Identifier(trigger)))
        else:
            self.execute(
                sql.SQL("DROP TRIGGER {} ON {}").format(
                    sql.Identifier("decisionledger_events_append_only"), self.events
                )
            )

    def state(self, position: int) -> dict[str, Any]:
        return json.loads(self.stored_text(position))

    def stored_text(self, position: int) -> str:
        """The state as stored, byte for byte (as text)."""
        [(state,)] = self.execute(
            sql.SQL("SELECT state FROM {} WHERE {} = %s").format(self.events, self.position), (position,)
        )
        return bytes(state).decode()

    def set_state(self, position: int, state: bytes) -> None:
        self.execute(
            sql.SQL("UPDATE {} SET state = %s WHERE {} = %s").format(self.events, self.position),
            (state, position),
        )

    def edit_state(self, position: int, change: Callable[[dict[str, Any]], None]) -> None:
        state = self.state(position)
        change(state)
        self.set_state(position, json.dumps(state).encode())

    def delete(self, position: int) -> None:
        self.execute(sql.SQL("DELETE FROM {} WHERE {} = %s").format(self.events, self.position), (position,))

    def insert_copy(self, source: int, *, version: int, position: int) -> None:
        """A copy of the event at `source`, as a later version of its aggregate, at `position`."""
        self.execute(
            sql.SQL(
                "INSERT INTO {events} ({position}, originator_id, originator_version, topic, state)"
                " SELECT %s, originator_id, %s, topic, state FROM {events} WHERE {position} = %s"
            ).format(events=self.events, position=self.position),
            (position, version, source),
        )

    def swap(self, first: int, second: int) -> None:
        """Exchange two events' positions (through a free one: the positions are unique)."""
        for old, new in ((first, -1), (second, first), (-1, second)):
            self.execute(
                sql.SQL("UPDATE {} SET {} = %s WHERE {} = %s").format(
                    self.events, self.position, self.position
                ),
                (new, old),
            )

    def burn_a_position(self) -> None:
        """A transaction that inserts and rolls back: PostgreSQL's sequence skips a value."""
        with self.connection.transaction(force_rollback=True):
            self.execute(
                sql.SQL(
                    "INSERT INTO {} (originator_id, originator_version, topic, state) VALUES (%s, 1, %s, %s)"
                ).format(self.events),
                (uuid.uuid4(), "rolled.back:Never", b"{}"),
            )

    def close(self) -> None:
        self.connection.close()


@contextmanager
def raw_events(database_url: str) -> Iterator[RawEvents]:
    events = RawEvents(database_url)
    try:
        yield events
    finally:
        events.close()


# --- A history to tamper with --------------------------------------------------------------------


@dataclass
class History:
    database_url: str
    signing_key: str
    workdir: Path
    positions: dict[str, int] = field(default_factory=dict)
    head: int = 0
    gap: int | None = None

    def settings(self) -> Settings:
        return Settings(
            database_url=self.database_url, signing_key=self.signing_key, api_keys=[], api_keys_file=None
        )

    def audit_verify(self, *options: str) -> CliResult:
        return decision_ledger(
            "audit",
            "verify",
            "--database-url",
            self.database_url,
            "--public-key",
            Signer.from_hex(self.signing_key).public_key,
            *options,
            cwd=self.workdir,
            signing_key=self.signing_key,
        )

    def verify_directly(self, *, from_position: int = 1, to_position: int | None = None) -> ChainReport:
        """What `audit verify` does, in this process: the proofs, then the chain."""
        service = build_service(self.settings())
        try:
            verifier = StoreVerifier(service.ledger.recorder, service.read_models.audit_stream)
            proofs = verifier.committed_proofs() if from_position == 1 else []
            for proof in proofs:
                verify_run_proof(proof, service.signer.public_key)
            return verifier.verify_chain(
                from_position=from_position,
                to_position=to_position,
                starting_hash=service.read_models.chain_hash_before(from_position),
                proofs=proofs,
            )
        finally:
            service.close()

    def rebuild_audit_log(self) -> None:
        service = build_service(self.settings())
        try:
            service.projections.rebuild("audit", grace=0)
        finally:
            service.close()


def write_history(database_url: str, signing_key: str, workdir: Path, *, with_gap: bool = False) -> History:
    """A committed run (decisions a, b, c, sealed and proven) and an open run (x, y).
    With `with_gap`, a rolled-back transaction leaves an unused position before b."""
    history = History(database_url, signing_key, workdir)
    with TestClient(create_app(history.settings())) as client:
        api = LedgerApi(client)
        api.open_run(COMMITTED_RUN)
        api.admit(COMMITTED_RUN, "a", "b", "c")
        history.positions["a"] = api.decide(COMMITTED_RUN, "a")["position"]
        if with_gap:
            with raw_events(database_url) as events:
                events.burn_a_position()
        for input_id in ("b", "c"):
            history.positions[input_id] = api.decide(COMMITTED_RUN, input_id)["position"]
        verdict = api.close(COMMITTED_RUN)
        assert verdict["verdict"] == "committed", verdict
        history.positions["seal"] = verdict["seal_position"]
        api.open_run(OPEN_RUN)
        api.admit(OPEN_RUN, "x", "y")
        for input_id in ("x", "y"):
            history.positions[input_id] = api.decide(OPEN_RUN, input_id)["position"]
        api.wait_for_views()
        history.head = api.head
    if with_gap:
        history.gap = history.positions["a"] + 1
        assert history.positions["b"] == history.gap + 1, history.positions
    return history
