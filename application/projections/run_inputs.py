"""Which inputs of a run are admitted and which are decided, as the runs projection
folds its pages: what makes an input `missing` (admitted, not decided) or a decision
`unexpected` (decided, not admitted). Each input is admitted at most once and decided
at most once, so each fold step asks one question: was its other half seen before?

The projection keeps the open inputs (one half seen, not the other) of the runs it has
followed since they were opened, across pages, within bounds: for such a run no page
reads the tables. Any other run (opened before this process followed the log, or let go
to keep memory bounded) is asked of the tables, in one query per run and page. All is
forgotten when a page fails or another writer moved the tables on.
"""

from __future__ import annotations

import sys
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field

from infrastructure.view_store import ViewCursor

#: Runs followed at most, and open inputs held at most over all of them.
MAX_FOLLOWED_RUNS = 1_000
MAX_OPEN_INPUTS = 250_000
#: Bytes a set may hold per member before it is made anew (a fresh one takes 40 to 130).
ROOM_PER_INPUT = 256


@dataclass
class OpenInputs:
    """A run's inputs with one half seen: admitted and undecided, decided and unadmitted."""

    undecided: set[str] = field(default_factory=set)
    unadmitted: set[str] = field(default_factory=set)

    def admit(self, input_id: str) -> bool:
        """Admit an input; answers whether it was decided before."""
        if input_id in self.unadmitted:
            self.unadmitted.discard(input_id)
            return True
        self.undecided.add(input_id)
        return False

    def decide(self, input_id: str) -> bool:
        """Decide an input; answers whether it was admitted before."""
        if input_id in self.undecided:
            self.undecided.discard(input_id)
            return True
        self.unadmitted.add(input_id)
        return False

    def size(self) -> int:
        return len(self.undecided) + len(self.unadmitted)

    def compact(self) -> None:
        """A set keeps the room it once needed: once most of it is free, make it anew
        (a run whose basis is all decided then holds next to nothing)."""
        if sys.getsizeof(self.undecided) > ROOM_PER_INPUT * (len(self.undecided) + 8):
            self.undecided = set(self.undecided)
        if sys.getsizeof(self.unadmitted) > ROOM_PER_INPUT * (len(self.unadmitted) + 8):
            self.unadmitted = set(self.unadmitted)


class RunInputs:
    def __init__(self, inputs_table: str, decisions_table: str) -> None:
        self.inputs_table = inputs_table
        self.decisions_table = decisions_table
        #: The runs followed since they were opened, least recently used first.
        self._followed: OrderedDict[str, OpenInputs] = OrderedDict()
        #: This page's answers for the other runs (read from the tables).
        self._asked: dict[str, OpenInputs] = {}

    def is_followed(self, run_id: str) -> bool:
        return run_id in self._followed

    def forget(self) -> None:
        """Follow no run: a page failed, or the tables moved on without this process."""
        self._followed.clear()
        self._asked.clear()

    def begin_page(
        self,
        cursor: ViewCursor,
        opened: Iterable[str],
        admitted: dict[str, list[str]],
        decided: dict[str, list[str]],
    ) -> None:
        """Follow the runs the page opens; ask the tables about the page's other inputs:
        which of those it decides were admitted, which of those it admits were decided."""
        self._asked = {}
        for run_id in opened:
            self._followed[run_id] = OpenInputs()
        for run_id in dict.fromkeys([*admitted, *decided]):
            if run_id in self._followed:
                self._followed.move_to_end(run_id)
                continue
            self._asked[run_id] = OpenInputs(
                undecided=self._column(
                    cursor,
                    f"SELECT input_id FROM {self.inputs_table}"
                    " WHERE run_id = ? AND admitted_at IS NOT NULL AND input_id IN (?*)",
                    run_id,
                    decided.get(run_id, ()),
                ),
                unadmitted=self._column(
                    cursor,
                    f"SELECT DISTINCT input_id FROM {self.decisions_table} WHERE run_id = ? AND input_id IN (?*)",
                    run_id,
                    admitted.get(run_id, ()),
                ),
            )

    @staticmethod
    def _column(cursor: ViewCursor, statement: str, run_id: str, input_ids: Iterable[str]) -> set[str]:
        wanted = list(dict.fromkeys(input_ids))
        return {row["input_id"] for row in cursor.select_in(statement, (run_id,), wanted)}

    def of(self, run_id: str) -> OpenInputs:
        followed = self._followed.get(run_id)
        return followed if followed is not None else self._asked[run_id]

    def end_page(self) -> None:
        """Drop this page's answers and, beyond the bounds, the least recently used runs."""
        self._asked = {}
        for inputs in self._followed.values():
            inputs.compact()
        open_inputs = sum(inputs.size() for inputs in self._followed.values())
        while self._followed and (len(self._followed) > MAX_FOLLOWED_RUNS or open_inputs > MAX_OPEN_INPUTS):
            _, inputs = self._followed.popitem(last=False)
            open_inputs -= inputs.size()
