"""A committed attempt's trees are stored as blocks of leaves and the perfect subtrees of
a block or more (application/projections/run_proof_trees.py); an audit path read from
them must be exactly the one recomputing the whole tree gives (application/audit_chain.py,
the path proofs took before). Checked for every leaf of trees around the block sizes,
and, with hypothesis, of random trees up to a few hundred leaves.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from uuid import uuid4

from hypothesis import given, settings
from hypothesis import strategies as st

from application.audit_chain import inclusion_path, merkle_root
from application.projections.run_proof_trees import (
    BLOCK_SIZE,
    BlockedNodeReader,
    BlockedTree,
    audit_path,
    batch_parts,
    split_hashes,
)
from application.transparency.merkle import root
from domain.run import Run

#: Sizes where the blocks and the stored subtrees meet: one leaf, a block, a block and one, ...
EDGE_SIZES = (
    1,
    2,
    3,
    BLOCK_SIZE - 1,
    BLOCK_SIZE,
    BLOCK_SIZE + 1,
    2 * BLOCK_SIZE,
    2 * BLOCK_SIZE + 1,
    3 * BLOCK_SIZE + 5,
    4 * BLOCK_SIZE,
)


def leaves_of(size: int, seed: int = 0) -> list[str]:
    return [hashlib.sha256(f"{seed}-{number}".encode()).hexdigest() for number in range(size)]


def test_every_audit_path_from_the_blocks_is_the_recomputed_one() -> None:
    for size in EDGE_SIZES:
        leaves = leaves_of(size)
        reader = BlockedNodeReader.in_memory(BlockedTree.of(leaves))
        for index in range(size):
            assert audit_path(reader, index, size) == inclusion_path(leaves, index), (size, index)
        assert root(reader, size).hex() == merkle_root(leaves), size


@settings(max_examples=60, deadline=None, database=None)
@given(size=st.integers(min_value=1, max_value=400), data=st.data())
def test_a_random_tree_from_its_blocks_answers_like_the_whole_tree(size: int, data: st.DataObject) -> None:
    leaves = leaves_of(size, seed=size)
    tree = BlockedTree.of(leaves)
    # Stored: a row per block, and only the subtrees of a block or more.
    assert len(tree.blocks) == -(-size // BLOCK_SIZE)
    assert all(node.level >= 6 for node in tree.nodes)
    index = data.draw(st.integers(min_value=0, max_value=size - 1))
    assert audit_path(BlockedNodeReader.in_memory(tree), index, size) == inclusion_path(leaves, index)


def test_a_block_row_splits_back_into_its_leaf_hashes() -> None:
    leaves = leaves_of(BLOCK_SIZE)
    assert split_hashes("".join(leaves)) == leaves


def test_a_batch_is_cut_before_each_proved_commit_and_nowhere_else() -> None:
    # A proved commit starts a part of its own (its trees are hashed before that part's
    # transaction); a commit without a proof, and every other event, does not cut.
    def committed(proof: dict[str, str] | None) -> Run.Committed:
        return Run.Committed(
            originator_id=uuid4(),
            originator_version=3,
            timestamp=datetime.now(UTC),
            run_id="run",
            attempt=1,
            actor="closer",
            token="token",
            fingerprint="fingerprint",
            seal_position=2,
            summary={},
            basis_digest="0" * 64,
            proof=proof,
            proof_digest=None,
        )

    other, proved, unproved = object(), committed({"format": "x"}), committed(None)
    batch = [(other, 1), (other, 2), (proved, 3), (other, 4), (unproved, 5), (proved, 6)]
    assert [[tracking for _, tracking in part] for part in batch_parts(batch)] == [[1, 2], [3, 4, 5], [6]]
    assert [[tracking for _, tracking in part] for part in batch_parts(batch[2:4])] == [[3, 4]]
