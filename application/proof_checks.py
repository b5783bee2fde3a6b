"""Offline verification of run proofs and inclusion proofs: nothing but the documents
and a pinned public key. Every failure raises VerificationFailed with a reason that
names what is wrong. This is the part that must never be wrong."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from application.audit_chain import (
    leaf_hash,
    root_from_inclusion_path,
)
from application.proofs import (
    INCLUSION_PROOF_FORMAT,
    RUN_PROOF_FORMAT,
    head_leaf_hash,
    unsigned_bytes,
)
from domain import errors
from domain.canonical import canonical_json

Progress = Callable[[int], None]


class VerificationFailed(errors.VerificationFailed):
    """A proof or the log does not hold. The message says why, in one line."""


def require(condition: object, reason: str) -> None:
    if not condition:
        raise VerificationFailed(reason)


def required_object(value: object, reason: str) -> dict[str, Any]:
    """A JSON object, or VerificationFailed with the reason."""
    if not isinstance(value, dict):
        raise VerificationFailed(reason)
    return value


def required_items(value: object, reason: str) -> list[Any]:
    """A non-empty JSON array, or VerificationFailed with the reason."""
    if not isinstance(value, list) or not value:
        raise VerificationFailed(reason)
    return value


# --- Offline: run proofs ------------------------------------------------------------------


def verify_run_proof(proof: dict[str, Any], public_key: str | None = None) -> None:
    """Check a run proof's signature and internal consistency. With `public_key`, the
    proof must be signed by that key; without it, by the key it names."""
    require(isinstance(proof, dict), "the run proof is not a JSON object")
    require(proof.get("format") == RUN_PROOF_FORMAT, f"unknown run proof format {proof.get('format')!r}")
    signature = required_object(proof.get("signature"), "the run proof carries no signature")
    require(signature.get("algorithm") == "ed25519", "the signature algorithm is not ed25519")
    embedded_key = str(signature.get("public_key", ""))
    if public_key is not None and public_key.strip().lower() != embedded_key.lower():
        raise VerificationFailed(
            f"wrong key: the proof was signed by public key {embedded_key[:16]}..., "
            f"not by the given {public_key.strip()[:16]}..."
        )
    try:
        key = Ed25519PublicKey.from_public_bytes(bytes.fromhex(public_key or embedded_key))
        key.verify(bytes.fromhex(str(signature.get("value", ""))), unsigned_bytes(proof))
    except (ValueError, InvalidSignature):
        raise VerificationFailed("the signature does not verify over the proof's contents") from None
    require(proof.get("verdict") == "committed", "the proof's verdict is not 'committed'")
    reconciliation = proof.get("reconciliation", {})
    for check in ("missing", "unexpected", "pending", "failed"):
        require(
            reconciliation.get(check) == 0, f"a committed proof shows {check} = {reconciliation.get(check)}"
        )
    merkle = proof.get("merkle", {})
    require(
        merkle.get("tree_size") == proof.get("audit_records"),
        f"the Merkle tree has {merkle.get('tree_size')} leaves but the proof counts "
        f"{proof.get('audit_records')} audit records",
    )
    require(
        isinstance(proof.get("seal_position"), int) and proof["seal_position"] > 0,
        "the seal position is invalid",
    )
    heads = proof.get("decision_heads", {})
    require(
        isinstance(heads, dict) and heads.get("tree_size") == proof.get("decisions", {}).get("count"),
        f"the decision heads tree has {heads.get('tree_size') if isinstance(heads, dict) else None} leaves but the "
        f"proof counts {proof.get('decisions', {}).get('count')} decisions",
    )


# --- Offline: inclusion proofs ---------------------------------------------------------------


def verify_inclusion_proof(inclusion: dict[str, Any], public_key: str) -> None:
    """Check that a decision's events are leaves of a signed run proof's Merkle tree."""
    require(isinstance(inclusion, dict), "the inclusion proof is not a JSON object")
    require(
        inclusion.get("format") == INCLUSION_PROOF_FORMAT,
        f"unknown inclusion proof format {inclusion.get('format')!r}",
    )
    run_proof = inclusion.get("run_proof")
    verify_run_proof(run_proof, public_key)  # type: ignore[arg-type]
    tree_size = run_proof["merkle"]["tree_size"]  # type: ignore[index]
    root = run_proof["merkle"]["root"]  # type: ignore[index]
    require(
        inclusion.get("tree_size") == tree_size,
        f"truncated or padded tree: the inclusion proof's tree size {inclusion.get('tree_size')} "
        f"is not the run proof's {tree_size}",
    )
    leaves = required_items(inclusion.get("leaves"), "the inclusion proof has no leaves")
    decision_id = inclusion.get("decision_id")
    seen_indexes: set[int] = set()
    for number, leaf in enumerate(leaves):
        event = leaf.get("event")
        index = leaf.get("leaf_index")
        path = leaf.get("audit_path")
        require(isinstance(event, dict), f"leaf {number} carries no event")
        require(
            isinstance(index, int) and 0 <= index < tree_size, f"leaf {number} has an index outside the tree"
        )
        require(index not in seen_indexes, f"leaf {number} repeats index {index}")
        seen_indexes.add(index)
        require(
            isinstance(path, list) and all(isinstance(node, str) for node in path),
            f"leaf {number} has no audit path",
        )
        require(
            event.get("aggregate_id") == decision_id,
            f"wrong leaf: leaf {number} is an event of another aggregate",
        )
        require(
            isinstance(event.get("position"), int) and event["position"] <= run_proof["seal_position"],  # type: ignore[index]
            f"leaf {number} lies after the run's seal",
        )
        try:
            recomputed = root_from_inclusion_path(leaf_hash(canonical_json(event)), index, tree_size, path)
        except ValueError as error:
            raise VerificationFailed(f"wrong audit path for leaf {number}: {error}") from None
        require(
            recomputed == root,
            f"leaf {number} (position {event.get('position')}) and its audit path do not lead to the "
            "run proof's Merkle root: wrong leaf, wrong path or swapped siblings",
        )
    _verify_head(inclusion, run_proof)  # type: ignore[arg-type]
    head_version = inclusion["head"]["version"]
    versions = sorted(leaf["event"].get("version") for leaf in leaves)
    require(
        versions == list(range(1, len(versions) + 1)),
        "the decision's events are incomplete: versions have gaps",
    )
    require(
        len(versions) == head_version,
        f"the decision's events stop at version {len(versions)} but its signed head is version "
        f"{head_version}: its latest events are left out",
    )


def _verify_head(inclusion: dict[str, Any], run_proof: dict[str, Any]) -> None:
    """The decision's last version at the seal is a leaf of the signed heads tree."""
    head = required_object(inclusion.get("head"), "the inclusion proof does not show the decision's head")
    version, index, path = head.get("version"), head.get("leaf_index"), head.get("audit_path")
    heads = run_proof["decision_heads"]
    require(
        isinstance(version, int) and version >= 1 and isinstance(index, int) and isinstance(path, list),
        "the decision's head is malformed",
    )
    assert isinstance(version, int) and isinstance(index, int) and isinstance(path, list)  # checked above
    try:
        recomputed = root_from_inclusion_path(
            head_leaf_hash(str(inclusion.get("decision_id")), version), index, heads["tree_size"], path
        )
    except ValueError as error:
        raise VerificationFailed(f"wrong audit path for the decision's head: {error}") from None
    require(
        recomputed == heads["root"],
        f"the decision's head (version {version}) does not lead to the run proof's decision heads root",
    )
