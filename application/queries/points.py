"""Which point of the log a read is about: a time, a position, or now."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from application.ports import LedgerIndex
from domain import errors
from domain.fields import require_moment


@dataclass(frozen=True)
class PointInLog:
    """As of a knowledge time or a position (at most one); neither means now."""

    as_of: datetime | None = None
    as_of_position: int | None = None

    def __post_init__(self) -> None:
        if self.as_of is not None and self.as_of_position is not None:
            raise errors.InvalidQuery("give as_of or as_of_position, not both", field="as_of")
        if self.as_of is not None:
            require_moment(self.as_of, "as_of", error=errors.InvalidQuery)

    def position(self, index: LedgerIndex) -> int | None:
        """The position this point names in the log (None: now). NothingKnownYet when the
        log held nothing then."""
        if self.as_of is not None:
            position = index.position_at(self.as_of)
            if position is None:
                raise errors.NothingKnownYet(f"nothing was recorded at or before {self.as_of.isoformat()}")
            return position
        if self.as_of_position is not None:
            head = index.head_position()
            if head == 0 or self.as_of_position < 1:
                raise errors.NothingKnownYet(
                    f"nothing was recorded at or before position {self.as_of_position}"
                )
            return min(self.as_of_position, head)
        return None
