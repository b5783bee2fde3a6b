"""Leader election on SQLite (one host): an exclusive `flock` on a file beside the database.

The lock belongs to the open file: it is freed when the process dies or closes it. Each
take-over bumps the follower's epoch in `follower_leaders`, in the database itself, and
the follower's write transaction compares it with its own (the fence), as on PostgreSQL.
The fence is the batch's first statement and a write, so the database's single writer
lock serialises take-overs and batches.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import socket
import sqlite3
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from application.election import Fence, FenceCursor, LeaderElection, LeaderRecord, Leadership, LeadershipLost

LEADERS_TABLE = "follower_leaders"


def lock_file_for(database: Path, name: str) -> Path:
    """`ledger.sqlite3` and `projection:runs` -> `ledger.sqlite3.leader-projection-runs.lock`."""
    safe = re.sub(r"[^A-Za-z0-9_.-]", "-", name)
    return database.with_name(f"{database.name}.leader-{safe}.lock")


class FileLockElection(LeaderElection):
    def __init__(self, database: Path) -> None:
        self.database = database
        self._lock = threading.Lock()
        self._held: dict[str, _FileLeadership] = {}
        self._host = socket.gethostname()

    def _connect(self) -> sqlite3.Connection:
        connection = sqlite3.connect(self.database, timeout=30, isolation_level=None)
        connection.row_factory = sqlite3.Row
        connection.execute(
            f"CREATE TABLE IF NOT EXISTS {LEADERS_TABLE} (name TEXT PRIMARY KEY, epoch INTEGER NOT NULL,"
            " host TEXT NOT NULL, pid INTEGER NOT NULL, since TEXT NOT NULL, last_error TEXT,"
            " last_error_at TEXT)"
        )
        return connection

    def try_lead(self, name: str) -> Leadership | None:
        with self._lock:
            if name in self._held:
                return None
            lock_file = _try_lock(lock_file_for(self.database, name))
            if lock_file is None:
                return None
            try:
                epoch = self._take_over(name)
            except BaseException:
                lock_file.close()
                raise
            leadership = _FileLeadership(self, name, lock_file, epoch)
            self._held[name] = leadership
            return leadership

    def _take_over(self, name: str) -> int:
        with contextlib.closing(self._connect()) as connection:
            connection.execute("BEGIN IMMEDIATE")
            row = connection.execute(
                f"INSERT INTO {LEADERS_TABLE} AS leaders (name, epoch, host, pid, since)"
                " VALUES (?, 1, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET epoch = leaders.epoch + 1,"
                " host = excluded.host, pid = excluded.pid, since = excluded.since,"
                " last_error = NULL, last_error_at = NULL RETURNING epoch",
                (name, self._host, os.getpid(), _now()),
            ).fetchone()
            connection.execute("COMMIT")
            return int(row["epoch"])

    def _release(self, leadership: _FileLeadership) -> None:
        with self._lock:
            if self._held.get(leadership.name) is leadership:
                del self._held[leadership.name]
            leadership.lock_file.close()

    def _report_error(self, leadership: _FileLeadership, error: str) -> None:
        with contextlib.closing(self._connect()) as connection:
            connection.execute(
                f"UPDATE {LEADERS_TABLE} SET last_error = ?, last_error_at = ? WHERE name = ? AND epoch = ?",
                (error[:2000], _now(), leadership.name, leadership.epoch),
            )

    def leaders(self) -> dict[str, LeaderRecord]:
        if not self.database.exists():
            return {}
        with contextlib.closing(self._connect()) as connection:
            rows = connection.execute(f"SELECT * FROM {LEADERS_TABLE} ORDER BY name").fetchall()
        return {row["name"]: self._record(dict(row)) for row in rows}

    def _record(self, row: dict[str, Any]) -> LeaderRecord:
        name = row["name"]
        with self._lock:
            held_here = name in self._held
        if held_here:
            active = True
        else:
            # Free if we can take it (then at once give it back): nobody leads.
            probe = _try_lock(lock_file_for(self.database, name))
            active = probe is None
            if probe is not None:
                probe.close()
        return LeaderRecord(
            name=name,
            epoch=int(row["epoch"]),
            host=row["host"],
            pid=int(row["pid"]),
            since=datetime.fromisoformat(row["since"]),
            active=active,
            last_error=row["last_error"],
            last_error_at=datetime.fromisoformat(row["last_error_at"]) if row["last_error_at"] else None,
        )

    def close(self) -> None:
        for leadership in list(self._held.values()):
            self._release(leadership)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


def _try_lock(path: Path) -> IO[bytes] | None:
    lock_file = path.open("ab")
    try:
        fcntl.flock(lock_file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock_file.close()
        return None
    return lock_file


class _FileFence(Fence):
    def __init__(self, name: str, epoch: int) -> None:
        self.name = name
        self.epoch = epoch

    def check(self, cursor: FenceCursor) -> None:
        # A write, so that it is the transaction's first statement takes the database's
        # write lock at once (waiting for it): the batch then runs on a snapshot no other
        # process can make stale, and a take-over waits for the batch to commit.
        cursor.execute(
            f"UPDATE {LEADERS_TABLE} SET epoch = epoch WHERE name = ? AND epoch = ? RETURNING epoch",
            (self.name, self.epoch),
        )
        if cursor.fetchone() is None:
            raise LeadershipLost(f"{self.name}: epoch {self.epoch} was superseded")


class _FileLeadership(Leadership):
    def __init__(self, election: FileLockElection, name: str, lock_file: IO[bytes], epoch: int) -> None:
        self.election = election
        self.name = name
        self.lock_file = lock_file
        self.epoch = epoch

    def still_held(self) -> bool:
        # An flock is only lost with its file: held while this process keeps it open.
        return not self.lock_file.closed

    def fence(self) -> Fence:
        return _FileFence(self.name, self.epoch)

    def report_error(self, error: str) -> None:
        self.election._report_error(self, error)

    def release(self) -> None:
        self.election._release(self)
