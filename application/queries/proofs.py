"""Inclusion proofs on request: a decision's events as leaves of its run's committed
Merkle tree, with their audit paths and the signed run proof they belong to."""

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
    material = read_models.proof_material(decision.run_id, seal)
    index_of = {position: index for index, position in enumerate(material.positions)}
    leaves = []
    for stored in ledger.recorder.select_events(decision_id):
        position = ledger.index.event_position(decision_id, stored.originator_version)
        if position is None or position.position > seal:
            break
        event_bytes = canonical_bytes(
            position.position, stored.topic, stored.originator_id, stored.originator_version, stored.state
        )
        leaves.append((index_of[position.position], event_bytes))
    return build_inclusion_proof(run_proof, str(decision_id), material, leaves)
