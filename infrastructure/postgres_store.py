"""The PostgreSQL back end: the library's recorder, extended with the ledger's index
tables, the sealed-run gate and append-only triggers (UPDATE, DELETE and TRUNCATE)."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

import psycopg.errors
from eventsourcing.persistence import IntegrityError, Notification, StoredEvent
from eventsourcing.postgres import PostgresApplicationRecorder, PostgresDatastore
from psycopg import Cursor
from psycopg.rows import DictRow, args_row, kwargs_row
from psycopg.sql import SQL, Composed, Identifier, Literal

from application.ports import (
    EventPosition,
    LedgerIndex,
    LedgerIndexRows,
    LoggedEvent,
    StoredRow,
    TokenReceipt,
    with_index_rows,
)
from infrastructure.append_only import APPEND_ONLY_MESSAGE, postgres_append_only_triggers
from infrastructure.eventsourcing_compat import unretried
from infrastructure.postgres_ddl import SerialisedDDL, ddl_lock
from infrastructure.postgres_outages import retrying

#: SQLSTATE raised when a command races a seal. Class 23 makes psycopg, and so the
#: library, report it as an IntegrityError: the caller reloads and re-checks.
RUN_SEALED_SQLSTATE = "23D01"


class PostgresLedgerRecorder(SerialisedDDL, PostgresApplicationRecorder, LedgerIndex):
    """Its tables, type, functions and triggers are made under the schema's DDL lock
    (infrastructure/postgres_ddl.py)."""

    def __init__(self, datastore: PostgresDatastore, *, events_table_name: str = "stored_events"):
        super().__init__(datastore, events_table_name=events_table_name)
        prefix = events_table_name.removesuffix("_events")
        self.tables = {name: f"{prefix}_{name}" for name in ("positions", "tokens", "basis", "seals")}
        for table in self.tables.values():
            self.check_identifier_length(table)
        self.gate_function = f"{prefix}_assert_unsealed"
        # What the current thread's last write recorded (read by the application after save).
        self._writing = threading.local()
        self.refuse_function = f"{prefix}_refuse_rewrite"
        self.sql_create_statements.extend(self._ledger_ddl())

    def _ident(self, name: str) -> Composed:
        return SQL("{}.{}").format(Identifier(self.datastore.schema), Identifier(name))

    def _table(self, name: str) -> Composed:
        return self._ident(self.tables[name])

    def _ledger_ddl(self) -> list[Composed]:
        t = self._table
        statements = [
            SQL(
                "CREATE TABLE IF NOT EXISTS {} ("
                " position bigint PRIMARY KEY, originator_id uuid NOT NULL,"
                " originator_version bigint NOT NULL, run_id text NOT NULL, topic text NOT NULL,"
                " recorded_at timestamptz NOT NULL, UNIQUE (originator_id, originator_version))"
            ).format(t("positions")),
            SQL("CREATE INDEX IF NOT EXISTS {} ON {} (run_id, position)").format(
                Identifier(self.tables["positions"] + "_run"), t("positions")
            ),
            SQL("CREATE INDEX IF NOT EXISTS {} ON {} (recorded_at)").format(
                Identifier(self.tables["positions"] + "_time"), t("positions")
            ),
            SQL(
                "CREATE TABLE IF NOT EXISTS {} ("
                " token text PRIMARY KEY, fingerprint text NOT NULL, originator_id uuid,"
                " originator_version bigint, position bigint, stored_response text)"
            ).format(t("tokens")),
            SQL(
                "CREATE TABLE IF NOT EXISTS {} ("
                " run_id text NOT NULL, input_id text NOT NULL, PRIMARY KEY (run_id, input_id))"
            ).format(t("basis")),
            SQL(
                "CREATE TABLE IF NOT EXISTS {} ("
                " run_id text NOT NULL, attempt integer NOT NULL, PRIMARY KEY (run_id, attempt))"
            ).format(t("seals")),
            SQL(
                "CREATE OR REPLACE FUNCTION {function}(run_ids text[], attempts integer[])"
                " RETURNS void LANGUAGE plpgsql AS $$ BEGIN"
                " IF EXISTS (SELECT 1 FROM {seals} s"
                "  JOIN unnest(run_ids, attempts) AS g(run_id, attempt)"
                "  ON s.run_id = g.run_id AND s.attempt = g.attempt) THEN"
                "  RAISE EXCEPTION 'decision-ledger: the run was sealed while this command ran'"
                "  USING ERRCODE = {sqlstate};"
                " END IF; END $$"
            ).format(
                function=self._ident(self.gate_function),
                seals=t("seals"),
                sqlstate=Literal(RUN_SEALED_SQLSTATE),
            ),
            SQL(
                "CREATE OR REPLACE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql AS $$"
                " BEGIN RAISE EXCEPTION {message}, TG_OP || ' on ' || TG_TABLE_NAME; END $$"
            ).format(
                function=self._ident(self.refuse_function),
                message=Literal(APPEND_ONLY_MESSAGE.format(operation="%")),
            ),
        ]
        return statements + self._append_only([self.events_table_name, *self.tables.values()])

    def _append_only(self, tables: Sequence[str]) -> list[Composed]:
        return postgres_append_only_triggers(self.datastore.schema, tables, self.refuse_function)

    def protect(self, table: str) -> None:
        """Make another of the library's tables (the snapshots) refuse rewrites too."""
        with self.datastore.transaction(commit=True) as c:
            c.execute(ddl_lock(self.datastore.schema))
            for statement in self._append_only([table]):
                c.execute(statement)

    # --- The library's calls, retried within the outage bounds (postgres_outages.py) ---

    def insert_events(self, stored_events: Sequence[StoredEvent], **kwargs: Any) -> Sequence[int] | None:
        return retrying(self.datastore, lambda: self._insert_events_once(stored_events, **kwargs))

    def select_events(self, originator_id: UUID | str, **kwargs: Any) -> Sequence[StoredEvent]:
        select = unretried(PostgresApplicationRecorder.select_events)
        return retrying(self.datastore, lambda: select(self, originator_id, **kwargs))

    def select_notifications(self, *args: Any, **kwargs: Any) -> Sequence[Notification]:
        select = unretried(PostgresApplicationRecorder.select_notifications)
        return retrying(self.datastore, lambda: select(self, *args, **kwargs))

    def max_notification_id(self) -> int | None:
        select = unretried(PostgresApplicationRecorder.max_notification_id)
        return retrying(self.datastore, lambda: select(self))

    def _insert_events_once(
        self, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        """The library's pipelined insert, but a conflict stays a conflict (statements queued
        after a failed INSERT report "pipeline aborted", an OperationalError the library would
        retry), and a failed transaction is rolled back through psycopg, which then forgets
        the connection's prepared statements: the server skipped every statement queued after
        the failure, including any psycopg meant to prepare there for the first time, yet
        psycopg counted those as prepared, and the connection's next use of one failed with
        `prepared statement "_pg3_N" does not exist` (psycopg 3.3; the library commits instead)."""
        failure: Exception | None = None
        notification_ids: Sequence[int] | None = None
        with self.datastore.get_connection() as conn:
            with contextlib.suppress(psycopg.Rollback), conn.pipeline() as pipeline, conn.transaction():
                with conn.cursor() as curs:
                    self._insert_events(curs, stored_events, **kwargs)
                if stored_events:
                    with conn.cursor() as curs:
                        try:
                            self._insert_stored_events(curs, stored_events, **kwargs)
                            # Sync now, so a conflict is raised here, not at commit.
                            pipeline.sync()
                            notification_ids = self._fetch_ids_after_insert_events(
                                curs, stored_events, **kwargs
                            )
                        except Exception as error:
                            failure = error
                if failure is not None:
                    raise psycopg.Rollback()  # escapes only if the rollback failed (connection lost)
            # Raised in the connection's context, which translates psycopg's errors.
            if isinstance(failure, psycopg.errors.PipelineAborted):
                raise IntegrityError("a statement of this transaction conflicted") from failure
            if failure is not None:
                raise failure
        return notification_ids

    def _insert_stored_events(
        self, curs: Cursor[DictRow], stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> None:
        super()._insert_stored_events(curs, stored_events, **kwargs)
        self._writing.recorded_at = None
        self._writing.cursor = None
        rows: LedgerIndexRows | None = kwargs.get("ledger_index")
        if rows is not None:
            # A cursor of its own: the library fetches the inserted IDs from `curs`. It stays
            # open until the pipeline has synced, to read back the knowledge time.
            index_cursor = curs.connection.cursor()
            self._write_index(index_cursor, rows)
            self._writing.cursor = index_cursor if rows.events else None
            if not rows.events:
                index_cursor.close()

    def _fetch_ids_after_insert_events(
        self, curs: Cursor[DictRow], stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        notification_ids = super()._fetch_ids_after_insert_events(curs, stored_events, **kwargs)
        index_cursor = self._writing.cursor
        if index_cursor is not None:
            row = index_cursor.fetchone()
            self._writing.recorded_at = row["recorded_at"] if row else None
            index_cursor.close()
            self._writing.cursor = None
        return notification_ids

    def last_knowledge_time(self) -> datetime | None:
        return getattr(self._writing, "recorded_at", None)

    def _write_index(self, c: Cursor[DictRow], rows: LedgerIndexRows) -> None:
        # Arrays go in binary (%b): the text format escapes every element with a regex.
        # Never server-prepared: when a conflict aborts the pipeline, a statement being
        # prepared behind it was believed prepared, and the connection then failed with
        # 'prepared statement does not exist' (two dispatchers racing showed it at once).
        if rows.seals:
            c.execute(
                SQL("INSERT INTO {} SELECT * FROM unnest(%b::text[], %b::integer[])").format(
                    self._table("seals")
                ),
                ([run_id for run_id, _ in rows.seals], [attempt for _, attempt in rows.seals]),
                prepare=False,
            )
        # The gate after the seal rows: group commit may put a seal and a decision of the same
        # attempt in one transaction, and the gate must see that seal too.
        if rows.gates:
            c.execute(
                SQL("SELECT {}(%s, %s)").format(self._ident(self.gate_function)),
                ([run_id for run_id, _ in rows.gates], [attempt for _, attempt in rows.gates]),
                prepare=False,
            )
        if rows.basis:
            c.execute(
                SQL("INSERT INTO {} SELECT * FROM unnest(%b::text[], %b::text[])").format(
                    self._table("basis")
                ),
                ([run_id for run_id, _ in rows.basis], [input_id for _, input_id in rows.basis]),
                prepare=False,
            )
        if rows.tokens:
            columns = list(zip(*rows.tokens, strict=True))
            c.execute(
                SQL(
                    "INSERT INTO {tokens} SELECT x.token, x.fingerprint, x.originator_id,"
                    " x.originator_version, e.notification_id, x.stored_response FROM"
                    " unnest(%b::text[], %b::text[], %b::uuid[], %b::bigint[], %b::text[])"
                    "  AS x(token, fingerprint, originator_id, originator_version, stored_response)"
                    " LEFT JOIN {events} e ON e.originator_id = x.originator_id"
                    "  AND e.originator_version = x.originator_version"
                ).format(tokens=self._table("tokens"), events=self._ident(self.events_table_name)),
                [list(column) for column in columns],
                prepare=False,
            )
        if rows.events:
            # Knowledge time is taken under the writers' lock and never goes backwards.
            c.execute(
                SQL(
                    "INSERT INTO {positions} SELECT e.notification_id, e.originator_id,"
                    " e.originator_version, x.run_id, e.topic,"
                    " (SELECT GREATEST(clock_timestamp(), MAX(recorded_at)) FROM {positions})"
                    " FROM unnest(%b::uuid[], %b::bigint[], %b::text[])"
                    "  AS x(originator_id, originator_version, run_id)"
                    " JOIN {events} e ON e.originator_id = x.originator_id"
                    "  AND e.originator_version = x.originator_version"
                    " RETURNING recorded_at"
                ).format(positions=self._table("positions"), events=self._ident(self.events_table_name)),
                [list(column) for column in zip(*rows.events, strict=True)],
                prepare=False,
            )

    def insert_token_response(self, token: str, fingerprint: str, response: str) -> None:
        with self.datastore.transaction(commit=True) as c:
            c.execute(
                SQL("INSERT INTO {} VALUES (%s, %s, NULL, NULL, NULL, %s)").format(self._table("tokens")),
                (token, fingerprint, response),
            )

    # --- Reading --------------------------------------------------------------------

    def _fetchall(
        self, statement: Composed, params: Sequence[Any] = (), *, prepare: bool = True, rows: Any = None
    ) -> list[Any]:
        """The rows of a statement: dicts, or what the `rows` factory makes of them."""
        with self.datastore.get_connection() as conn, conn.cursor(row_factory=rows) as c:
            c.execute(statement, params, prepare=prepare)
            return c.fetchall()

    def admitted_among(self, run_id: str, input_ids: Sequence[str]) -> set[str]:
        # One primary-key probe per ID asked about (LATERAL ... LIMIT 1 cannot become a hash
        # join): the cost never grows with the run's basis. A plain join was planned as a
        # scan of the whole basis whenever the statistics lagged behind a growing run.
        rows = self._fetchall(
            SQL(
                "SELECT x.input_id FROM unnest(%s::text[]) AS x(input_id),"
                " LATERAL (SELECT 1 FROM {} b WHERE b.run_id = %s AND b.input_id = x.input_id LIMIT 1) hit"
            ).format(self._table("basis")),
            (list(dict.fromkeys(input_ids)), run_id),
        )
        return {row["input_id"] for row in rows}

    def _receipts(self) -> Composed:
        """A token's receipt, with when its event became known."""
        return SQL("SELECT t.*, p.recorded_at FROM {} t LEFT JOIN {} p ON p.position = t.position").format(
            self._table("tokens"), self._table("positions")
        )

    def token_receipt(self, token: str) -> TokenReceipt | None:
        rows = self._fetchall(SQL("{} WHERE t.token = %s").format(self._receipts()), (token,))
        if not rows:
            return None
        return TokenReceipt(**rows[0])

    def token_receipts(self, tokens: Sequence[str]) -> dict[str, TokenReceipt]:
        rows = self._fetchall(SQL("{} WHERE t.token = ANY(%s)").format(self._receipts()), (list(tokens),))
        return {row["token"]: TokenReceipt(**row) for row in rows}

    def event_position(self, originator_id: UUID, originator_version: int) -> EventPosition | None:
        rows = self._fetchall(
            SQL("SELECT * FROM {} WHERE originator_id = %s AND originator_version = %s").format(
                self._table("positions")
            ),
            (originator_id, originator_version),
            rows=kwargs_row(EventPosition),
        )
        return rows[0] if rows else None

    def version_at(self, originator_id: UUID, position: int) -> int | None:
        rows = self._fetchall(
            SQL(
                "SELECT MAX(originator_version) AS version FROM {}"
                " WHERE originator_id = %s AND position <= %s"
            ).format(self._table("positions")),
            (originator_id, position),
        )
        return rows[0]["version"]

    def position_at(self, moment: datetime) -> int | None:
        rows = self._fetchall(
            SQL(
                "SELECT position FROM {} WHERE recorded_at <= %s"
                " ORDER BY recorded_at DESC, position DESC LIMIT 1"
            ).format(self._table("positions")),
            (moment,),
        )
        return rows[0]["position"] if rows else None

    def head_position(self) -> int:
        rows = self._fetchall(
            SQL("SELECT COALESCE(MAX(position), 0) AS head FROM {}").format(self._table("positions"))
        )
        return rows[0]["head"]

    def count_run_events(self, run_id: str, up_to: int) -> int:
        rows = self._fetchall(
            SQL("SELECT COUNT(*) AS n FROM {} WHERE run_id = %s AND position <= %s").format(
                self._table("positions")
            ),
            (run_id, up_to),
        )
        return rows[0]["n"]

    def count_after(self, position: int) -> int:
        rows = self._fetchall(
            SQL("SELECT COUNT(*) AS n FROM {} WHERE position > %s").format(self._table("positions")),
            (position,),
        )
        return rows[0]["n"]

    def stored_events_between(self, after: int, up_to: int | None, limit: int) -> list[StoredRow]:
        statement = SQL(
            "SELECT notification_id, originator_id, originator_version, topic, state FROM {}"
            " WHERE notification_id > %s AND notification_id <= %s ORDER BY notification_id LIMIT %s"
        ).format(self._ident(self.events_table_name))
        return self._fetchall(statement, (after, _up_to(up_to), limit), rows=args_row(StoredRow))

    def logged_events_between(self, after: int, up_to: int | None, limit: int) -> list[LoggedEvent]:
        statement = SQL(
            "SELECT e.notification_id, e.originator_id, e.originator_version, e.topic, e.state,"
            " p.run_id, to_char(p.recorded_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"+00:00\"')"
            " FROM {} e LEFT JOIN {} p ON p.position = e.notification_id"
            " WHERE e.notification_id > %s AND e.notification_id <= %s ORDER BY e.notification_id LIMIT %s"
        ).format(self._ident(self.events_table_name), self._table("positions"))
        return with_index_rows(
            self._fetchall(statement, (after, _up_to(up_to), limit), rows=args_row(LoggedEvent))
        )

    def events_between(self, after: int, up_to: int | None, limit: int) -> list[EventPosition]:
        statement = SQL("SELECT * FROM {} WHERE position > %s AND position <= %s ORDER BY position LIMIT %s")
        return self._fetchall(
            statement.format(self._table("positions")),
            (after, _up_to(up_to), limit),
            rows=kwargs_row(EventPosition),
        )


def _up_to(position: int | None) -> int:
    """An inclusive upper bound on positions (None: the whole log)."""
    return position if position is not None else 2**62
