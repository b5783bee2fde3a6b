"""When an action's next attempt is due.

`retry_schedule_s[k]` is the wait before attempt k+1 of a schedule (the first entry is
the wait after the request or redelivery). Waits are jittered by up to a tenth either
way, so a receiver that comes back is not hit by every action at once, and never
shorter than the Retry-After the receiver asked for."""

from __future__ import annotations

import random
from datetime import datetime, timedelta

from domain.action import Action
from infrastructure.effectors import Effector

JITTER = 0.1


def retry_at(
    effector: Effector,
    deliveries_in_schedule: int,
    now: datetime,
    retry_after_s: float | None,
    rng: random.Random,
) -> datetime | None:
    """When to try again after a failed attempt, or None when the schedule is used up."""
    if deliveries_in_schedule >= len(effector.retry_schedule_s):
        return None
    delay = effector.retry_schedule_s[deliveries_in_schedule] * rng.uniform(1 - JITTER, 1 + JITTER)
    if retry_after_s is not None:
        delay = max(delay, retry_after_s)
    return now + timedelta(seconds=delay)


def due_at(action: Action, effector: Effector) -> datetime | None:
    """When the dispatcher should next send this action (None: nothing to send)."""
    if not action.awaiting_delivery:
        return None
    in_flight = action.delivery_in_flight
    if in_flight is not None:
        # No outcome recorded: presumed lost once its answer could no longer come.
        started_at: datetime = in_flight["started_at"]
        return started_at + timedelta(seconds=effector.timeout_s + STUCK_GRACE_S)
    if action.deliveries_in_schedule == 0:
        started = action.next_delivery_at or action.created_on
        return started + timedelta(seconds=effector.retry_schedule_s[0])
    return action.next_delivery_at


#: Extra wait past an attempt's timeout before it is presumed lost.
STUCK_GRACE_S = 1.0
