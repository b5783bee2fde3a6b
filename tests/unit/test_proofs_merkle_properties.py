"""The Merkle trees behind run proofs, checked against RFC 6962 written out here from
the RFC's own recursive definitions, on random trees of 1 to 300 leaves.

- MTH({})      = SHA-256()
- MTH({d0})    = SHA-256(0x00 || d0)
- MTH(D[n])    = SHA-256(0x01 || MTH(D[0:k]) || MTH(D[k:n])), k the largest power of
                 two smaller than n
- PATH(m, D[n]) = PATH(m, D[0:k]) : MTH(D[k:n])    if m < k
                = PATH(m-k, D[k:n]) : MTH(D[0:k])  otherwise

The ledger builds its trees bottom-up over leaf hashes; these tests say it builds the
same trees, that every audit path it hands out leads back to the root, and that a path
altered in any single bit leads nowhere.
"""

from __future__ import annotations

import hashlib
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from application.audit_chain import inclusion_path, leaf_hash, merkle_root, root_from_inclusion_path

merkle_settings = settings(max_examples=120, deadline=None, database=None)


# --- RFC 6962, section 2.1, as written --------------------------------------------------


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def largest_power_of_two_below(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def rfc_root(data: list[bytes]) -> str:
    if not data:
        return sha256_hex(b"")
    if len(data) == 1:
        return sha256_hex(b"\x00" + data[0])
    k = largest_power_of_two_below(len(data))
    return sha256_hex(b"\x01" + bytes.fromhex(rfc_root(data[:k])) + bytes.fromhex(rfc_root(data[k:])))


def rfc_path(m: int, data: list[bytes]) -> list[str]:
    if len(data) == 1:
        return []
    k = largest_power_of_two_below(len(data))
    if m < k:
        return [*rfc_path(m, data[:k]), rfc_root(data[k:])]
    return [*rfc_path(m - k, data[k:]), rfc_root(data[:k])]


# --- Random trees ------------------------------------------------------------------------


@st.composite
def trees(draw: st.DrawFn, max_size: int = 300) -> list[bytes]:
    """The leaves (event bytes) of a tree of 1..max_size leaves, of random lengths."""
    size = draw(st.integers(min_value=1, max_value=max_size))
    seed = draw(st.integers(min_value=0, max_value=2**32))
    generator = random.Random(seed)
    return [generator.randbytes(generator.randrange(0, 48)) for _ in range(size)]


def flip_bit(hex_digest: str, bit: int) -> str:
    value = bytearray(bytes.fromhex(hex_digest))
    value[bit // 8] ^= 1 << (bit % 8)
    return value.hex()


def recomputed_root(leaf: str, index: int, tree_size: int, path: list[str]) -> str | None:
    """The root the audit path leads to, or None when it cannot belong to such a tree."""
    try:
        return root_from_inclusion_path(leaf, index, tree_size, path)
    except ValueError:
        return None


def fresh_leaves(count: int, seed: int) -> list[bytes]:
    generator = random.Random(seed)
    return [generator.randbytes(32) for _ in range(count)]


# --- The properties ------------------------------------------------------------------------


def test_the_empty_tree_and_a_single_leaf_follow_the_rfc() -> None:
    # No leaves: the hash of nothing. One leaf: its leaf hash, with no path at all.
    assert merkle_root([]) == rfc_root([]) == sha256_hex(b"")
    assert leaf_hash(b"event") == sha256_hex(b"\x00event")
    assert merkle_root([leaf_hash(b"event")]) == rfc_root([b"event"])
    assert inclusion_path([leaf_hash(b"event")], 0) == []


@merkle_settings
@given(trees())
def test_the_root_is_the_rfc_6962_tree_hash(data: list[bytes]) -> None:
    # Bottom-up over leaf hashes, carrying a lone last node up, gives the RFC's root.
    assert merkle_root([leaf_hash(item) for item in data]) == rfc_root(data)


@settings(max_examples=40, deadline=None, database=None)
@given(trees())
def test_every_audit_path_is_the_rfc_path_and_leads_back_to_the_root(data: list[bytes]) -> None:
    leaves = [leaf_hash(item) for item in data]
    root = merkle_root(leaves)

    # For every leaf of the tree: the path the ledger hands out is the RFC's ...
    for index, leaf in enumerate(leaves):
        path = inclusion_path(leaves, index)
        assert path == rfc_path(index, data), index
        # ... and a verifier that knows only the leaf, its index and the size gets the root.
        assert root_from_inclusion_path(leaf, index, len(leaves), path) == root


@merkle_settings
@given(trees(), st.data())
def test_a_single_bit_changed_in_the_leaf_or_a_path_node_leads_elsewhere(
    data: list[bytes], choices: st.DataObject
) -> None:
    # A leaf of the tree, and its genuine audit path.
    leaves = [leaf_hash(item) for item in data]
    root = merkle_root(leaves)
    index = choices.draw(st.integers(0, len(leaves) - 1), label="index")
    path = inclusion_path(leaves, index)
    bit = choices.draw(st.integers(0, 255), label="bit")

    # One bit of the leaf hash flipped: the path no longer reaches the root.
    assert recomputed_root(flip_bit(leaves[index], bit), index, len(leaves), path) != root

    # One bit of any node of the path flipped: neither does it.
    if path:
        node = choices.draw(st.integers(0, len(path) - 1), label="node")
        altered = [*path[:node], flip_bit(path[node], bit), *path[node + 1 :]]
        assert recomputed_root(leaves[index], index, len(leaves), altered) != root


@merkle_settings
@given(trees(), st.data())
def test_a_single_bit_changed_in_the_index_leads_elsewhere(data: list[bytes], choices: st.DataObject) -> None:
    leaves = [leaf_hash(item) for item in data]
    root = merkle_root(leaves)
    index = choices.draw(st.integers(0, len(leaves) - 1), label="index")
    path = inclusion_path(leaves, index)

    # The same leaf and path, claimed at an index one bit away (possibly outside the tree).
    bit = choices.draw(st.integers(0, 9), label="bit")
    assert recomputed_root(leaves[index], index ^ (1 << bit), len(leaves), path) != root


@merkle_settings
@given(trees(), st.data())
def test_a_single_bit_changed_in_the_tree_size_never_verifies_in_a_tree_of_that_size(
    data: list[bytes], choices: st.DataObject
) -> None:
    leaves = [leaf_hash(item) for item in data]
    index = choices.draw(st.integers(0, len(leaves) - 1), label="index")
    path = inclusion_path(leaves, index)
    bit = choices.draw(st.integers(0, 9), label="bit")
    claimed_size = len(leaves) ^ (1 << bit)

    # The tree of the claimed size: these leaves cut short, or followed by fresh ones.
    seed = choices.draw(st.integers(0, 2**32), label="seed")
    claimed_tree = (data + fresh_leaves(max(0, claimed_size - len(data)), seed))[:claimed_size]
    claimed_root = rfc_root(claimed_tree)

    # The genuine path, presented as one in a tree of the claimed size, does not lead to
    # that tree's root (or is refused outright).
    assert recomputed_root(leaves[index], index, claimed_size, path) != claimed_root


def test_the_tree_size_must_come_from_the_signed_proof_not_from_the_path() -> None:
    # RFC 6962 paths do not commit to the tree size on their own: in trees of 6 and of
    # 7 leaves, the first leaf's path has the same shape, so the 6-leaf path "verifies"
    # as a path in a 7-leaf tree, reaching the 6-leaf root. That is why a verifier must
    # take the size from the signed run proof, as verify_inclusion_proof does.
    data = fresh_leaves(6, seed=6)
    leaves = [leaf_hash(item) for item in data]
    path = inclusion_path(leaves, 0)
    assert root_from_inclusion_path(leaves[0], 0, 7, path) == merkle_root(leaves)
    assert merkle_root(leaves) != rfc_root(data + fresh_leaves(1, seed=7))
