"""The projections driven by hand, so a test knows exactly how far the views have read."""

from __future__ import annotations

from application.projections.base import LedgerProjection
from application.projections.runtime import Projections
from application.service import LedgerService


def live_projections(projections: Projections) -> dict[str, LedgerProjection]:
    """Each projection over its live generation, as a worker holds them."""
    return {
        name: projections.kind(name).build(projections.live_store(name), projections.app)
        for name in projections.names
    }


def catch_up_views(service: LedgerService) -> None:
    """Apply every stored event to the live generation of each projection of a
    `LedgerService` (one with no projection worker of its own)."""
    for projection in live_projections(service.projections).values():
        service.projections.catch_up(projection)
