"""The runs projection's summary versions (application/projections/summary_versions.py):
outcome counts written from a template equal canonical JSON, a page's versions are
chained (each valid until the run's next one), the stored version closed where the
page's first one begins, and a run read from the tables is its anchor plus its tail."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from application.projections.run_tables import SUMMARY_COLUMNS, SUMMARY_COUNTERS
from application.projections.summary_versions import WRITTEN_COLUMNS, SummaryVersions
from application.queries.read_models import ReadModels

OUTCOMES = st.text(min_size=1, max_size=12) | st.sampled_from(
    ["approve", "decline", "%d", "100%", '"q"', "é"]
)


TABLES = {"summary": '"summary"', "inputs": '"inputs"', "decisions": '"decisions"'}


class RecordingCursor:
    def __init__(
        self, stored: Sequence[dict[str, Any]] = (), tails: dict[str, list[dict[str, Any]]] | None = None
    ):
        self.stored = list(stored)
        #: Per run: the decisions recorded after its stored anchor.
        self.tails = tails or {}
        self.tail_asked: list[tuple[Any, ...]] = []
        self.updates: list[tuple[Any, ...]] = []
        self.inserted: list[dict[str, Any]] = []

    def execute(self, statement: str, params: Sequence[Any]) -> RecordingCursor:
        assert '"decisions" d' in statement and "d.valid_from > ?" in statement
        self.tail_asked.append(tuple(params))
        self._fetched = self.tails.get(params[0], [])
        return self

    def fetchall(self) -> list[dict[str, Any]]:
        return self._fetched

    def select_in(self, statement: str, params: Sequence[Any], values: Sequence[Any]) -> list[dict[str, Any]]:
        return [row for row in self.stored if row["run_id"] in values]

    def executemany(self, statement: str, rows: Sequence[Sequence[Any]]) -> None:
        assert statement.startswith("UPDATE")
        self.updates += rows

    def insert_rows(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        self.inserted += [dict(zip(columns, row, strict=True)) for row in rows]


def summary_of(run_id: str, position: int) -> dict[str, Any]:
    return {
        "run_id": run_id,
        "valid_from": position,
        "attempt": 1,
        "status": "open",
        "lane": "fraud",
        "allow_empty": 0,
        "basis_digest": "0" * 64,
        "outcomes": {},
        "outcome_counts": "{}",
        **dict.fromkeys(SUMMARY_COUNTERS, 0),
        "first_position": position,
        "last_position": position,
        "opened_at": "t",
        "updated_at": "t",
    }


@given(st.lists(st.tuples(OUTCOMES, st.booleans()), max_size=40))
def test_outcome_counts_are_canonical_json_after_any_changes(steps: list[tuple[str, bool]]) -> None:
    versions = SummaryVersions(TABLES)
    summary = summary_of("run-a", 1)
    for outcome, add in steps:
        if add or not summary["outcomes"].get(outcome):
            versions.count(summary, outcome, +1)
        else:
            versions.count(summary, outcome, -1)
        assert summary["outcome_counts"] == json.dumps(summary["outcomes"], sort_keys=True)
        assert 0 not in summary["outcomes"].values()


def test_a_loaded_summary_counts_on_from_its_stored_text() -> None:
    stored = {**summary_of("run-a", 3), "valid_to": None, "outcome_counts": '{"approve": 2, "x%": 1}'}
    del stored["outcomes"]
    versions = SummaryVersions(TABLES)
    versions.load(RecordingCursor([stored]), ["run-a"])
    summary = versions.current("run-a")
    assert summary is not None
    versions.count(summary, "approve", +1)
    assert summary["outcome_counts"] == '{"approve": 3, "x%": 1}'


def test_a_pages_versions_are_chained_and_the_stored_one_is_closed() -> None:
    stored = {**summary_of("run-a", 3), "valid_to": None}
    del stored["outcomes"]
    versions = SummaryVersions(TABLES)
    cursor = RecordingCursor([stored])
    versions.load(cursor, ["run-a"])
    versions.open(summary_of("run-b", 5))
    for run_id, position in (("run-b", 5), ("run-a", 6), ("run-b", 7), ("run-a", 9)):
        summary = versions.current(run_id)
        assert summary is not None
        summary["valid_from"] = summary["last_position"] = position
        versions.take(summary)
    versions.flush(cursor, keep=lambda run_id: run_id == "run-b")

    assert set(WRITTEN_COLUMNS) == set(SUMMARY_COLUMNS)
    assert [(row["run_id"], row["valid_from"], row["valid_to"]) for row in cursor.inserted] == [
        ("run-b", 5, 7),
        ("run-a", 6, 9),
        ("run-b", 7, None),
        ("run-a", 9, None),
    ]
    assert cursor.updates == [(6, "run-a", 3)]  # the stored version ends where the page's first begins
    # The followed run stays known, as stored from its last version; the other is read again.
    assert versions.current("run-a") is None
    kept = versions.current("run-b")
    assert kept is not None and kept["valid_from"] == 7
    summary = versions.current("run-b")
    assert summary is not None
    summary["valid_from"] = 11
    versions.take(summary)
    versions.flush(cursor, keep=lambda run_id: True)
    assert cursor.updates[-1] == (11, "run-b", 7)


def test_a_run_read_from_the_tables_is_its_anchor_and_its_tail() -> None:
    stored = {
        **summary_of("run-a", 3),
        "valid_to": None,
        "outcome_counts": '{"approve": 1}',
        "decision_count": 1,
        "missing_count": 2,
        "event_count": 3,
    }
    del stored["outcomes"]
    tail = [
        {"decision_id": "d1", "outcome": "decline", "valid_from": 4, "admitted": True},
        {"decision_id": "d2", "outcome": "approve", "valid_from": 6, "admitted": False},
    ]
    versions = SummaryVersions(TABLES)
    cursor = RecordingCursor([stored], {"run-a": tail})
    versions.load(cursor, ["run-a"])
    summary = versions.current("run-a")
    assert summary is not None
    assert cursor.tail_asked[0][:2] == ("run-a", 3)  # the decisions after the anchor
    assert summary["outcome_counts"] == '{"approve": 2, "decline": 1}'
    assert (summary["decision_count"], summary["missing_count"], summary["unexpected_count"]) == (3, 1, 1)
    assert (summary["event_count"], summary["last_position"]) == (5, 6)
    # Its next version closes the stored anchor, not a tail position.
    summary["valid_from"] = 8
    versions.take(summary)
    versions.flush(cursor, keep=lambda run_id: True)
    assert cursor.updates == [(8, "run-a", 3)]


def test_a_page_without_an_anchor_of_a_run_keeps_the_stored_one_in_force() -> None:
    versions = SummaryVersions(TABLES)
    cursor = RecordingCursor()
    versions.open(summary_of("run-a", 1))
    summary = versions.current("run-a")
    assert summary is not None
    versions.take(summary)
    versions.flush(cursor, keep=lambda run_id: True)
    # A page of decisions only (no anchor): nothing is written or closed.
    versions.flush(cursor, keep=lambda run_id: True)
    assert cursor.updates == [] and len(cursor.inserted) == 1
    summary["valid_from"] = 40
    versions.take(summary)
    versions.flush(cursor, keep=lambda run_id: True)
    assert cursor.updates == [(40, "run-a", 1)]


def test_a_summary_with_a_tail_and_no_audit_record_is_refused() -> None:
    # A tail's time is its last event's audit record: without one the views disagree.
    summary = {**summary_of("run-a", 3), "updated_at": None}
    with pytest.raises(LookupError, match="no audit record of run run-a"):
        ReadModels._from_audit_record(summary, None, None)
    assert ReadModels._from_audit_record(summary, 7, "2026-12-04T00:00:00.000000+00:00") == 7
    assert summary["updated_at"] == "2026-12-04T00:00:00.000000+00:00"
