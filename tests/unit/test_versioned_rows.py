"""Versions in force read by where they began (application/projections/versioned_rows.py,
`load_at`): a correction ends the version its decision's previous event made, and a
version that is not stored there, or no longer in force, is refused: the view and the
log disagree, and folding on would write a wrong history."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from application.projections.run_tables import DECISION_COLUMNS
from application.projections.versioned_rows import VersionedRows


class StoredRows:
    def __init__(self, rows: Sequence[dict[str, Any]]) -> None:
        self.rows = list(rows)
        self.asked: list[tuple[Any, ...]] = []
        self.updates: list[tuple[Any, ...]] = []
        self.inserted: list[tuple[Any, ...]] = []

    def select_in(self, statement: str, params: Sequence[Any], values: Sequence[Any]) -> list[dict[str, Any]]:
        assert "WHERE run_id = ? AND valid_from IN (?*)" in statement
        self.asked.append((*params, tuple(values)))
        return [row for row in self.rows if row["run_id"] == params[0] and row["valid_from"] in values]

    def executemany(self, statement: str, rows: Sequence[Sequence[Any]]) -> None:
        self.updates += [tuple(row) for row in rows]

    def insert_rows(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        self.inserted += [tuple(row) for row in rows]


def decision(
    decision_id: str, valid_from: int, valid_to: int | None = None, run_id: str = "run-a"
) -> dict[str, Any]:
    return {
        "decision_id": decision_id,
        "valid_from": valid_from,
        "valid_to": valid_to,
        "run_id": run_id,
        "input_id": "i",
        "outcome": "approve",
        "effective_at": "t",
        "corrections": 0,
    }


def decisions() -> VersionedRows:
    return VersionedRows('"decisions"', DECISION_COLUMNS, "decision_id")


def test_a_version_read_where_it_began_is_ended_by_the_correction() -> None:
    cursor = StoredRows([decision("d1", 4, valid_to=9), decision("d1", 9), decision("d2", 5, run_id="run-b")])
    rows = decisions()
    rows.load_at(cursor, [("run-a", "d1", 9), ("run-b", "d2", 5)])  # type: ignore[arg-type]
    assert sorted(cursor.asked) == [("run-a", (9,)), ("run-b", (5,))]  # a query per run
    current = rows.current("d1")
    assert current is not None and current["valid_from"] == 9
    rows.add({**current, "valid_from": 12, "outcome": "refer", "corrections": 1})
    rows.flush(cursor)  # type: ignore[arg-type]
    assert cursor.updates == [(12, "run-a", "d1", 9)]


@pytest.mark.parametrize(
    "stored",
    [
        [],  # nothing stored there
        [decision("d9", 9)],  # another decision's version
        [decision("d1", 9, valid_to=11)],  # ended already
    ],
    ids=["missing", "another-decision", "ended"],
)
def test_a_version_not_in_force_where_the_log_says_is_refused(stored: list[dict[str, Any]]) -> None:
    with pytest.raises(LookupError, match="the view and the log disagree"):
        decisions().load_at(StoredRows(stored), [("run-a", "d1", 9)])  # type: ignore[arg-type]
