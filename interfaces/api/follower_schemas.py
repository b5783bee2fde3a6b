"""What /readyz says about each follower of the log: its leader, position, lag and last error."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel

from application.follower_status import FollowerStatus


class LeaderPublic(BaseModel):
    host: str
    pid: int
    since: datetime
    epoch: int
    #: False: the process that last took the lead no longer holds it, and nobody does.
    active: bool


class FollowerPublic(BaseModel):
    name: str
    leader: LeaderPublic | None
    position: int
    lag_positions: int
    lag_seconds: float
    last_error: str | None
    last_error_at: datetime | None

    @classmethod
    def of(cls, status: FollowerStatus) -> FollowerPublic:
        leader = status.leader
        return cls(
            name=status.name,
            leader=None
            if leader is None
            else LeaderPublic(
                host=leader.host, pid=leader.pid, since=leader.since, epoch=leader.epoch, active=leader.active
            ),
            position=status.position,
            lag_positions=status.lag_positions,
            lag_seconds=round(status.lag_seconds, 3),
            # The error's kind only: its text may quote data (`projections status` shows it).
            last_error=status.last_error.split(":")[0] if status.last_error else None,
            last_error_at=status.last_error_at,
        )
