"""`decision-ledger audit verify --checkpoint` against an intruder with a SQL prompt.

Each test writes a history through the REST API (a committed run, then an open run whose
events come after the last seal), saves signed checkpoints and the keys (GET /keys) as
files, as someone outside the database would, and only then tampers with the database:
triggers dropped by hand, and often the audit log rebuilt to hide the change. The
checkpoints catch what the hash chain and the run proofs cannot: events after the last
seal, byte edits that decode to the same JSON, and a database rolled back to a backup.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from psycopg import sql

from infrastructure.database import parse_database_url
from interfaces.api.app import create_app
from tests.support.databases import PostgresSchema
from tests.support.proofs import CliResult, decision_ledger
from tests.support.tamper import History, RawEvents, raw_events, write_history


@dataclass
class Evidence:
    """What an auditor keeps outside the database."""

    history: History
    checkpoints: Path
    keys: Path
    tree_size: int

    def verify(self, *options: str) -> CliResult:
        return decision_ledger(
            "audit", "verify", "--database-url", self.history.database_url,
            "--checkpoint", str(self.checkpoints), "--trusted-keys", str(self.keys), *options,
            cwd=self.history.workdir,
        )  # fmt: skip

    def refused_at(self, position: int, *words: str) -> str:
        cli = self.verify()
        assert cli.returncode == 1, (cli.stdout, cli.stderr)
        assert cli.error_line.startswith(f"error: position {position}"), cli.error_line
        for word in words:
            assert word in cli.error_line, cli.error_line
        return cli.error_line


def save_evidence(history: History, name: str = "head") -> Evidence:
    """A checkpoint of the whole tree as it is now, one of an earlier size, and the keys."""
    folder = history.workdir / "checkpoints"
    folder.mkdir(exist_ok=True)
    with TestClient(create_app(history.settings())) as client:
        service = client.app.state.service  # type: ignore[attr-defined]
        service.read_models.wait_for(history.head)
        made = service.transparency.make_checkpoint()
        (folder / f"{name}.checkpoint").write_text(made.note)
        earlier = client.get("/checkpoint", params={"size": 2})
        assert earlier.status_code == 200, earlier.text
        (folder / "early.checkpoint").write_text(earlier.text)
        keys = history.workdir / "keys.json"
        keys.write_text(json.dumps(client.get("/keys").json()))
    return Evidence(history, folder, keys, made.tree_size)


@pytest.fixture
def evidence(database_url: str, signing_key_hex: str, tmp_path: Path) -> Evidence:
    return save_evidence(write_history(database_url, signing_key_hex, tmp_path))


@pytest.fixture
def postgres_evidence(postgres_schema: PostgresSchema, signing_key_hex: str, tmp_path: Path) -> Evidence:
    return save_evidence(write_history(postgres_schema.url, signing_key_hex, tmp_path, with_gap=True))


def raw_state(events: RawEvents, position: int) -> bytes:
    [(state,)] = events.execute(
        sql.SQL("SELECT state FROM {} WHERE {} = %s").format(events.events, events.position), (position,)
    )
    return bytes(state)


# --- Untouched, and refusing to run without trust ---------------------------------------------


def test_an_untouched_store_matches_its_saved_checkpoints(evidence: Evidence) -> None:
    cli = evidence.verify()
    assert cli.returncode == 0, cli.stderr
    assert f"2 signed checkpoint(s) match (tree sizes 2, {evidence.tree_size})" in cli.stdout, cli.stdout


def test_verify_commands_fail_closed_without_a_trusted_key(evidence: Evidence, tmp_path: Path) -> None:
    proof = tmp_path / "proof.json"
    proof.write_text("{}")
    for arguments in (
        ("audit", "verify", "--database-url", evidence.history.database_url),
        (
            "audit",
            "verify",
            "--database-url",
            evidence.history.database_url,
            "--checkpoint",
            str(evidence.checkpoints),
        ),
        ("proof", "verify", str(proof)),
        ("proof", "verify-inclusion", str(proof)),
        ("proof", "verify-tlog", str(proof)),
    ):
        cli = decision_ledger(*arguments, cwd=tmp_path)
        assert cli.returncode == 1, (arguments, cli.stderr)
        assert cli.error_line.startswith("error: the signer is not trusted:"), cli.error_line
        assert "--public-key KEY or --trusted-keys FILE" in cli.error_line


def test_a_checkpoint_by_an_unknown_key_is_refused(evidence: Evidence, tmp_path: Path) -> None:
    # Trusting only some other key: the saved checkpoints prove nothing.
    stranger = tmp_path / "stranger.keys"
    stranger.write_text("ab" * 32 + "\n")
    cli = decision_ledger(
        "audit", "verify", "--database-url", evidence.history.database_url,
        "--checkpoint", str(evidence.checkpoints), "--trusted-keys", str(stranger), cwd=tmp_path,
    )  # fmt: skip
    assert cli.returncode == 1, cli.stderr
    assert "no trusted key signed this note" in cli.error_line


# --- Tampering the checkpoints catch -----------------------------------------------------------


def test_the_tail_after_the_last_seal_deleted_and_the_audit_log_rebuilt(evidence: Evidence) -> None:
    history = evidence.history
    first_deleted = history.positions["seal"] + 1
    with raw_events(history.database_url) as events:
        events.drop_append_only_triggers()
        for position in range(first_deleted, history.head + 1):
            events.delete(position)
    history.rebuild_audit_log()

    # The chain and the run proof still hold: only the checkpoint sees the loss.
    alone = history.audit_verify()
    assert alone.returncode == 0, alone.stderr
    evidence.refused_at(first_deleted, "the tail was deleted, or an older backup was restored")


def test_one_byte_added_to_a_stored_event_is_found_at_its_position(evidence: Evidence) -> None:
    history = evidence.history
    edited = history.positions["b"]
    with raw_events(history.database_url) as events:
        events.drop_append_only_triggers()
        before = events.state(edited)
        raw = raw_state(events, edited)
        colon = raw.index(b":") + 1
        events.set_state(edited, raw[:colon] + b" " + raw[colon:])
        assert events.state(edited) == before  # the same JSON value: the chain cannot tell

    assert history.audit_verify().returncode == 0
    evidence.refused_at(edited, "the stored event differs")


def test_an_edit_after_the_last_seal_hidden_by_a_rebuild_is_found_in_its_range(evidence: Evidence) -> None:
    history = evidence.history
    with raw_events(history.database_url) as events:
        events.drop_append_only_triggers()
        events.edit_state(history.positions["y"], lambda state: state.update(outcome="decline"))
    history.rebuild_audit_log()

    assert history.audit_verify().returncode == 0
    line = evidence.refused_at(3, f"to {history.head}", "rebuilt from the altered events")
    assert "while the one of size 2 (up to position 2) matches" in line


def test_a_database_restored_from_an_older_backup_is_found(
    database_url: str, signing_key_hex: str, tmp_path: Path
) -> None:
    history = write_history(database_url, signing_key_hex, tmp_path)
    backup = Backup(history, tmp_path / "backup")
    backup.take()

    # The ledger goes on: another run, and a checkpoint of it that someone kept.
    with TestClient(create_app(history.settings())) as client:
        from tests.support.proofs import LedgerApi

        api = LedgerApi(client)
        api.open_run("after-backup")
        api.admit("after-backup", "z")
        api.decide("after-backup", "z")
        api.wait_for_views()
        history.head = api.head
    evidence = save_evidence(history, name="newest")

    backup.restore()
    assert history.audit_verify().returncode == 0  # the older database is consistent in itself
    evidence.refused_at(backup.head + 1, "an older backup was restored")


# --- PostgreSQL: an insert into a gap, and a swap ---------------------------------------------


@pytest.mark.postgres
def test_an_event_inserted_into_a_gap_is_found_at_its_position(postgres_evidence: Evidence) -> None:
    history = postgres_evidence.history
    assert history.gap is not None
    with raw_events(history.database_url) as events:
        events.drop_append_only_triggers()
        events.insert_copy(history.positions["a"], version=2, position=history.gap)
    postgres_evidence.refused_at(history.gap, "the stored event differs")


@pytest.mark.postgres
def test_two_swapped_events_are_found_at_the_earlier_one(postgres_evidence: Evidence) -> None:
    history = postgres_evidence.history
    first, second = history.positions["a"], history.positions["c"]
    with raw_events(history.database_url) as events:
        events.drop_append_only_triggers()
        events.swap(first, second)
    history.rebuild_audit_log()
    postgres_evidence.refused_at(3, "rebuilt from the altered events")


# --- Backups ------------------------------------------------------------------------------------


class Backup:
    """A whole-database backup: the SQLite files, or pg_dump of the test's schema."""

    def __init__(self, history: History, folder: Path) -> None:
        self.history = history
        self.folder = folder
        self.head = 0

    def take(self) -> None:
        self.folder.mkdir()
        self.head = self.history.head
        target = parse_database_url(self.history.database_url)
        if target.backend == "sqlite":
            assert target.sqlite_path is not None
            for suffix in ("", "-wal", "-shm"):
                source = Path(f"{target.sqlite_path}{suffix}")
                if source.exists():
                    shutil.copy2(source, self.folder / (source.name))
            return
        self._pg("pg_dump", "--format=custom", f"--schema={target.schema}", f"--file={self.folder / 'dump'}")

    def restore(self) -> None:
        target = parse_database_url(self.history.database_url)
        if target.backend == "sqlite":
            assert target.sqlite_path is not None
            for suffix in ("", "-wal", "-shm"):
                Path(f"{target.sqlite_path}{suffix}").unlink(missing_ok=True)
            for saved in self.folder.iterdir():
                shutil.copy2(saved, target.sqlite_path.parent / saved.name)
            return
        schema = PostgresSchema()
        schema.name = target.schema
        schema.drop()
        self._pg("pg_restore", f"--dbname={target.dbname}", str(self.folder / "dump"))

    def _pg(self, tool: str, *arguments: str) -> None:
        target = parse_database_url(self.history.database_url)
        completed = subprocess.run(
            [tool, f"--host={target.host}", f"--port={target.port}", f"--username={target.user}", *arguments,
             *([target.dbname] if tool == "pg_dump" else [])],
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        assert completed.returncode == 0, completed.stderr
