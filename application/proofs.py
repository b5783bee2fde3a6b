"""Run proofs and decision inclusion proofs: built at commit, checked anywhere.

A run proof is canonical JSON. Its signature is Ed25519 over the canonical bytes of
the proof without its `signature` member; its digest is SHA-256 over the canonical
bytes of the whole proof, signature included, and that digest is recorded in the
run's Committed event.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Protocol

from application.audit_chain import inclusion_path, merkle_root
from domain.canonical import canonical_json
from domain.run import Reconciliation, Run

RUN_PROOF_FORMAT = "decision-ledger/run-proof/v1"
INCLUSION_PROOF_FORMAT = "decision-ledger/inclusion-proof/v1"


class SigningKey(Protocol):
    algorithm: str
    public_key: str
    key_id: str

    def sign(self, message: bytes) -> str: ...


def unsigned_bytes(proof: dict[str, Any]) -> bytes:
    """The bytes a run proof's signature covers."""
    return canonical_json({key: value for key, value in proof.items() if key != "signature"})


def proof_digest(proof: dict[str, Any]) -> str:
    return hashlib.sha256(canonical_json(proof)).hexdigest()


def build_run_proof(
    run: Run,
    evidence: Reconciliation,
    leaf_hashes: Sequence[str],
    chain_hash_at_seal: str,
    generated_at: datetime,
    signer: SigningKey,
) -> dict[str, Any]:
    summary = evidence.summary
    proof: dict[str, Any] = {
        "format": RUN_PROOF_FORMAT,
        "run_id": run.run_id,
        "lane": run.lane,
        "attempt": run.attempt,
        "verdict": "committed",
        "seal_position": evidence.seal_position,
        "chain_hash_at_seal": chain_hash_at_seal,
        "basis": {"count": evidence.admitted_count, "digest": evidence.basis_digest},
        "decisions": {"count": evidence.decision_count, "by_outcome": summary.get("outcomes", {})},
        "actions": summary.get("actions", {}),
        "reconciliation": {
            "missing": evidence.missing.count,
            "unexpected": evidence.unexpected.count,
            "pending": evidence.pending.count,
            "failed": evidence.failed.count,
        },
        "audit_records": evidence.audit_records,
        "merkle": {"tree_size": len(leaf_hashes), "root": merkle_root(leaf_hashes)},
        "generated_at": generated_at.isoformat(),
        "key_id": signer.key_id,
    }
    proof["signature"] = {
        "algorithm": signer.algorithm,
        "public_key": signer.public_key,
        "value": signer.sign(unsigned_bytes(proof)),
    }
    return proof


def build_inclusion_proof(
    run_proof: dict[str, Any],
    decision_id: str,
    leaf_hashes: Sequence[str],
    leaves: Sequence[tuple[int, bytes]],
) -> dict[str, Any]:
    """`leaves` are (index in the run's tree, canonical event bytes) of the decision's events."""
    return {
        "format": INCLUSION_PROOF_FORMAT,
        "decision_id": decision_id,
        "tree_size": len(leaf_hashes),
        "leaves": [
            {
                "leaf_index": index,
                "event": json.loads(event_bytes),
                "audit_path": inclusion_path(leaf_hashes, index),
            }
            for index, event_bytes in leaves
        ],
        "run_proof": run_proof,
    }


def decision_inclusion_proof(
    ledger: Any, read_models: Any, decision_id: Any, as_of_position: int | None = None
) -> dict[str, Any]:
    """The decision's events as leaves of its run's committed Merkle tree (as known at
    `as_of_position`), with their audit paths and the signed run proof."""
    from application.audit_chain import canonical_bytes
    from domain.errors import ProofNotFound

    decision = ledger.get_decision(decision_id, as_of_position=as_of_position)
    run = ledger.get_run(decision.run_id, as_of_position=as_of_position)
    committed = [verdict for verdict in run.verdicts if verdict.get("proof")]
    if not committed:
        raise ProofNotFound(
            f"run {decision.run_id!r} has no committed attempt to prove decision {decision_id}"
        )
    run_proof = committed[-1]["proof"]
    seal = run_proof["seal_position"]
    records = read_models.audit_records_for(decision.run_id, seal)
    leaf_hashes = [record.leaf_hash for record in records]
    index_of = {record.position: index for index, record in enumerate(records)}
    leaves = []
    for stored in ledger.recorder.select_events(decision_id):
        position = ledger.index.event_position(decision_id, stored.originator_version)
        if position is None or position.position > seal:
            break
        event_bytes = canonical_bytes(
            position.position, stored.topic, stored.originator_id, stored.originator_version, stored.state
        )
        leaves.append((index_of[position.position], event_bytes))
    return build_inclusion_proof(run_proof, str(decision_id), leaf_hashes, leaves)
