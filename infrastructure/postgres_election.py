"""Leader election on PostgreSQL: session advisory locks on one dedicated connection.

Each process keeps one autocommit connection for its claims (whatever number of followers
it stands for). Taking the lead of a follower is `pg_try_advisory_lock` on a key derived
from the schema and the follower's name, then a take-over that bumps the follower's
*epoch* in `follower_leaders`. The lock lasts as long as the connection's session: the
process dying, its host vanishing (the session's TCP keepalives, set below, notice within
seconds) or the connection being terminated all free it for a standby.

Fencing: the follower's write transaction reads its row `FOR SHARE` and compares the
epoch with its own. A take-over's update waits for those share locks, so every batch of
the old leader commits before the new epoch exists, and none can commit after it.
"""

from __future__ import annotations

import hashlib
import logging
import os
import socket
import threading
from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from application.election import Fence, FenceCursor, LeaderElection, LeaderRecord, Leadership, LeadershipLost
from infrastructure.database import DatabaseTarget
from infrastructure.postgres_ddl import ddl_lock

log = logging.getLogger(__name__)

LEADERS_TABLE = "follower_leaders"


def advisory_key(schema: str, name: str) -> int:
    """A signed 64-bit key for pg_advisory_lock, stable across processes and versions."""
    digest = hashlib.blake2b(f"decision-ledger:{schema}:{name}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def lock_ids(key: int) -> tuple[int, int]:
    """How pg_locks shows a bigint advisory key: (classid, objid), the high and low halves."""
    unsigned = key & 0xFFFF_FFFF_FFFF_FFFF
    return unsigned >> 32, unsigned & 0xFFFF_FFFF


class PostgresElection(LeaderElection):
    def __init__(self, target: DatabaseTarget, *, dead_after_s: float = 9.0) -> None:
        self.target = target
        self.schema = target.schema or "public"
        self.table = sql.Identifier(self.schema, LEADERS_TABLE)
        self.dead_after_s = dead_after_s
        self._connection: psycopg.Connection[dict[str, Any]] | None = None
        self._lock = threading.Lock()
        self._held: dict[str, _PostgresLeadership] = {}
        self._host = socket.gethostname()

    # --- The dedicated connection -------------------------------------------------------------

    def _keepalive_options(self) -> str:
        """The server drops the session of a vanished client within ~dead_after_s seconds."""
        idle = max(1, int(self.dead_after_s / 3))
        interval = max(1, int(self.dead_after_s / 6))
        return (
            f"-c tcp_keepalives_idle={idle} -c tcp_keepalives_interval={interval} -c tcp_keepalives_count=3"
        )

    def _connect(self) -> psycopg.Connection[dict[str, Any]]:
        connection = psycopg.connect(
            self.target.conninfo,
            autocommit=True,
            row_factory=dict_row,
            connect_timeout=10,
            application_name="decision-ledger election",
            options=self._keepalive_options(),
            keepalives=1,
            keepalives_idle=max(1, int(self.dead_after_s / 3)),
            keepalives_interval=1,
            keepalives_count=3,
            prepare_threshold=None,
        )
        with connection.transaction():
            connection.execute(ddl_lock(self.schema))
            connection.execute(
                sql.SQL(
                    "CREATE TABLE IF NOT EXISTS {} (name TEXT PRIMARY KEY, epoch BIGINT NOT NULL,"
                    " host TEXT NOT NULL, pid INTEGER NOT NULL, backend_pid INTEGER NOT NULL,"
                    " since TIMESTAMPTZ NOT NULL, last_error TEXT, last_error_at TIMESTAMPTZ)"
                ).format(self.table)
            )
        return connection

    def _usable_connection(self) -> psycopg.Connection[dict[str, Any]]:
        """The claims' connection; a new one if it broke (every claim on it is then lost)."""
        if self._connection is not None and self._connection.broken:
            self._drop_connection()
        if self._connection is None or self._connection.closed:
            self._connection = self._connect()
        return self._connection

    def _drop_connection(self) -> None:
        for leadership in self._held.values():
            leadership.lost = True
        self._held.clear()
        if self._connection is not None:
            self._connection.close()
        self._connection = None

    # --- Claims ----------------------------------------------------------------------------------

    def try_lead(self, name: str) -> Leadership | None:
        with self._lock:
            if name in self._held:
                return None  # another candidacy of this process leads it
            connection = self._usable_connection()
            key = advisory_key(self.schema, name)
            try:
                row = connection.execute("SELECT pg_try_advisory_lock(%s) AS taken", (key,)).fetchone()
                if not row or not row["taken"]:
                    return None
                epoch = self._take_over(connection, name)
            except psycopg.OperationalError:
                self._drop_connection()
                raise
            leadership = _PostgresLeadership(self, name, key, epoch)
            self._held[name] = leadership
            return leadership

    def _take_over(self, connection: psycopg.Connection[dict[str, Any]], name: str) -> int:
        """Bump the epoch. Waits for the old leader's batches in flight (their share locks)."""
        row = connection.execute(
            sql.SQL(
                "INSERT INTO {table} AS leaders (name, epoch, host, pid, backend_pid, since)"
                " VALUES (%(name)s, 1, %(host)s, %(pid)s, pg_backend_pid(), now())"
                " ON CONFLICT (name) DO UPDATE SET epoch = leaders.epoch + 1, host = excluded.host,"
                " pid = excluded.pid, backend_pid = excluded.backend_pid, since = excluded.since,"
                " last_error = NULL, last_error_at = NULL"
                " RETURNING epoch"
            ).format(table=self.table),
            {"name": name, "host": self._host, "pid": os.getpid()},
        ).fetchone()
        assert row is not None
        return int(row["epoch"])

    def _still_held(self, leadership: _PostgresLeadership) -> bool:
        with self._lock:
            if leadership.lost or self._held.get(leadership.name) is not leadership:
                return False
            classid, objid = lock_ids(leadership.key)
            try:
                row = (
                    self._usable_connection()
                    .execute(
                        "SELECT count(*) AS held FROM pg_locks WHERE locktype = 'advisory' AND granted"
                        " AND pid = pg_backend_pid() AND classid = %s::oid AND objid = %s::oid"
                        " AND objsubid = 1",
                        (classid, objid),
                    )
                    .fetchone()
                )
            except psycopg.Error as error:
                log.warning("the election connection failed: %s", str(error).splitlines()[0])
                self._drop_connection()
                return False
            if not leadership.lost and row is not None and row["held"] >= 1:
                return True
            leadership.lost = True
            self._held.pop(leadership.name, None)
            return False

    def _release(self, leadership: _PostgresLeadership) -> None:
        with self._lock:
            if self._held.get(leadership.name) is not leadership:
                leadership.lost = True
                return
            del self._held[leadership.name]
            leadership.lost = True
            if self._connection is not None and not self._connection.broken:
                try:
                    self._connection.execute("SELECT pg_advisory_unlock(%s)", (leadership.key,))
                except psycopg.Error:
                    self._drop_connection()

    def _report_error(self, leadership: _PostgresLeadership, error: str) -> None:
        with self._lock:
            self._usable_connection().execute(
                sql.SQL(
                    "UPDATE {} SET last_error = %s, last_error_at = now() WHERE name = %s AND epoch = %s"
                ).format(self.table),
                (error[:2000], leadership.name, leadership.epoch),
            )

    def fence_statement(self) -> str:
        with self._lock:
            return (
                sql.SQL("SELECT epoch FROM {} WHERE name = %s FOR SHARE")
                .format(self.table)
                .as_string(self._usable_connection())
            )

    # --- What status shows ------------------------------------------------------------------

    def leaders(self) -> dict[str, LeaderRecord]:
        """Read on the election's own connection: status and health checks open none."""
        with self._lock:
            try:
                return self._leaders(self._usable_connection())
            except psycopg.OperationalError:
                self._drop_connection()
                raise

    def _leaders(self, connection: psycopg.Connection[dict[str, Any]]) -> dict[str, LeaderRecord]:
        rows = connection.execute(sql.SQL("SELECT * FROM {} ORDER BY name").format(self.table)).fetchall()
        records = {}
        for row in rows:
            classid, objid = lock_ids(advisory_key(self.schema, row["name"]))
            held = connection.execute(
                "SELECT count(*) AS held FROM pg_locks WHERE locktype = 'advisory' AND granted"
                " AND pid = %s AND classid = %s::oid AND objid = %s::oid AND objsubid = 1",
                (row["backend_pid"], classid, objid),
            ).fetchone()
            records[row["name"]] = _record(row, active=bool(held and held["held"]))
        return records

    def close(self) -> None:
        with self._lock:
            self._drop_connection()


def _record(row: dict[str, Any], *, active: bool) -> LeaderRecord:
    return LeaderRecord(
        name=row["name"],
        epoch=int(row["epoch"]),
        host=row["host"],
        pid=int(row["pid"]),
        since=row["since"] if isinstance(row["since"], datetime) else datetime.fromisoformat(row["since"]),
        active=active,
        last_error=row["last_error"],
        last_error_at=row["last_error_at"],
    )


class _PostgresFence(Fence):
    def __init__(self, statement: str, name: str, epoch: int) -> None:
        self.statement = statement
        self.name = name
        self.epoch = epoch

    def check(self, cursor: FenceCursor) -> None:
        cursor.execute(self.statement, (self.name,))
        row = cursor.fetchone()
        current = None if row is None else int(row["epoch"])
        if current != self.epoch:
            raise LeadershipLost(f"{self.name}: epoch {self.epoch} was superseded by {current}")


class _PostgresLeadership(Leadership):
    def __init__(self, election: PostgresElection, name: str, key: int, epoch: int) -> None:
        self.election = election
        self.name = name
        self.key = key
        self.epoch = epoch
        self.lost = False

    def still_held(self) -> bool:
        return self.election._still_held(self)

    def fence(self) -> Fence:
        return _PostgresFence(self.election.fence_statement(), self.name, self.epoch)

    def report_error(self, error: str) -> None:
        self.election._report_error(self, error)

    def release(self) -> None:
        self.election._release(self)
