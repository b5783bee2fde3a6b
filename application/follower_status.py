"""Where each follower of the log stands: who leads it, how far it got, how far behind
it is (in positions and in seconds), and its last error.

The dispatcher is listed beside the projections: it reads the outbox, so its position
and lag are the outbox's; its leader and last error are its own."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime

from application.dispatch.dispatcher import DISPATCHER_FOLLOWER
from application.election import LeaderElection, LeaderRecord
from application.projections.runtime import Projections, ProjectionStatus
from application.projections.worker import follower_name
from domain.clock import Clock


@dataclass(frozen=True)
class FollowerStatus:
    name: str
    leader: LeaderRecord | None
    position: int
    head: int
    lag_positions: int
    #: How long the oldest event it has not applied has waited (0 when caught up).
    lag_seconds: float
    last_error: str | None
    last_error_at: datetime | None

    @property
    def led(self) -> bool:
        return self.leader is not None and self.leader.active


def follower_statuses(
    projections: Projections,
    election: LeaderElection,
    clock: Clock,
    statuses: list[ProjectionStatus] | None = None,
    *,
    dispatcher: bool = False,
) -> list[FollowerStatus]:
    """`statuses`: the projections' own, when the caller has them already. The dispatcher
    is listed when `dispatcher` (effectors are configured) or some process stood for it."""
    index = projections.app.index
    leaders = election.leaders()
    head = index.head_position()
    now = clock()
    followers = []
    for status in statuses if statuses is not None else projections.status():
        name = follower_name(status.name)
        leader = leaders.get(name)
        lag_seconds = 0.0
        if status.lag:
            oldest = index.events_between(status.position, None, 1)
            if oldest:
                lag_seconds = max(0.0, (now - oldest[0].recorded_at).total_seconds())
        # This process's own failure when it leads it; else what the leader recorded.
        error = leader.last_error if leader else None
        if status.failure is not None:
            error = status.failure.error
        followers.append(
            FollowerStatus(
                name=name,
                leader=leader,
                position=status.position,
                head=max(head, status.head),
                lag_positions=status.lag,
                lag_seconds=lag_seconds,
                last_error=error,
                last_error_at=leader.last_error_at if leader and error else None,
            )
        )
    outbox = next((status for status in followers if status.name == follower_name("outbox")), None)
    if outbox is not None and (dispatcher or DISPATCHER_FOLLOWER in leaders):
        leader = leaders.get(DISPATCHER_FOLLOWER)
        error = leader.last_error if leader else None
        followers.append(
            replace(
                outbox,
                name=DISPATCHER_FOLLOWER,
                leader=leader,
                last_error=error,
                last_error_at=leader.last_error_at if leader and error else None,
            )
        )
    return followers
