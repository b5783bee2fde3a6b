"""Inclusion proofs on request: a decision's events as leaves of its run's committed
Merkle tree, with their audit paths and the signed run proof they belong to.

The trees are read from what the audit projection stored when the attempt was
committed (application/projections/run_proof_trees.py): O(log n) rows per proof. Until
it has stored them, or with `recompute`, both trees are recomputed from the run's whole
audit log, as the close built them; the answer is the same either way."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from application.audit_chain import canonical_bytes
from application.ledger import DecisionLedger
from application.proofs import build_inclusion_proof
from application.queries.aggregates import AggregateQueries
from application.queries.read_models import ReadModels
from domain.errors import ProofNotFound


def decision_inclusion_proof(
    ledger: DecisionLedger,
    aggregates: AggregateQueries,
    read_models: ReadModels,
    decision_id: UUID,
    as_of_position: int | None = None,
    *,
    recompute: bool = False,
) -> dict[str, Any]:
    """The proof as known at `as_of_position` (None: now)."""
    decision = aggregates.decision(decision_id, as_of_position=as_of_position)
    try:
        run_proof = aggregates.latest_proof(decision.run_id, as_of_position=as_of_position)
    except ProofNotFound:
        raise ProofNotFound(
            f"run {decision.run_id!r} has no committed attempt to prove decision {decision_id}"
        ) from None
    seal = run_proof["seal_position"]
    events = _events_up_to(ledger, decision_id, seal)
    with read_models.run_trees(decision.run_id, seal, recompute=recompute) as trees:
        indexes = trees.leaf_indexes([position for position, _ in events])
        leaves = [(index, event_bytes) for index, (_, event_bytes) in zip(indexes, events, strict=True)]
        return build_inclusion_proof(run_proof, str(decision_id), trees, leaves)


def _events_up_to(ledger: DecisionLedger, decision_id: UUID, seal: int) -> list[tuple[int, bytes]]:
    """(position, canonical bytes) of the decision's events up to the seal."""
    events = []
    for stored in ledger.recorder.select_events(decision_id):
        position = ledger.index.event_position(decision_id, stored.originator_version)
        if position is None or position.position > seal:
            break
        event_bytes = canonical_bytes(
            position.position, stored.topic, stored.originator_id, stored.originator_version, stored.state
        )
        events.append((position.position, event_bytes))
    return events
