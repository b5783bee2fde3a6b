"""Verification: the part that must never be wrong.

Offline checks need nothing but the documents and a public key. Checks against the
store recompute everything from the stored events themselves, never from the views.
Every failure raises VerificationFailed with a reason that names what is wrong.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from application.audit_chain import (
    GENESIS_CHAIN_HASH,
    canonical_bytes,
    leaf_hash,
    merkle_root,
    next_chain_hash,
    root_from_inclusion_path,
)
from application.proofs import (
    INCLUSION_PROOF_FORMAT,
    RUN_PROOF_FORMAT,
    head_leaf_hash,
    heads_root,
    unsigned_bytes,
)
from domain.basis import EMPTY_BASIS_DIGEST, extend_basis_digest
from domain.canonical import canonical_json

Progress = Callable[[int], None]


class VerificationFailed(Exception):
    """A proof or the log does not hold. The message says why, in one line."""


def _require(condition: bool, reason: str) -> None:
    if not condition:
        raise VerificationFailed(reason)


# --- Offline: run proofs ------------------------------------------------------------------


def verify_run_proof(proof: dict[str, Any], public_key: str | None = None) -> None:
    """Check a run proof's signature and internal consistency. With `public_key`, the
    proof must be signed by that key; without it, by the key it names."""
    _require(isinstance(proof, dict), "the run proof is not a JSON object")
    _require(proof.get("format") == RUN_PROOF_FORMAT, f"unknown run proof format {proof.get('format')!r}")
    signature = proof.get("signature")
    _require(isinstance(signature, dict), "the run proof carries no signature")
    _require(signature.get("algorithm") == "ed25519", "the signature algorithm is not ed25519")
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
    _require(proof.get("verdict") == "committed", "the proof's verdict is not 'committed'")
    reconciliation = proof.get("reconciliation", {})
    for check in ("missing", "unexpected", "pending", "failed"):
        _require(
            reconciliation.get(check) == 0, f"a committed proof shows {check} = {reconciliation.get(check)}"
        )
    merkle = proof.get("merkle", {})
    _require(
        merkle.get("tree_size") == proof.get("audit_records"),
        f"the Merkle tree has {merkle.get('tree_size')} leaves but the proof counts "
        f"{proof.get('audit_records')} audit records",
    )
    _require(
        isinstance(proof.get("seal_position"), int) and proof["seal_position"] > 0,
        "the seal position is invalid",
    )
    heads = proof.get("decision_heads", {})
    _require(
        isinstance(heads, dict) and heads.get("tree_size") == proof.get("decisions", {}).get("count"),
        f"the decision heads tree has {heads.get('tree_size') if isinstance(heads, dict) else None} leaves but the "
        f"proof counts {proof.get('decisions', {}).get('count')} decisions",
    )


# --- Offline: inclusion proofs ---------------------------------------------------------------


def verify_inclusion_proof(inclusion: dict[str, Any], public_key: str) -> None:
    """Check that a decision's events are leaves of a signed run proof's Merkle tree."""
    _require(isinstance(inclusion, dict), "the inclusion proof is not a JSON object")
    _require(
        inclusion.get("format") == INCLUSION_PROOF_FORMAT,
        f"unknown inclusion proof format {inclusion.get('format')!r}",
    )
    run_proof = inclusion.get("run_proof")
    verify_run_proof(run_proof, public_key)  # type: ignore[arg-type]
    tree_size = run_proof["merkle"]["tree_size"]  # type: ignore[index]
    root = run_proof["merkle"]["root"]  # type: ignore[index]
    _require(
        inclusion.get("tree_size") == tree_size,
        f"truncated or padded tree: the inclusion proof's tree size {inclusion.get('tree_size')} "
        f"is not the run proof's {tree_size}",
    )
    leaves = inclusion.get("leaves")
    _require(isinstance(leaves, list) and leaves, "the inclusion proof has no leaves")
    decision_id = inclusion.get("decision_id")
    seen_indexes: set[int] = set()
    for number, leaf in enumerate(leaves):
        event = leaf.get("event")
        index = leaf.get("leaf_index")
        path = leaf.get("audit_path")
        _require(isinstance(event, dict), f"leaf {number} carries no event")
        _require(
            isinstance(index, int) and 0 <= index < tree_size, f"leaf {number} has an index outside the tree"
        )
        _require(index not in seen_indexes, f"leaf {number} repeats index {index}")
        seen_indexes.add(index)
        _require(
            isinstance(path, list) and all(isinstance(node, str) for node in path),
            f"leaf {number} has no audit path",
        )
        _require(
            event.get("aggregate_id") == decision_id,
            f"wrong leaf: leaf {number} is an event of another aggregate",
        )
        _require(
            isinstance(event.get("position"), int) and event["position"] <= run_proof["seal_position"],  # type: ignore[index]
            f"leaf {number} lies after the run's seal",
        )
        try:
            recomputed = root_from_inclusion_path(leaf_hash(canonical_json(event)), index, tree_size, path)
        except ValueError as error:
            raise VerificationFailed(f"wrong audit path for leaf {number}: {error}") from None
        _require(
            recomputed == root,
            f"leaf {number} (position {event.get('position')}) and its audit path do not lead to the "
            "run proof's Merkle root: wrong leaf, wrong path or swapped siblings",
        )
    _verify_head(inclusion, run_proof)  # type: ignore[arg-type]
    head_version = inclusion["head"]["version"]
    versions = sorted(leaf["event"].get("version") for leaf in leaves)
    _require(
        versions == list(range(1, len(versions) + 1)),
        "the decision's events are incomplete: versions have gaps",
    )
    _require(
        len(versions) == head_version,
        f"the decision's events stop at version {len(versions)} but its signed head is version "
        f"{head_version}: its latest events are left out",
    )


def _verify_head(inclusion: dict[str, Any], run_proof: dict[str, Any]) -> None:
    """The decision's last version at the seal is a leaf of the signed heads tree."""
    head = inclusion.get("head")
    _require(isinstance(head, dict), "the inclusion proof does not show the decision's head")
    version, index, path = head.get("version"), head.get("leaf_index"), head.get("audit_path")
    heads = run_proof["decision_heads"]
    _require(
        isinstance(version, int) and version >= 1 and isinstance(index, int) and isinstance(path, list),
        "the decision's head is malformed",
    )
    try:
        recomputed = root_from_inclusion_path(
            head_leaf_hash(str(inclusion.get("decision_id")), version), index, heads["tree_size"], path
        )
    except ValueError as error:
        raise VerificationFailed(f"wrong audit path for the decision's head: {error}") from None
    _require(
        recomputed == heads["root"],
        f"the decision's head (version {version}) does not lead to the run proof's decision heads root",
    )


# --- Against the store --------------------------------------------------------------------


@dataclass
class ChainReport:
    checked: int = 0
    last_position: int = 0
    last_chain_hash: str = GENESIS_CHAIN_HASH
    proofs_checked: int = 0
    problems: list[str] = field(default_factory=list)


@dataclass
class RunFold:
    """A run's events folded from the store, independent of the views."""

    leaves: list[str] = field(default_factory=list)
    admitted: int = 0
    basis_digest: str = EMPTY_BASIS_DIGEST
    outcomes: dict[str, str] = field(default_factory=dict)
    action_status: dict[str, str] = field(default_factory=dict)
    admitted_inputs: set[str] = field(default_factory=set)
    decided_inputs: set[str] = field(default_factory=set)
    decision_heads: dict[str, int] = field(default_factory=dict)

    def absorb(self, topic: str, aggregate_id: str, version: int, state: dict[str, Any]) -> None:
        kind = topic.rsplit(":", 1)[-1]
        if kind == "Run.BasisAdmitted":
            self.admitted += len(state["input_ids"])
            self.basis_digest = extend_basis_digest(self.basis_digest, state["input_ids"])
            self.admitted_inputs.update(state["input_ids"])
        elif kind in ("Decision.Recorded", "Decision.Corrected"):
            if kind == "Decision.Recorded":
                self.decided_inputs.add(state["input_id"])
            # The outcome in force is the one recorded last (corrections never take
            # effect in the future).
            self.outcomes[aggregate_id] = state["outcome"]
            self.decision_heads[aggregate_id] = version
        elif kind.startswith("Action."):
            self.action_status[aggregate_id] = {
                "Action.Requested": "requested",
                "Action.Committed": "committed",
                "Action.Failed": "failed",
                "Action.Waived": "waived",
            }[kind]

    def by_outcome(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for outcome in self.outcomes.values():
            counts[outcome] = counts.get(outcome, 0) + 1
        return counts

    def actions_by_status(self) -> dict[str, int]:
        counts = dict.fromkeys(("requested", "committed", "failed", "waived"), 0)
        for status in self.action_status.values():
            counts[status] += 1
        return counts


class StoreVerifier:
    """Recomputes the chain, and run proofs, from the stored events."""

    PAGE = 2000

    def __init__(
        self, recorder: Any, audit_records: Callable[[int, int | None], Iterator[dict[str, Any]]]
    ) -> None:
        self.recorder = recorder
        self.audit_records = audit_records

    def stored_events(self, after: int = 0, up_to: int | None = None) -> Iterator[Any]:
        position = after
        while True:
            page = self.recorder.select_notifications(
                start=position, limit=self.PAGE, stop=up_to, inclusive_of_start=False
            )
            if not page:
                return
            yield from page
            position = page[-1].id

    def committed_proofs(self) -> list[dict[str, Any]]:
        proofs = []
        position = 0
        while True:
            page = self.recorder.select_notifications(
                start=position, limit=self.PAGE, topics=["domain.run:Run.Committed"], inclusive_of_start=False
            )
            if not page:
                return proofs
            for notification in page:
                state = json.loads(notification.state)
                if state.get("proof"):
                    proofs.append(state["proof"])
            position = page[-1].id

    def verify_chain(
        self,
        *,
        from_position: int = 1,
        to_position: int | None = None,
        starting_hash: str = GENESIS_CHAIN_HASH,
        proofs: list[dict[str, Any]] | None = None,
        on_progress: Progress | None = None,
    ) -> ChainReport:
        """Recompute h_n over the stored events and compare it with the audit log, and
        with the chain hash and Merkle root of every run proof sealed in the range.
        Raises VerificationFailed naming the first position that differs."""
        report = ChainReport(last_chain_hash=starting_hash)
        proofs = proofs or []
        seals = {proof["seal_position"]: proof for proof in proofs}
        folds: dict[str, RunFold] = {proof["run_id"]: RunFold() for proof in proofs}
        recorded = self.audit_records(from_position - 1, to_position)
        concluded: set[str] = set()
        chain = starting_hash
        if from_position <= 1:
            # Positions start at 1: anything stored below is invisible to a walk from 0,
            # yet the application still loads it into its aggregate.
            stray = self.recorder.select_notifications(start=None, limit=1, stop=0)
            if stray:
                raise VerificationFailed(
                    f"position {stray[0].id}: a stored event lies before the first position (inserted after the fact?)"
                )
        for notification in self.stored_events(from_position - 1, to_position):
            try:
                state = json.loads(notification.state)
                if not isinstance(state, dict):
                    raise ValueError("its state is not a JSON object")
                event_bytes = canonical_bytes(
                    notification.id,
                    notification.topic,
                    notification.originator_id,
                    notification.originator_version,
                    notification.state,
                )
            except ValueError as error:  # JSONDecodeError and UnicodeDecodeError included
                raise VerificationFailed(
                    f"position {notification.id}: the stored event cannot be read ({error}): it was edited"
                ) from None
            chain = next_chain_hash(chain, event_bytes)
            audit = next(recorded, None)
            if audit is None:
                raise VerificationFailed(
                    f"position {notification.id}: a stored event has no audit record (inserted after the fact?)"
                )
            if audit["position"] != notification.id:
                first = min(audit["position"], notification.id)
                raise VerificationFailed(
                    f"position {first}: the stored events and the audit log disagree on which events exist "
                    f"(store has {notification.id}, audit log has {audit['position']}): an event was deleted, "
                    "inserted or moved"
                )
            if audit["chain_hash"] != chain:
                raise VerificationFailed(
                    f"position {notification.id}: the recomputed chain hash differs from the audit log "
                    "(the event was edited, or events were reordered)"
                )
            run_id = state.get("run_id")
            if run_id in concluded:
                raise VerificationFailed(
                    f"position {notification.id}: an event of run {run_id!r} was stored after its commit"
                )
            if run_id in folds:
                fold = folds[run_id]
                fold.leaves.append(leaf_hash(event_bytes))
                fold.absorb(
                    notification.topic,
                    str(notification.originator_id),
                    notification.originator_version,
                    state,
                )
                if notification.topic.endswith(":Run.Committed"):
                    concluded.add(run_id)
            if notification.id in seals:
                self._check_proof_at_seal(seals.pop(notification.id), chain, folds)
                report.proofs_checked += 1
            report.checked += 1
            report.last_position = notification.id
            report.last_chain_hash = chain
            if on_progress:
                on_progress(1)
        leftover = next(recorded, None)
        if leftover is not None:
            raise VerificationFailed(
                f"position {leftover['position']}: the audit log records an event the store no longer has (deleted?)"
            )
        for seal_position in seals:
            if to_position is None or seal_position <= to_position:
                raise VerificationFailed(
                    f"position {seal_position}: a run proof is sealed at a position the store does not have"
                )
        return report

    @staticmethod
    def _check_proof_at_seal(proof: dict[str, Any], chain: str, folds: dict[str, RunFold]) -> None:
        where = f"run {proof['run_id']!r} attempt {proof['attempt']}"
        if proof["chain_hash_at_seal"] != chain:
            raise VerificationFailed(
                f"position {proof['seal_position']}: the chain hash at the seal of {where} differs from its proof"
            )
        fold = folds[proof["run_id"]]
        _require(
            merkle_root(fold.leaves) == proof["merkle"]["root"]
            and len(fold.leaves) == proof["merkle"]["tree_size"],
            f"{where}: the Merkle root over its stored events differs from its proof",
        )
        _require(
            (fold.admitted, fold.basis_digest) == (proof["basis"]["count"], proof["basis"]["digest"]),
            f"{where}: the basis recomputed from the store differs from its proof",
        )
        _require(
            fold.by_outcome() == proof["decisions"]["by_outcome"],
            f"{where}: the decision outcomes recomputed from the store differ from its proof",
        )
        _require(
            len(fold.outcomes) == proof["decisions"]["count"],
            f"{where}: the decision count recomputed from the store differs from its proof",
        )
        _require(
            heads_root(fold.decision_heads) == proof.get("decision_heads", {}).get("root"),
            f"{where}: the decision heads recomputed from the store differ from its proof",
        )
        actions = fold.actions_by_status()
        _require(
            actions["committed"] == proof["actions"].get("committed")
            and actions["waived"] == proof["actions"].get("waived"),
            f"{where}: the actions recomputed from the store differ from its proof",
        )
        recomputed = {
            "missing": len(fold.admitted_inputs - fold.decided_inputs),
            "unexpected": len(fold.decided_inputs - fold.admitted_inputs),
            "pending": actions["requested"],
            "failed": actions["failed"],
        }
        _require(
            recomputed == proof["reconciliation"],
            f"{where}: the reconciliation recomputed from the store ({recomputed}) differs from its proof",
        )
