"""Run summaries as the runs projection folds a page: each run's summary in force, and a
version of it at each of the run's anchors (run_tables.py says which events are anchors;
an as-of read is an index lookup and a tail of fewer than ANCHOR_EVERY decisions).

A version is a tuple of the summary's columns, taken when its event is folded; its
valid_to (the position of the run's next version, or none yet) is filled in when the
page is written, and the version stored before the page is closed where the page's first
one begins. The summaries of the runs still followed stay known to the next page; the
summary of any other run is read as its stored anchor plus its tail.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from functools import lru_cache
from operator import itemgetter
from typing import Any

from application.projections.run_tables import SUMMARY_COLUMNS, fold_tail, tail_statement
from infrastructure.view_store import ViewCursor

#: The columns of a version in the order it is taken; valid_to is added last.
TAKEN_COLUMNS = tuple(column for column in SUMMARY_COLUMNS if column != "valid_to")
WRITTEN_COLUMNS = (*TAKEN_COLUMNS, "valid_to")
#: Beyond any position: the tail of a run's last anchor runs to the end of the log.
END_OF_LOG = 2**63 - 1


@lru_cache(maxsize=1024)
def _counts_format(outcomes: tuple[str, ...]) -> tuple[str, Callable[[dict[str, int]], Any]]:
    """For a set of outcomes (sorted): the counts' text as stored (JSON with sorted keys and
    the default separators) as a %-template, and the getter of its values. A decision
    changes a count, rarely the set of outcomes."""
    if not outcomes:
        return "{}", lambda counts: ()
    template = ", ".join(json.dumps(outcome).replace("%", "%%") + ": %d" for outcome in outcomes)
    return "{" + template + "}", itemgetter(*outcomes)


def _format_outcomes(summary: dict[str, Any]) -> None:
    """Note the summary's set of outcomes, and write its counts as stored."""
    template, values = summary["outcomes_format"] = _counts_format(tuple(sorted(summary["outcomes"])))
    summary["outcome_counts"] = template % values(summary["outcomes"])


class SummaryVersions:
    def __init__(self, tables: Mapping[str, str]) -> None:
        self.table = tables["summary"]
        self._tail = tail_statement(tables)
        self._take = itemgetter(*TAKEN_COLUMNS)
        self.reset()

    def reset(self) -> None:
        #: Each run's summary in force (its `outcomes` a dict, kept as `outcome_counts` text).
        self._in_force: dict[str, dict[str, Any]] = {}
        #: Each run's last stored version (its anchor in force): its valid_from.
        self._stored_from: dict[str, int] = {}
        self._versions: list[tuple[Any, ...]] = []

    def load(self, cursor: ViewCursor, run_ids: Iterable[str]) -> None:
        """Read the summaries in force of the runs not known yet: each one's stored anchor
        in force, and its tail."""
        wanted = [run_id for run_id in dict.fromkeys(run_ids) if run_id not in self._in_force]
        statement = f"SELECT * FROM {self.table} WHERE valid_to IS NULL AND run_id IN (?*)"
        for row in cursor.select_in(statement, (), wanted):
            summary = dict(row)
            del summary["valid_to"]
            summary["outcomes"] = json.loads(summary["outcome_counts"])
            tail = cursor.execute(self._tail, (row["run_id"], row["valid_from"], END_OF_LOG)).fetchall()
            fold_tail(summary, summary["outcomes"], tail)
            _format_outcomes(summary)
            self._in_force[row["run_id"]] = summary
            self._stored_from[row["run_id"]] = row["valid_from"]

    def current(self, run_id: str) -> dict[str, Any] | None:
        """The run's summary in force (None before it was opened): change it, then `take`."""
        return self._in_force.get(run_id)

    def open(self, summary: dict[str, Any]) -> None:
        """A run's first summary (its `outcomes` a dict)."""
        _format_outcomes(summary)
        self._in_force[summary["run_id"]] = summary

    def count(self, summary: dict[str, Any], outcome: str, delta: int) -> None:
        outcomes = summary["outcomes"]
        count = outcomes.get(outcome, 0) + delta
        if count and outcome in outcomes:  # the set of outcomes stays
            outcomes[outcome] = count
            template, values = summary["outcomes_format"]
            summary["outcome_counts"] = template % values(outcomes)
            return
        if count:
            outcomes[outcome] = count
        else:
            del outcomes[outcome]
        _format_outcomes(summary)

    def take(self, summary: dict[str, Any]) -> None:
        """A version of the summary as it stands (an anchor), in force from its `valid_from`."""
        self._versions.append(self._take(summary))

    def flush(self, cursor: ViewCursor, keep: Callable[[str], bool]) -> None:
        """Write the page's versions; the summaries of the runs `keep` names stay known."""
        versions = self._versions
        rows: list[tuple[Any, ...]] = [()] * len(versions)
        next_from: dict[str, int] = {}  # per run: where its next version begins
        for index in range(len(versions) - 1, -1, -1):
            version = versions[index]
            run_id = version[0]
            rows[index] = (*version, next_from.get(run_id))
            next_from[run_id] = version[1]
        closes = [
            (first_from, run_id, self._stored_from[run_id])
            for run_id, first_from in next_from.items()
            if run_id in self._stored_from
        ]
        cursor.executemany(
            f"UPDATE {self.table} SET valid_to = ? WHERE run_id = ? AND valid_from = ?", closes
        )
        cursor.insert_rows(self.table, WRITTEN_COLUMNS, rows)
        kept = {run_id: summary for run_id, summary in self._in_force.items() if keep(run_id)}
        # A run's anchor in force is now its last version of the page, or the one before.
        stored_from = {run_id: self._stored_from[run_id] for run_id in kept if run_id in self._stored_from}
        stored_from.update((version[0], version[1]) for version in versions if version[0] in kept)
        self.reset()
        self._in_force = kept
        self._stored_from = stored_from
