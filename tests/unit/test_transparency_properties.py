"""Properties of the Merkle tree: every proof verifies, any flipped bit fails, reads stay O(log n)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from application.transparency.merkle import (
    MemoryTree,
    NodeId,
    TreeAppender,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    root,
)
from application.transparency.verify import verify_consistency, verify_inclusion
from domain.errors import ProofInvalid, TreeSizeInvalid

MAX_SIZE = 300
TREE = MemoryTree()
for number in range(MAX_SIZE):
    TREE.append(leaf_hash(number.to_bytes(4, "big")))


def flip(value: bytes, bit: int) -> bytes:
    bit %= len(value) * 8
    flipped = bytearray(value)
    flipped[bit // 8] ^= 1 << (bit % 8)
    return bytes(flipped)


@st.composite
def index_and_size(draw: st.DrawFn) -> tuple[int, int]:
    size = draw(st.integers(1, MAX_SIZE))
    return draw(st.integers(0, size - 1)), size


@st.composite
def two_sizes(draw: st.DrawFn) -> tuple[int, int]:
    new_size = draw(st.integers(1, MAX_SIZE))
    return draw(st.integers(1, new_size)), new_size


@given(index_and_size())
def test_every_inclusion_proof_verifies(case: tuple[int, int]) -> None:
    index, size = case
    verify_inclusion(
        TREE.nodes[NodeId(0, index)], index, size, inclusion_proof(TREE, index, size), root(TREE, size)
    )


@given(index_and_size(), st.integers(0, 10**6), st.sampled_from(["leaf", "root", "proof"]))
def test_a_flipped_bit_fails_inclusion(case: tuple[int, int], bit: int, where: str) -> None:
    index, size = case
    leaf, proof, tree_root = (
        TREE.nodes[NodeId(0, index)],
        inclusion_proof(TREE, index, size),
        root(TREE, size),
    )
    if where == "leaf":
        leaf = flip(leaf, bit)
    elif where == "root":
        tree_root = flip(tree_root, bit)
    elif proof:
        position = bit % len(proof)
        proof[position] = flip(proof[position], bit // len(proof))
    else:
        leaf = flip(leaf, bit)  # a one-leaf tree has an empty proof: flip the leaf instead
    with pytest.raises(ProofInvalid):
        verify_inclusion(leaf, index, size, proof, tree_root)


@given(two_sizes())
def test_every_consistency_proof_verifies(case: tuple[int, int]) -> None:
    old_size, new_size = case
    proof = consistency_proof(TREE, old_size, new_size)
    verify_consistency(old_size, new_size, root(TREE, old_size), root(TREE, new_size), proof)


@given(two_sizes(), st.integers(0, 10**6), st.sampled_from(["old", "new", "proof"]))
def test_a_flipped_bit_fails_consistency(case: tuple[int, int], bit: int, where: str) -> None:
    old_size, new_size = case
    proof = consistency_proof(TREE, old_size, new_size)
    old_root, new_root = root(TREE, old_size), root(TREE, new_size)
    if where == "old" or (where == "proof" and not proof):
        old_root = flip(old_root, bit)
    elif where == "new":
        new_root = flip(new_root, bit)
    else:
        position = bit % len(proof)
        proof[position] = flip(proof[position], bit // len(proof))
    with pytest.raises(ProofInvalid):
        verify_consistency(old_size, new_size, old_root, new_root, proof)


@given(two_sizes())
def test_a_proof_for_other_sizes_fails(case: tuple[int, int]) -> None:
    old_size, new_size = case
    proof = consistency_proof(TREE, old_size, new_size)
    if new_size < MAX_SIZE:
        with pytest.raises(ProofInvalid):
            verify_consistency(old_size, new_size + 1, root(TREE, old_size), root(TREE, new_size + 1), proof)


def test_requests_no_proof_can_answer_are_refused() -> None:
    for index, size in [(0, 0), (5, 5), (-1, 3)]:
        with pytest.raises(TreeSizeInvalid):
            inclusion_proof(TREE, index, size)
    for old_size, new_size in [(0, 5), (6, 5), (-1, 2)]:
        with pytest.raises(TreeSizeInvalid):
            consistency_proof(TREE, old_size, new_size)


class CountingReader:
    """Counts the stored nodes a computation reads."""

    def __init__(self, tree: MemoryTree) -> None:
        self.tree, self.reads, self.calls = tree, 0, 0

    def read_nodes(self, nodes: Sequence[NodeId]) -> Mapping[NodeId, bytes]:
        self.reads += len(nodes)
        self.calls += 1
        return self.tree.read_nodes(nodes)


@settings(max_examples=300)
@given(index_and_size(), two_sizes())
def test_roots_and_proofs_read_log_n_nodes_in_one_call(
    inclusion: tuple[int, int], sizes: tuple[int, int]
) -> None:
    index, size = inclusion
    old_size, new_size = sizes
    for compute, tree_size in [
        (lambda reader: root(reader, size), size),
        (lambda reader: inclusion_proof(reader, index, size), size),
        (lambda reader: consistency_proof(reader, old_size, new_size), new_size),
    ]:
        reader = CountingReader(TREE)
        compute(reader)
        assert reader.calls <= 1
        assert reader.reads <= 2 * tree_size.bit_length() + 2


def test_an_appender_resumed_from_stored_nodes_continues_the_same_tree() -> None:
    for size in range(MAX_SIZE):
        resumed = TreeAppender.resume(TREE, size)
        assert resumed.root() == root(TREE, size)
        if size + 1 < MAX_SIZE:
            completed = dict(resumed.append(TREE.nodes[NodeId(0, size)]))
            assert all(TREE.nodes[node] == value for node, value in completed.items())
            assert resumed.root() == root(TREE, size + 1)
