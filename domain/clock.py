"""Where the domain's sense of "now" comes from. Aggregates are given the time by the
application (decided before an event is triggered), so tests can set it."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from eventsourcing.domain import datetime_now_with_tzinfo

#: Answers the current time, with a UTC offset.
Clock = Callable[[], datetime]


def system_clock() -> datetime:
    return datetime_now_with_tzinfo()
