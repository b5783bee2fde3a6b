"""The input rows the runs projection has committed lately, kept so that a page need not
read them back.

A page that admits or decides inputs must know each input's row as stored. Reading
them costs a query per run per page, and most of them were written by this same
projection a few pages before. So the projection keeps, after each commit, the rows it
wrote, a whole run at a time, for the runs it saw lately. A run it saw opened is
*complete*: an input it does not hold has no row at all, so no query is needed.

Only committed rows are kept (a page that fails leaves this untouched), and only one
projection object writes its tables (a rebuild's fresh generation, or the elected
leader, whose runner and projection are made anew whenever it leads again), so what is
kept is what is stored. The number of rows kept is bounded: the least recently used
runs are dropped first, and a dropped run is read from the database again.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Sequence
from itertools import chain
from typing import Any

#: An input's row as written: (run_id, input_id, admitted_at, decided_at, decision_id).
InputRow = tuple[Any, ...]

#: Rows kept at most (about 35 MB at 100,000).
DEFAULT_MAX_ROWS = 100_000


class CommittedInputs:
    def __init__(self, max_rows: int = DEFAULT_MAX_ROWS) -> None:
        self.max_rows = max_rows
        self._runs: OrderedDict[str, dict[str, InputRow]] = OrderedDict()
        self._complete: set[str] = set()
        self._rows = 0

    def lookup(self, run_id: str, input_ids: Sequence[str]) -> tuple[dict[str, InputRow], list[str]]:
        """(the rows known for these inputs, the inputs whose row must be read)."""
        rows = self._runs.get(run_id)
        if rows is None:
            return {}, list(input_ids)
        self._runs.move_to_end(run_id)
        found: dict[str, InputRow] = {}
        unknown: list[str] = []
        complete = run_id in self._complete
        for input_id in input_ids:
            row = rows.get(input_id)
            if row is not None:
                found[input_id] = row
            elif not complete:
                unknown.append(input_id)
        return found, unknown

    def committed(
        self,
        opened: Iterable[str],
        written: Iterable[Iterable[InputRow]],
        closed: Iterable[str],
    ) -> None:
        """After a page's commit: the runs it opened, the input rows it wrote (in lists),
        and the runs it closed (no decision comes to a closed run until it is reopened)."""
        for run_id in opened:
            self._forget(run_id)
            self._runs[run_id] = {}
            self._complete.add(run_id)
        for row in chain.from_iterable(written):
            run_id, input_id = row[0], row[1]
            kept = self._runs.get(run_id)
            if kept is None:
                kept = self._runs[run_id] = {}
            self._rows += input_id not in kept
            kept[input_id] = row
            self._runs.move_to_end(run_id)
        for run_id in closed:
            self._forget(run_id)
        while self._rows > self.max_rows and self._runs:
            self._forget(next(iter(self._runs)))

    def _forget(self, run_id: str) -> None:
        rows = self._runs.pop(run_id, None)
        if rows is not None:
            self._rows -= len(rows)
        self._complete.discard(run_id)

    def __len__(self) -> int:
        return self._rows
