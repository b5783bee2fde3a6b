"""A page's writes to one temporal view table, folded in memory and written set-based.

A temporal table keeps every version of a thing (a run's summary, a decision, an action,
an outbox entry) over the positions [valid_from, valid_to). Within a page, a new version
ends the one before it: in memory when that one is new in this page too, else with an
UPDATE of the stored row. At the page's end the stored rows are closed first (a table
may allow one open row per key), then the new rows are inserted in a few statements.

Each thing belongs to a run, and its table is keyed within the run: by (run_id, key,
valid_from), or by (run_id, valid_from) when each position makes at most one version
(then a version in force is read by where it began: `load_at`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from operator import itemgetter
from typing import Any

from infrastructure.view_store import ViewCursor


class VersionedRows:
    def __init__(self, table: str, columns: Sequence[str], key: str) -> None:
        self.table = table
        self.columns = tuple(columns)
        self.key = key
        self.reset()

    def reset(self) -> None:
        #: The version in force of each key this page knows of (read, or written here).
        self._current: dict[Any, dict[str, Any]] = {}
        #: Keys whose version in force is stored: its valid_from.
        self._stored_from: dict[Any, int] = {}
        self._new: list[dict[str, Any]] = []
        self._closes: list[tuple[int, str, Any, int]] = []

    def load(self, cursor: ViewCursor, keys: Iterable[tuple[str, Any]]) -> None:
        """Read the stored versions in force of these (run_id, key) pairs, a query per run."""
        wanted: dict[str, list[Any]] = {}
        for run_id, key in dict.fromkeys(keys):
            if key not in self._current:
                wanted.setdefault(run_id, []).append(key)
        statement = f"SELECT * FROM {self.table} WHERE valid_to IS NULL AND run_id = ? AND {self.key} IN (?*)"
        for run_id, run_keys in wanted.items():
            for row in cursor.select_in(statement, (run_id,), run_keys):
                self._current[row[self.key]] = row
                self._stored_from[row[self.key]] = row["valid_from"]

    def load_at(self, cursor: ViewCursor, versions: Iterable[tuple[str, Any, int]]) -> None:
        """Read the stored versions in force that began where these (run_id, key,
        valid_from) say, a query per run; refused if one is not stored, or not in force."""
        wanted: dict[str, dict[int, Any]] = {}
        for run_id, key, valid_from in versions:
            if key not in self._current:
                wanted.setdefault(run_id, {})[valid_from] = key
        statement = f"SELECT * FROM {self.table} WHERE run_id = ? AND valid_from IN (?*)"
        for run_id, keys in wanted.items():
            found = {row["valid_from"]: row for row in cursor.select_in(statement, (run_id,), list(keys))}
            for valid_from, key in keys.items():
                row = found.get(valid_from)
                if row is None or row[self.key] != key or row["valid_to"] is not None:
                    raise LookupError(
                        f"{self.table} holds no version of {key} in force from position {valid_from}:"
                        " the view and the log disagree"
                    )
                self._current[key] = row
                self._stored_from[key] = valid_from

    def current(self, key: Any) -> dict[str, Any] | None:
        """The version in force (loaded or written in this page), if any."""
        return self._current.get(key)

    def add(self, row: dict[str, Any]) -> None:
        """A new version, in force from its valid_from on: the one before it ends there."""
        self.end(row[self.key], row["valid_from"])
        self._current[row[self.key]] = row
        self._new.append(row)

    def end(self, key: Any, position: int) -> dict[str, Any] | None:
        """End the version in force at `position` (no new one follows); returns it."""
        previous = self._current.pop(key, None)
        if previous is not None:
            stored_from = self._stored_from.pop(key, None)
            if stored_from is None:
                previous["valid_to"] = position
            else:
                self._closes.append((position, previous["run_id"], key, stored_from))
        return previous

    def flush(self, cursor: ViewCursor, keep: Callable[[Any], bool] | None = None) -> None:
        """Write the page's rows. The versions in force of the keys `keep` names stay
        known to the next page (as stored: it need not read them again)."""
        cursor.executemany(
            f"UPDATE {self.table} SET valid_to = ? WHERE run_id = ? AND {self.key} = ? AND valid_from = ?",
            self._closes,
        )
        columns_of = itemgetter(*self.columns)
        cursor.insert_rows(self.table, self.columns, [columns_of(row) for row in self._new])
        kept = {key: row for key, row in self._current.items() if keep is not None and keep(key)}
        self.reset()
        self._current = kept
        self._stored_from = {key: row["valid_from"] for key, row in kept.items()}
