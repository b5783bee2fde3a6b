"""The embedded back end: the library's SQLite recorder, extended with the ledger's
index tables, append-only triggers and a polling subscription."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, cast
from uuid import UUID

from eventsourcing.persistence import (
    ApplicationRecorder,
    IntegrityError,
    ListenNotifySubscription,
    StoredEvent,
    Subscription,
)
from eventsourcing.sqlite import SQLiteApplicationRecorder, SQLiteCursor, SQLiteDatastore

from application.ports import (
    EventPosition,
    LedgerIndex,
    LedgerIndexRows,
    LoggedEvent,
    StoredRow,
    TokenReceipt,
    with_index_rows,
)
from infrastructure.append_only import APPEND_ONLY_MESSAGE

#: SQLite has no LISTEN/NOTIFY: followers poll the log this often (seconds).
POLL_INTERVAL = 0.05
#: Stay well under SQLite's limit on bound parameters per statement.
_MAX_PARAMS = 900


def _utc_text(moment: datetime) -> str:
    """A fixed-width UTC ISO text, so comparing texts compares instants."""
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


#: A token's receipt, with when its event became known.
_RECEIPTS = (
    "SELECT t.*, p.recorded_at FROM ledger_tokens t LEFT JOIN ledger_positions p ON p.position = t.position"
)


class PollingSubscription(ListenNotifySubscription[ApplicationRecorder]):
    """The library's listen/notify subscription, woken by a timer instead of NOTIFY."""

    def __init__(self, recorder: ApplicationRecorder, gt: int | None, topics: Sequence[str]):
        super().__init__(recorder=recorder, gt=gt, topics=topics)
        self._poll_thread = threading.Thread(target=self._poll, daemon=True)
        self._poll_thread.start()

    def _poll(self) -> None:
        while not self._has_been_stopped:
            self._has_been_notified.set()
            threading.Event().wait(POLL_INTERVAL)


class SQLiteLedgerRecorder(SQLiteApplicationRecorder, LedgerIndex):
    index_tables = ("ledger_positions", "ledger_tokens", "ledger_basis", "ledger_seals")
    reads_in_process = True

    def __init__(self, datastore: SQLiteDatastore, events_table_name: str = "stored_events"):
        super().__init__(datastore, events_table_name)
        # What the current thread's last write recorded (read by the application after save).
        self._writing = threading.local()

    def last_knowledge_time(self) -> datetime | None:
        return getattr(self._writing, "recorded_at", None)

    @property
    def protected_tables(self) -> tuple[str, ...]:
        return (self.events_table_name, *self.index_tables)

    def construct_create_table_statements(self) -> list[str]:
        statements = super().construct_create_table_statements()
        statements += [
            "CREATE TABLE IF NOT EXISTS ledger_positions ("
            " position INTEGER PRIMARY KEY, originator_id TEXT NOT NULL,"
            " originator_version INTEGER NOT NULL, run_id TEXT NOT NULL, topic TEXT NOT NULL,"
            " recorded_at TEXT NOT NULL, UNIQUE (originator_id, originator_version))",
            "CREATE INDEX IF NOT EXISTS ledger_positions_run ON ledger_positions (run_id, position)",
            "CREATE INDEX IF NOT EXISTS ledger_positions_time ON ledger_positions (recorded_at)",
            "CREATE TABLE IF NOT EXISTS ledger_tokens ("
            " token TEXT PRIMARY KEY, fingerprint TEXT NOT NULL, originator_id TEXT,"
            " originator_version INTEGER, position INTEGER, stored_response TEXT) WITHOUT ROWID",
            "CREATE TABLE IF NOT EXISTS ledger_basis ("
            " run_id TEXT NOT NULL, input_id TEXT NOT NULL, PRIMARY KEY (run_id, input_id))"
            " WITHOUT ROWID",
            "CREATE TABLE IF NOT EXISTS ledger_seals ("
            " run_id TEXT NOT NULL, attempt INTEGER NOT NULL, PRIMARY KEY (run_id, attempt))"
            " WITHOUT ROWID",
        ]
        return statements + self._append_only_statements(self.protected_tables)

    @staticmethod
    def _append_only_statements(tables: Sequence[str]) -> list[str]:
        statements = []
        for table in tables:
            for operation in ("UPDATE", "DELETE"):
                message = APPEND_ONLY_MESSAGE.format(operation=f"{operation} on {table}")
                statements.append(
                    f"CREATE TRIGGER IF NOT EXISTS {table}_refuse_{operation.lower()} "
                    f"BEFORE {operation} ON {table} BEGIN SELECT RAISE(ABORT, '{message}'); END"
                )
        return statements

    def _create_table(self, c: SQLiteCursor) -> None:
        super()._create_table(c)
        for table in self.protected_tables:
            c.execute(self._refuse_existing_keys_statement(c, table))

    @staticmethod
    def _refuse_existing_keys_statement(c: SQLiteCursor, table: str) -> str:
        """A BEFORE INSERT trigger refusing a row whose key (any unique key, and the rowid)
        is taken. `INSERT OR REPLACE` deletes the row in its way without firing DELETE
        triggers (unless a connection turns recursive_triggers on): this refuses it first.
        An ordinary duplicate INSERT is refused by it too, as an IntegrityError as before."""
        keys: list[list[str]] = []
        c.execute(f"PRAGMA index_list({table})")
        for index in c.fetchall():
            if index["unique"]:
                c.execute(f"PRAGMA index_info({index['name']})")
                keys.append([column["name"] for column in c.fetchall()])
        c.execute("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", (table,))
        if "WITHOUT ROWID" not in c.fetchone()["sql"].upper():
            keys.append(["rowid"])
        taken = " OR ".join(
            f"EXISTS (SELECT 1 FROM {table} WHERE "
            + " AND ".join(f'"{column}" = NEW."{column}"' for column in key)
            + ")"
            for key in keys
        )
        message = APPEND_ONLY_MESSAGE.format(operation=f"INSERT of an existing key on {table}")
        return (
            f"CREATE TRIGGER IF NOT EXISTS {table}_refuse_existing_key BEFORE INSERT ON {table}"
            f" WHEN {taken} BEGIN SELECT RAISE(ABORT, '{message}'); END"
        )

    def protect(self, table: str) -> None:
        """Make another of the library's tables (the snapshots) refuse rewrites too."""
        with self.datastore.transaction(commit=True) as c:
            for statement in self._append_only_statements([table]):
                c.execute(statement)
            c.execute(self._refuse_existing_keys_statement(c, table))

    # --- Writing, inside the library's transaction ------------------------------------

    def _insert_events(
        self, c: SQLiteCursor, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        notification_ids = super()._insert_events(c, stored_events, **kwargs)
        rows: LedgerIndexRows | None = kwargs.get("ledger_index")
        if rows is not None:
            self._write_index(c, rows, stored_events, notification_ids or [])
        return notification_ids

    def _write_index(
        self,
        c: SQLiteCursor,
        rows: LedgerIndexRows,
        stored_events: Sequence[StoredEvent],
        notification_ids: Sequence[int],
    ) -> None:
        # Seal rows first: group commit may put a seal and a decision of the same attempt in
        # one transaction, and the gate must see that seal too.
        c.executemany("INSERT INTO ledger_seals VALUES (?, ?)", rows.seals)
        for run_id, attempt in rows.gates:
            c.execute("SELECT 1 FROM ledger_seals WHERE run_id = ? AND attempt = ?", (run_id, attempt))
            if c.fetchone() is not None:
                msg = f"run {run_id!r} attempt {attempt} was sealed while this command ran"
                raise IntegrityError(msg)
        c.executemany("INSERT INTO ledger_basis VALUES (?, ?)", rows.basis)
        position_of = {
            (stored.originator_id, stored.originator_version): position
            for position, stored in zip(notification_ids, stored_events, strict=True)
        }
        c.executemany(
            "INSERT INTO ledger_tokens VALUES (?, ?, ?, ?, ?, ?)",
            [
                (
                    token,
                    fingerprint,
                    originator_id and originator_id.hex,
                    version,
                    position_of.get((originator_id, version)) if originator_id and version else None,
                    response,
                )
                for token, fingerprint, originator_id, version, response in rows.tokens
            ],
        )
        if not stored_events:
            return
        recorded_at = self._next_recorded_at(c)
        self._writing.recorded_at = datetime.fromisoformat(recorded_at)
        run_ids: dict[tuple[UUID | str, int], str] = {
            (originator_id, version): run_id for originator_id, version, run_id in rows.events
        }
        c.executemany(
            "INSERT INTO ledger_positions VALUES (?, ?, ?, ?, ?, ?)",
            [
                (
                    position,
                    cast(UUID, stored.originator_id).hex,
                    stored.originator_version,
                    run_ids[(stored.originator_id, stored.originator_version)],
                    stored.topic,
                    recorded_at,
                )
                for position, stored in zip(notification_ids, stored_events, strict=True)
            ],
        )

    @staticmethod
    def _next_recorded_at(c: SQLiteCursor) -> str:
        """Now, or the last knowledge time if the clock went backwards."""
        c.execute("SELECT MAX(recorded_at) FROM ledger_positions")
        last = c.fetchone()[0]
        now = _utc_text(datetime.now(UTC))
        return max(now, last) if last else now

    def insert_token_response(self, token: str, fingerprint: str, response: str) -> None:
        with self.datastore.transaction(commit=True) as c:
            c.execute(
                "INSERT INTO ledger_tokens VALUES (?, ?, NULL, NULL, NULL, ?)",
                (token, fingerprint, response),
            )

    def subscribe(
        self, gt: int | None = None, topics: Sequence[str] = ()
    ) -> Subscription[ApplicationRecorder]:
        return PollingSubscription(self, gt=gt, topics=topics)

    # --- Reading --------------------------------------------------------------------

    def _fetchall(self, statement: str, params: Sequence[Any] = ()) -> list[Any]:
        with self.datastore.transaction(commit=False) as c:
            c.execute(statement, params)
            return c.fetchall()

    def admitted_among(self, run_id: str, input_ids: Sequence[str]) -> set[str]:
        admitted: set[str] = set()
        distinct = list(dict.fromkeys(input_ids))
        for start in range(0, len(distinct), _MAX_PARAMS):
            chunk = distinct[start : start + _MAX_PARAMS]
            placeholders = ",".join("?" * len(chunk))
            rows = self._fetchall(
                f"SELECT input_id FROM ledger_basis WHERE run_id = ? AND input_id IN ({placeholders})",
                [run_id, *chunk],
            )
            admitted.update(row[0] for row in rows)
        return admitted

    def token_receipt(self, token: str) -> TokenReceipt | None:
        rows = self._fetchall(f"{_RECEIPTS} WHERE t.token = ?", (token,))
        return self._receipt(rows[0]) if rows else None

    def token_receipts(self, tokens: Sequence[str]) -> dict[str, TokenReceipt]:
        receipts: dict[str, TokenReceipt] = {}
        distinct = list(dict.fromkeys(tokens))
        for start in range(0, len(distinct), _MAX_PARAMS):
            chunk = distinct[start : start + _MAX_PARAMS]
            rows = self._fetchall(f"{_RECEIPTS} WHERE t.token IN ({','.join('?' * len(chunk))})", chunk)
            receipts.update((row["token"], self._receipt(row)) for row in rows)
        return receipts

    @staticmethod
    def _receipt(row: Any) -> TokenReceipt:
        return TokenReceipt(
            token=row["token"],
            fingerprint=row["fingerprint"],
            originator_id=UUID(row["originator_id"]) if row["originator_id"] else None,
            originator_version=row["originator_version"],
            position=row["position"],
            stored_response=row["stored_response"],
            recorded_at=datetime.fromisoformat(row["recorded_at"]) if row["recorded_at"] else None,
        )

    @staticmethod
    def _event_position(row: Any) -> EventPosition:
        return EventPosition(
            position=row["position"],
            originator_id=UUID(row["originator_id"]),
            originator_version=row["originator_version"],
            run_id=row["run_id"],
            topic=row["topic"],
            recorded_at=datetime.fromisoformat(row["recorded_at"]),
        )

    def event_position(self, originator_id: UUID, originator_version: int) -> EventPosition | None:
        rows = self._fetchall(
            "SELECT * FROM ledger_positions WHERE originator_id = ? AND originator_version = ?",
            (originator_id.hex, originator_version),
        )
        return self._event_position(rows[0]) if rows else None

    def version_at(self, originator_id: UUID, position: int) -> int | None:
        rows = self._fetchall(
            "SELECT MAX(originator_version) FROM ledger_positions WHERE originator_id = ? AND position <= ?",
            (originator_id.hex, position),
        )
        return rows[0][0]

    def position_at(self, moment: datetime) -> int | None:
        rows = self._fetchall(
            "SELECT MAX(position) FROM ledger_positions WHERE recorded_at <= ?",
            (_utc_text(moment),),
        )
        return rows[0][0]

    def head_position(self) -> int:
        return self._fetchall("SELECT COALESCE(MAX(position), 0) FROM ledger_positions")[0][0]

    def count_run_events(self, run_id: str, up_to: int) -> int:
        return self._fetchall(
            "SELECT COUNT(*) FROM ledger_positions WHERE run_id = ? AND position <= ?",
            (run_id, up_to),
        )[0][0]

    def count_after(self, position: int) -> int:
        return self._fetchall("SELECT COUNT(*) FROM ledger_positions WHERE position > ?", (position,))[0][0]

    def stored_events_between(self, after: int, up_to: int | None, limit: int) -> list[StoredRow]:
        rows = self._fetchall(
            f"SELECT rowid, originator_id, originator_version, topic, state FROM {self.events_table_name}"
            " WHERE rowid > ? AND rowid <= ? ORDER BY rowid LIMIT ?",
            (after, up_to if up_to is not None else 2**62, limit),
        )
        convert = self.convert_originator_id  # stored as hex text: a UUID, as the library reads it
        return [StoredRow(row[0], convert(row[1]), row[2], row[3], row[4]) for row in rows]

    def logged_events_between(self, after: int, up_to: int | None, limit: int) -> list[LoggedEvent]:
        rows = self._fetchall(
            f"SELECT e.rowid, e.originator_id, e.originator_version, e.topic, e.state, p.run_id,"
            f" p.recorded_at FROM {self.events_table_name} e LEFT JOIN ledger_positions p"
            " ON p.position = e.rowid WHERE e.rowid > ? AND e.rowid <= ? ORDER BY e.rowid LIMIT ?",
            (after, up_to if up_to is not None else 2**62, limit),
        )
        convert = self.convert_originator_id  # recorded_at is stored as the views' UTC text
        return with_index_rows([LoggedEvent(row[0], convert(row[1]), *row[2:]) for row in rows])

    def events_between(self, after: int, up_to: int | None, limit: int) -> list[EventPosition]:
        rows = self._fetchall(
            "SELECT * FROM ledger_positions WHERE position > ? AND position <= ? ORDER BY position LIMIT ?",
            (after, up_to if up_to is not None else 2**62, limit),
        )
        return [self._event_position(row) for row in rows]
