"""Checking RFC 9162 inclusion and consistency proofs (sections 2.1.3.2 and 2.1.4.2).

Both raise ProofInvalid, saying why, and return nothing: there is no "false" to ignore.
"""

from __future__ import annotations

from collections.abc import Sequence

from application.transparency.merkle import HASH_SIZE, node_hash
from domain.errors import ProofInvalid


def _check_hash(name: str, value: bytes) -> None:
    if len(value) != HASH_SIZE:
        raise ProofInvalid(f"{name} is {len(value)} bytes, not a {HASH_SIZE}-byte SHA-256 hash")


def root_from_inclusion_proof(leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes]) -> bytes:
    """The root the audit path leads to from the leaf at `index` of a tree of `size`."""
    if not 0 <= index < size:
        raise ProofInvalid(f"leaf index {index} is not in a tree of size {size}")
    _check_hash("the leaf hash", leaf_hash)
    for position, sibling in enumerate(proof):
        _check_hash(f"inclusion proof hash {position}", sibling)
    fn, sn, result = index, size - 1, leaf_hash
    for sibling in proof:
        if sn == 0:
            raise ProofInvalid(f"the inclusion proof has more hashes than a tree of size {size} needs")
        if fn & 1 or fn == sn:
            result = node_hash(sibling, result)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            result = node_hash(result, sibling)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofInvalid(f"the inclusion proof has fewer hashes than a tree of size {size} needs")
    return result


def verify_inclusion(leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes) -> None:
    _check_hash("the root", root)
    if root_from_inclusion_proof(leaf_hash, index, size, proof) != root:
        raise ProofInvalid(f"the inclusion proof of leaf {index} does not lead to the root of size {size}")


def verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> None:
    """The tree of new_size extends the tree of old_size (both roots as given)."""
    for position, element in enumerate(proof):
        _check_hash(f"consistency proof hash {position}", element)
    if old_size > new_size:
        raise ProofInvalid(f"a tree of size {new_size} cannot extend one of size {old_size}")
    if old_size == 0:
        # Every tree extends the empty one; a proof from it proves nothing, so none is taken.
        raise ProofInvalid("a consistency proof from the empty tree is meaningless")
    if old_size == new_size:
        if proof:
            raise ProofInvalid("trees of equal size need an empty consistency proof")
        if old_root != new_root:
            raise ProofInvalid(f"two different roots for the tree of size {old_size}")
        return
    if not proof:
        raise ProofInvalid("the consistency proof is empty")
    _check_hash("the older root", old_root)
    _check_hash("the newer root", new_root)
    path = list(proof)
    if old_size & (old_size - 1) == 0:
        path.insert(0, old_root)  # the older tree is a perfect subtree of the newer
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    old_result = new_result = path[0]
    for element in path[1:]:
        if sn == 0:
            raise ProofInvalid("the consistency proof has more hashes than the trees need")
        if fn & 1 or fn == sn:
            old_result = node_hash(element, old_result)
            new_result = node_hash(element, new_result)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            new_result = node_hash(new_result, element)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofInvalid("the consistency proof has fewer hashes than the trees need")
    if old_result != old_root:
        raise ProofInvalid(f"the consistency proof does not lead to the root of size {old_size}")
    if new_result != new_root:
        raise ProofInvalid(f"the consistency proof does not lead to the root of size {new_size}")
