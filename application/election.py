"""One active follower per name across every process on a database.

A *follower* is anything that follows the log and writes what it derives from it: a
projection ("projection:runs", "projection:audit"), later the outbox dispatcher
("dispatcher"). Every process may stand for every name; one leads each name at a time.
The others stand by and take over when the leader dies or loses its claim.

The port (`LeaderElection`, `Leadership`) is implemented per back end in infrastructure/.
A leadership carries a *fence*: the follower checks it inside each write transaction, so a
process that lost its claim (a dropped connection, a long pause) cannot commit after a new
leader took over.
"""

from __future__ import annotations

import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

log = logging.getLogger(__name__)


class LeadershipLost(RuntimeError):
    """This process no longer leads the follower it was writing for."""


class FenceCursor(Protocol):
    """The follower's write transaction, as a fence sees it (a view cursor)."""

    def execute(self, statement: str, params: Sequence[Any] = ()) -> Any: ...

    def fetchone(self) -> dict[str, Any] | None: ...


class Fence(Protocol):
    def check(self, cursor: FenceCursor) -> None:
        """Raise LeadershipLost unless this leadership is still current, inside the
        follower's write transaction (so the transaction cannot commit otherwise)."""


@dataclass(frozen=True)
class LeaderRecord:
    """Who last took the lead of a follower, and whether they still hold it."""

    name: str
    epoch: int
    host: str
    pid: int
    since: datetime
    active: bool
    last_error: str | None
    last_error_at: datetime | None


class Leadership(ABC):
    """This process's claim to lead one named follower, from take-over to release."""

    name: str
    epoch: int

    @abstractmethod
    def still_held(self) -> bool:
        """Whether the claim is still held (checks the lock; false once it is lost)."""

    @abstractmethod
    def fence(self) -> Fence:
        """What the follower checks in each write transaction."""

    @abstractmethod
    def report_error(self, error: str) -> None:
        """Record the follower's last error where `status` can show it (best effort)."""

    @abstractmethod
    def release(self) -> None:
        """Give up the claim (idempotent); a standby may take over at its next poll."""


class LeaderElection(ABC):
    """Claims on named followers of one database."""

    @abstractmethod
    def try_lead(self, name: str) -> Leadership | None:
        """Take the lead of `name` if nobody holds it; None if somebody does."""

    @abstractmethod
    def leaders(self) -> dict[str, LeaderRecord]:
        """The last take-over of every follower, by name."""

    @abstractmethod
    def close(self) -> None:
        """Release every claim of this process and close what the election holds open."""


class Candidacy:
    """One process standing for one named follower.

    `leading()` is called from the follower's supervising loop: while it leads it checks
    that the claim is still held; while it stands by it tries to take the lead at most once
    every `poll_s` seconds.
    """

    def __init__(
        self,
        election: LeaderElection,
        name: str,
        *,
        poll_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.election = election
        self.name = name
        self.poll_s = poll_s
        self._clock = clock
        self._leadership: Leadership | None = None
        self._next_try = 0.0

    @property
    def leadership(self) -> Leadership | None:
        return self._leadership

    def leading(self) -> bool:
        if self._leadership is not None:
            if self._leadership.still_held():
                return True
            log.warning("lost the lead of %s (epoch %s)", self.name, self._leadership.epoch)
            self.resign()
            # A process that just lost its lock (cut off, paused) stands again last: the
            # standbys get the first chance to take over.
            self._next_try = self._clock() + 2 * self.poll_s
            return False
        now = self._clock()
        if now < self._next_try:
            return False
        self._next_try = now + self.poll_s
        try:
            self._leadership = self.election.try_lead(self.name)
        except Exception:  # the database may be away; stand by and try again
            log.exception("could not stand for %s", self.name)
            return False
        if self._leadership is not None:
            log.info("leading %s (epoch %s)", self.name, self._leadership.epoch)
        return self._leadership is not None

    def report_error(self, error: str) -> None:
        if self._leadership is not None:
            try:
                self._leadership.report_error(error)
            except Exception:
                log.exception("could not record the last error of %s", self.name)

    def resign(self) -> None:
        leadership, self._leadership = self._leadership, None
        self._next_try = self._clock() + self.poll_s
        if leadership is not None:
            try:
                leadership.release()
            except Exception:
                log.exception("could not release the lead of %s", self.name)


class LocalElection(LeaderElection):
    """Claims inside this process only: for a service built without a database-wide
    election (tests and tools that run one process on a database)."""

    def __init__(self) -> None:
        self._held: set[str] = set()

    def try_lead(self, name: str) -> Leadership | None:
        if name in self._held:
            return None
        self._held.add(name)
        return _LocalLeadership(self, name)

    def leaders(self) -> dict[str, LeaderRecord]:
        return {}

    def close(self) -> None:
        self._held.clear()


class _NoFence(Fence):
    def check(self, cursor: FenceCursor) -> None:
        """Nothing to check: no other process takes part in this election."""


class _LocalLeadership(Leadership):
    def __init__(self, election: LocalElection, name: str) -> None:
        self.election = election
        self.name = name
        self.epoch = 1

    def still_held(self) -> bool:
        return self.name in self.election._held

    def fence(self) -> Fence:
        return _NoFence()

    def report_error(self, error: str) -> None:
        log.warning("%s failed: %s", self.name, error)

    def release(self) -> None:
        self.election._held.discard(self.name)
