"""The tables of the runs projection: their columns, their DDL, how a run's summary is
read as of a position, and each table's rows as of a position (what `projections verify`
compares with a rebuild).

- summary:   a run's summary at its anchors: after each of its events that is not a
             decision recorded, and after every ANCHOR_EVERY-th event. Between two anchors
             a run has only decisions recorded: its summary at a position is the anchor in
             force there plus the decisions recorded since (its *tail*, read by
             TAIL_STATEMENT, at most ANCHOR_EVERY - 1 rows). Generations made before
             anchors have a row after every event, so their tails are empty.
- inputs:    per (run, input) admitted: when (rows are only ever inserted).
- decisions: per decision and version: its outcome then in force. Its first version
             says when its input was decided (one decision per run and input).
- actions:   per action and version: its status.

Decisions and actions are keyed within their run: a page's rows then land in the few
index pages of the runs it touches, not all over an index of random UUIDs. A decision's
version is keyed by its position (each event makes at most one): a correction finds the
version it ends by the position of the decision's event before it, in the ledger's index.

Reconciliation, as of position P:
  missing     = admitted at or before P, and not decided at or before P
  unexpected  = decided at or before P, and not admitted at or before P
(each an anti-join of `inputs` and `decisions`, read only when its count is not zero).
  pending     = actions whose status at P is `requested`
  failed      = actions whose status at P is `failed` (neither retried nor waived)

The summary also counts the dispatcher's delivery attempts, failed attempts and dead
letters (schedules used up; cumulative: a redelivery does not erase one).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

#: A run's summary is stored after at most this many of its events.
ANCHOR_EVERY = 32

SUMMARY_COUNTERS = (
    "admitted_count",
    "decision_count",
    "corrected_count",
    "missing_count",
    "unexpected_count",
    "actions_requested",
    "actions_pending",
    "actions_committed",
    "actions_failed",
    "actions_waived",
    "delivery_attempts",
    "delivery_failures",
    "dead_letters",
    "event_count",
)

SUMMARY_COLUMNS = (
    "run_id",
    "valid_from",
    "valid_to",
    "attempt",
    "status",
    "lane",
    "allow_empty",
    "basis_digest",
    "outcome_counts",
    *SUMMARY_COUNTERS,
    "first_position",
    "last_position",
    "opened_at",
    "updated_at",
)

INPUT_COLUMNS = ("run_id", "input_id", "admitted_at")
DECISION_COLUMNS = (
    "decision_id",
    "valid_from",
    "valid_to",
    "run_id",
    "input_id",
    "outcome",
    "effective_at",
    "corrections",
)
ACTION_COLUMNS = ("action_id", "valid_from", "valid_to", "run_id", "input_id", "kind", "status")

RUN_VIEW_DDL = (
    "CREATE TABLE IF NOT EXISTS {summary} ("
    " run_id TEXT NOT NULL, valid_from BIGINT NOT NULL, valid_to BIGINT,"
    " attempt INTEGER NOT NULL, status TEXT NOT NULL, lane TEXT NOT NULL,"
    " allow_empty INTEGER NOT NULL, basis_digest TEXT NOT NULL, outcome_counts TEXT NOT NULL,"
    + "".join(f" {counter} BIGINT NOT NULL," for counter in SUMMARY_COUNTERS)
    + " first_position BIGINT NOT NULL, last_position BIGINT NOT NULL,"
    " opened_at TEXT NOT NULL, updated_at TEXT NOT NULL,"
    " PRIMARY KEY (run_id, valid_from))",
    "CREATE INDEX IF NOT EXISTS {summary_current} ON {summary} (status, lane, run_id) WHERE valid_to IS NULL",
    "CREATE UNIQUE INDEX IF NOT EXISTS {summary_open_row} ON {summary} (run_id) WHERE valid_to IS NULL",
    # Generations made before inputs were insert-only also have the columns decided_at
    # and decision_id, and rows not admitted (admitted_at NULL): readers skip both.
    "CREATE TABLE IF NOT EXISTS {inputs} ("
    " run_id TEXT NOT NULL, input_id TEXT NOT NULL, admitted_at BIGINT NOT NULL,"
    " PRIMARY KEY (run_id, input_id)){without_rowid}",
    "CREATE TABLE IF NOT EXISTS {decisions} ("
    " decision_id TEXT NOT NULL, valid_from BIGINT NOT NULL, valid_to BIGINT,"
    " run_id TEXT NOT NULL, input_id TEXT NOT NULL, outcome TEXT NOT NULL,"
    " effective_at TEXT NOT NULL, corrections INTEGER NOT NULL,"
    " PRIMARY KEY (run_id, valid_from)){without_rowid}",
    "CREATE INDEX IF NOT EXISTS {decisions_input} ON {decisions} (run_id, input_id, valid_from)",
    "CREATE TABLE IF NOT EXISTS {actions} ("
    " action_id TEXT NOT NULL, valid_from BIGINT NOT NULL, valid_to BIGINT,"
    " run_id TEXT NOT NULL, input_id TEXT NOT NULL, kind TEXT NOT NULL, status TEXT NOT NULL,"
    " PRIMARY KEY (run_id, action_id, valid_from))",
    "CREATE INDEX IF NOT EXISTS {actions_run} ON {actions} (run_id, status, valid_from)",
)


def _admitted_before(t: Mapping[str, str]) -> str:
    """Whether the input of decision `d` was admitted before it was decided."""
    return (
        f"EXISTS (SELECT 1 FROM {t['inputs']} a WHERE a.run_id = d.run_id"
        " AND a.input_id = d.input_id AND a.admitted_at < d.valid_from)"
    )


def tail_statement(t: Mapping[str, str]) -> str:
    """A run's decisions recorded in a range of positions (run_id, after, up_to): each with
    whether its input was admitted before it."""
    return (
        f"SELECT d.decision_id, d.outcome, d.valid_from, {_admitted_before(t)}"
        f" AS admitted FROM {t['decisions']} d WHERE d.run_id = ? AND d.valid_from > ?"
        " AND d.valid_from <= ? AND d.corrections = 0 ORDER BY d.valid_from"
    )


#: The tail's columns as `summary_as_of_statement` names them.
TAIL_COLUMNS = {"tail_outcome": "outcome", "tail_from": "valid_from", "tail_admitted": "admitted"}
#: Its columns from the audit log: the run's records by the summary's last event, and
#: when that event was recorded.
AUDIT_COLUMNS = ("audit_records", "audit_recorded_at")


def summary_as_of_statement(t: Mapping[str, str], audit_records: str, *, of_attempt: bool) -> str:
    """A run's anchor in force at a position (of an attempt), with its tail to that
    position (a row per decision of the tail, or one whose tail columns are null) and its
    last audit record then, in one query. Parameters: (position, run_id, position,
    [attempt,] position). The run's last event by the position, within the anchor's range,
    is the summary's last event: the last of its tail, or the anchor's own."""
    attempt = " AND attempt = ?" if of_attempt else ""
    last_record = (
        f"FROM {audit_records} x WHERE x.run_id = r.run_id AND x.position <="
        " (CASE WHEN r.valid_to IS NOT NULL AND r.valid_to <= p.at THEN r.valid_to - 1 ELSE p.at END)"
        " ORDER BY x.position DESC LIMIT 1"
    )
    return (
        "SELECT s.*, d.outcome AS tail_outcome, d.valid_from AS tail_from,"
        f" {_admitted_before(t)} AS tail_admitted"
        f" FROM (SELECT r.*, (SELECT x.run_sequence {last_record}) AS audit_records,"
        f" (SELECT x.recorded_at {last_record}) AS audit_recorded_at"
        " FROM (SELECT ? AS at) p,"
        f" (SELECT * FROM {t['summary']} WHERE run_id = ? AND valid_from <= ?{attempt}"
        " ORDER BY valid_from DESC LIMIT 1) r) s"
        f" LEFT JOIN {t['decisions']} d ON d.run_id = s.run_id"
        " AND d.valid_from > s.valid_from AND d.valid_from <= ?"
        " AND (s.valid_to IS NULL OR d.valid_from < s.valid_to) AND d.corrections = 0"
        " ORDER BY d.valid_from"
    )


def split_summary_rows(
    rows: Sequence[Mapping[str, Any]],
) -> tuple[dict[str, Any], list[dict[str, Any]], tuple[Any, Any]]:
    """The rows of `summary_as_of_statement`: (the anchor, its tail, and the run's last
    audit record then: its run_sequence and recorded_at, or nulls)."""
    first = rows[0]
    anchor = {column: value for column, value in first.items() if column not in TAIL_COLUMNS}
    for column in AUDIT_COLUMNS:
        del anchor[column]
    tail = [
        {name: row[column] for column, name in TAIL_COLUMNS.items()}
        for row in rows
        if row["tail_from"] is not None
    ]
    return anchor, tail, (first["audit_records"], first["audit_recorded_at"])


def fold_tail(summary: dict[str, Any], outcomes: dict[str, int], tail: Sequence[Mapping[str, Any]]) -> None:
    """Add to an anchor's summary (and its outcome counts) the decisions of its tail, as
    the runs projection folded them."""
    for decision in tail:
        outcomes[decision["outcome"]] = outcomes.get(decision["outcome"], 0) + 1
        if decision["admitted"]:
            summary["missing_count"] -= 1
        else:
            summary["unexpected_count"] += 1
    if tail:
        summary["decision_count"] += len(tail)
        summary["event_count"] += len(tail)
        summary["last_position"] = tail[-1]["valid_from"]


def run_views_as_of(t: dict[str, str], position: int) -> dict[str, tuple[str, tuple[Any, ...]]]:
    """Each table's rows as they stood at `position`: what verify compares."""
    p = position
    upto = "CASE WHEN valid_to IS NOT NULL AND valid_to <= ? THEN valid_to END AS valid_to"
    other_summary = ", ".join(c for c in SUMMARY_COLUMNS if c not in ("run_id", "valid_from", "valid_to"))
    return {
        "summary": (
            f"SELECT run_id, valid_from, {upto}, {other_summary} FROM {t['summary']}"
            " WHERE valid_from <= ? ORDER BY run_id, valid_from",
            (p, p),
        ),
        "inputs": (
            f"SELECT run_id, input_id, admitted_at FROM {t['inputs']} WHERE admitted_at <= ?"
            " ORDER BY run_id, input_id",
            (p,),
        ),
        "decisions": (
            f"SELECT decision_id, valid_from, {upto}, run_id, input_id, outcome, effective_at,"
            f" corrections FROM {t['decisions']} WHERE valid_from <= ? ORDER BY decision_id, valid_from",
            (p, p),
        ),
        "actions": (
            f"SELECT action_id, valid_from, {upto}, run_id, input_id, kind, status"
            f" FROM {t['actions']} WHERE valid_from <= ? ORDER BY action_id, valid_from",
            (p, p),
        ),
    }
