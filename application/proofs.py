"""Run proofs and decision inclusion proofs: built at commit, checked anywhere.

A run proof is canonical JSON. Its signature is Ed25519 over the canonical bytes of
the proof without its `signature` member; its digest is SHA-256 over the canonical
bytes of the whole proof, signature included, and that digest is recorded in the
run's Committed event.

It commits to two RFC 6962 Merkle trees:
- `merkle`: the run's events up to the seal, in position order (leaf: canonical event bytes);
- `decision_heads`: one leaf per decision, sorted by decision ID, whose bytes are the
  canonical JSON of {"decision_id", "version"} with the decision's last version at the
  seal. An inclusion proof shows a decision's head, so it cannot leave out its latest
  correction.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from application.audit_chain import inclusion_path, leaf_hash, merkle_root
from domain.canonical import canonical_json
from domain.errors import ProofNotFound
from domain.run import Reconciliation, Run

RUN_PROOF_FORMAT = "decision-ledger/run-proof/v1"
INCLUSION_PROOF_FORMAT = "decision-ledger/inclusion-proof/v1"


class SigningKey(Protocol):
    algorithm: str
    public_key: str
    key_id: str

    def sign(self, message: bytes) -> str: ...


@dataclass(frozen=True)
class ProofMaterial:
    """What a run's Merkle trees are built from, read from the audit log."""

    positions: list[int]
    leaf_hashes: list[str]
    decision_heads: dict[str, int]

    def head_leaves(self) -> list[tuple[str, str]]:
        """(decision ID, leaf hash) of each decision's head, sorted by decision ID."""
        return [
            (decision_id, head_leaf_hash(decision_id, version))
            for decision_id, version in sorted(self.decision_heads.items())
        ]


def material_from_records(records: Iterable[Mapping[str, Any]]) -> ProofMaterial:
    """The material of a run's audit records (position, leaf_hash, aggregate_id,
    aggregate_version, event_type), in position order."""
    positions, leaf_hashes, heads = [], [], dict[str, int]()
    for record in records:
        positions.append(record["position"])
        leaf_hashes.append(record["leaf_hash"])
        if record["event_type"].startswith("Decision."):
            decision_id = record["aggregate_id"]
            heads[decision_id] = max(heads.get(decision_id, 0), record["aggregate_version"])
    return ProofMaterial(positions, leaf_hashes, heads)


def head_leaf_hash(decision_id: str, version: int) -> str:
    return leaf_hash(canonical_json({"decision_id": decision_id, "version": version}))


def heads_root(decision_heads: Mapping[str, int]) -> str:
    return merkle_root(
        [head_leaf_hash(decision_id, version) for decision_id, version in sorted(decision_heads.items())]
    )


def unsigned_bytes(proof: dict[str, Any]) -> bytes:
    """The bytes a run proof's signature covers."""
    return canonical_json({key: value for key, value in proof.items() if key != "signature"})


def proof_digest(proof: dict[str, Any]) -> str:
    return hashlib.sha256(canonical_json(proof)).hexdigest()


def build_run_proof(
    run: Run,
    evidence: Reconciliation,
    material: ProofMaterial,
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
        "merkle": {"tree_size": len(material.leaf_hashes), "root": merkle_root(material.leaf_hashes)},
        "decision_heads": {
            "tree_size": len(material.decision_heads),
            "root": heads_root(material.decision_heads),
        },
        "generated_at": generated_at.isoformat(),
        "key_id": signer.key_id,
    }
    proof["signature"] = {
        "algorithm": signer.algorithm,
        "public_key": signer.public_key,
        "value": signer.sign(unsigned_bytes(proof)),
    }
    return proof


@dataclass(frozen=True)
class DecisionHead:
    """A decision's last version at the seal, as a leaf of the decision heads tree."""

    version: int
    leaf_index: int
    audit_path: list[str]


class RunTrees(Protocol):
    """A committed attempt's two trees, as an inclusion proof reads them."""

    tree_size: int

    def leaf_indexes(self, positions: Sequence[int]) -> list[int]:
        """The index in the records tree of the event at each position."""
        ...

    def audit_path(self, index: int) -> list[str]: ...

    def head(self, decision_id: str) -> DecisionHead:
        """Raises ProofNotFound if the decision has no head in the tree."""
        ...


class MaterialTrees:
    """Both trees recomputed from a run's whole material, as the close built them (the
    reference the stored trees of application/projections/run_proof_trees.py match)."""

    def __init__(self, material: ProofMaterial) -> None:
        self.material = material
        self.tree_size = len(material.leaf_hashes)

    def leaf_indexes(self, positions: Sequence[int]) -> list[int]:
        index_of = {position: index for index, position in enumerate(self.material.positions)}
        return [index_of[position] for position in positions]

    def audit_path(self, index: int) -> list[str]:
        return inclusion_path(self.material.leaf_hashes, index)

    def head(self, decision_id: str) -> DecisionHead:
        heads = self.material.head_leaves()
        for index, (head_id, _) in enumerate(heads):
            if head_id == decision_id:
                path = inclusion_path([hash_ for _, hash_ in heads], index)
                return DecisionHead(self.material.decision_heads[decision_id], index, path)
        raise ProofNotFound(f"decision {decision_id} is not among the run's committed decision heads")


def build_inclusion_proof(
    run_proof: dict[str, Any],
    decision_id: str,
    trees: RunTrees,
    leaves: Sequence[tuple[int, bytes]],
) -> dict[str, Any]:
    """`leaves` are (index in the run's tree, canonical event bytes) of the decision's events."""
    head = trees.head(decision_id)
    return {
        "format": INCLUSION_PROOF_FORMAT,
        "decision_id": decision_id,
        "tree_size": trees.tree_size,
        "leaves": [
            {
                "leaf_index": index,
                "event": json.loads(event_bytes),
                "audit_path": trees.audit_path(index),
            }
            for index, event_bytes in leaves
        ],
        "head": {"version": head.version, "leaf_index": head.leaf_index, "audit_path": head.audit_path},
        "run_proof": run_proof,
    }
