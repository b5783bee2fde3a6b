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


def tail_statement(t: Mapping[str, str]) -> str:
    """A run's decisions recorded in a range of positions (run_id, after, up_to): each with
    whether its input was admitted before it."""
    return (
        f"SELECT d.decision_id, d.outcome, d.valid_from, EXISTS (SELECT 1 FROM {t['inputs']} a"
        " WHERE a.run_id = d.run_id AND a.input_id = d.input_id AND a.admitted_at < d.valid_from)"
        f" AS admitted FROM {t['decisions']} d WHERE d.run_id = ? AND d.valid_from > ?"
        " AND d.valid_from <= ? AND d.corrections = 0 ORDER BY d.valid_from"
    )


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
