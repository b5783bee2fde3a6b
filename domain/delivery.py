"""What the dispatcher's records on an Action share: who they are attributed to and
where an action stands with the dispatcher."""

from __future__ import annotations

from enum import StrEnum

#: Who the dispatcher's events are attributed to.
DISPATCHER_ACTOR = "dispatcher"
#: The longest error text one delivery keeps.
MAX_DELIVERY_ERROR = 500


class DispatchState(StrEnum):
    """Where an action stands with the dispatcher (its status says where it stands with the run)."""

    WAITING = "waiting"  # to be sent (first time, retry or redelivery)
    IN_FLIGHT = "in_flight"  # a delivery started and has no outcome yet
    DELIVERED = "delivered"
    DEAD_LETTERED = "dead_lettered"  # the schedule was used up: failed until redelivered
    STOPPED = "stopped"  # the receiver said 410 Gone: failed, not retryable
    NONE = "none"  # settled by a caller (commit, fail, waive)
