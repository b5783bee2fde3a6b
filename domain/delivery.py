"""What the dispatcher's records on an Action share: who they are attributed to and
where an action stands with the dispatcher."""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING, Any

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


class ActionStatus(StrEnum):
    REQUESTED = "requested"
    COMMITTED = "committed"
    FAILED = "failed"
    WAIVED = "waived"


class Dispatchable:
    """Where an action stands with the dispatcher, read from its state (no event here)."""

    if TYPE_CHECKING:
        status: str
        redelivery_pending: bool
        deliveries: list[dict[str, Any]]
        schedule_base: int
        dispatch_outcome: str | None

    @property
    def awaiting_delivery(self) -> bool:
        """Whether the dispatcher still has to carry this action out."""
        return self.status == ActionStatus.REQUESTED or (
            self.status == ActionStatus.FAILED and self.redelivery_pending
        )

    @property
    def delivery_in_flight(self) -> dict[str, Any] | None:
        """The last delivery, if it started and has no outcome yet."""
        if self.awaiting_delivery and self.deliveries and self.deliveries[-1]["outcome"] is None:
            return self.deliveries[-1]
        return None

    @property
    def deliveries_in_schedule(self) -> int:
        """Deliveries made since the current schedule started (request or redelivery)."""
        return len(self.deliveries) - self.schedule_base

    @property
    def dispatch_state(self) -> DispatchState:
        if self.awaiting_delivery:
            return DispatchState.IN_FLIGHT if self.delivery_in_flight else DispatchState.WAITING
        return DispatchState(self.dispatch_outcome or DispatchState.NONE)
