"""The two Merkle trees of each committed attempt, stored when the audit projection
applies its Run.Committed event, so that an inclusion proof reads O(log n) rows instead
of recomputing the run's trees.

A run proof commits to two RFC 6962 trees (application/proofs.py): the run's audit
records up to the seal, and its decision heads at the seal. Before the audit projection's
transaction for a Run.Committed opens, this module reads the material the close signed
(read_proof_material: the run's records up to the seal, in the same generation) and
hashes both trees; the transaction then stores them as the transparency log stores its
own (application/transparency/merkle.py: perfect subtrees, never updated), with fewer
rows: the leaves go BLOCK_SIZE to a row, and only perfect subtrees of a block or more get
rows of their own. A smaller subtree lies inside one block and is hashed from its leaves
on request (at most BLOCK_SIZE - 1 hashes). So a proof reads one or two blocks and
O(log n) nodes, and committing n records writes about n / 32 rows.

Tables, in the audit projection's generation (each row carries the position of the
Run.Committed event that wrote it, so `projections verify` compares them as of any
position):
- proof_trees: run_id, seal_position, committed_at, tree_size (records), heads_size;
- proof_blocks: run_id, seal_position, tree (EVENTS or HEADS), block, first_key, leaves
  (the block's leaf hashes, hex, concatenated) and, for the heads tree, heads (JSON
  [[decision_id, version], ...]) with first_key the first decision ID's 32 hex digits;
- proof_nodes: run_id, seal_position, tree, node (tree_levels.node_key), hash (hex).

`audit verify` never reads them: it recomputes everything from the stored events.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from application.projections.tree_levels import node_key
from application.proofs import DecisionHead, ProofMaterial, material_from_records
from application.transparency.merkle import NodeId, TreeAppender, inclusion_proof, node_hash
from domain.errors import ProofNotFound
from domain.run import Run
from infrastructure.view_store import ViewCursor, ViewStore

BLOCK_LEVEL = 6
BLOCK_SIZE = 1 << BLOCK_LEVEL
HASH_HEX = 64
EVENTS, HEADS = 0, 1

PROOF_TREE_TABLES = ("proof_trees", "proof_blocks", "proof_nodes")
PROOF_TREE_DDL = (
    "CREATE TABLE IF NOT EXISTS {proof_trees} (run_id TEXT NOT NULL, seal_position BIGINT NOT NULL,"
    " committed_at BIGINT NOT NULL, tree_size BIGINT NOT NULL, heads_size BIGINT NOT NULL,"
    " PRIMARY KEY (run_id, seal_position))",
    "CREATE TABLE IF NOT EXISTS {proof_blocks} (run_id TEXT NOT NULL, seal_position BIGINT NOT NULL,"
    " tree INTEGER NOT NULL, block BIGINT NOT NULL, first_key TEXT NOT NULL, leaves TEXT NOT NULL,"
    " heads TEXT, committed_at BIGINT NOT NULL, PRIMARY KEY (run_id, seal_position, tree, block))",
    "CREATE INDEX IF NOT EXISTS {proof_blocks_key} ON {proof_blocks} (run_id, seal_position, tree, first_key)",
    "CREATE TABLE IF NOT EXISTS {proof_nodes} (run_id TEXT NOT NULL, seal_position BIGINT NOT NULL,"
    " tree INTEGER NOT NULL, node BIGINT NOT NULL, hash TEXT NOT NULL, committed_at BIGINT NOT NULL,"
    " PRIMARY KEY (run_id, seal_position, tree, node))",
)


def proof_tree_index_names(projection: str, generation: int) -> dict[str, str]:
    """Index names are not schema-qualified: they live beside their table."""
    return {"proof_blocks_key": f'"{projection}_g{generation}_proof_blocks_key"'}


def read_proof_material(
    cursor: ViewCursor, tables: Mapping[str, str], run_id: str, up_to: int
) -> ProofMaterial:
    """A run's leaf hashes and decision heads up to a position, from its audit records."""
    rows = cursor.execute(
        f"SELECT position, leaf_hash, aggregate_id, aggregate_version, event_type FROM {tables['records']}"
        " WHERE run_id = ? AND position <= ? ORDER BY position",
        (run_id, up_to),
    ).fetchall()
    return material_from_records(rows)


# --- A tree as blocks of leaves and the perfect subtrees above them (pure) ------------------


@dataclass(frozen=True)
class BlockedTree:
    """A tree's leaf hashes in blocks of BLOCK_SIZE, and its perfect subtrees of at least
    BLOCK_LEVEL levels."""

    blocks: list[list[str]]
    nodes: dict[NodeId, str]

    @classmethod
    def of(cls, leaf_hashes: Sequence[str]) -> BlockedTree:
        appender = TreeAppender(0, [])
        nodes: dict[NodeId, str] = {}
        for leaf in leaf_hashes:
            for node, digest in appender.append(bytes.fromhex(leaf)):
                if node.level >= BLOCK_LEVEL:
                    nodes[node] = digest.hex()
        blocks = [
            list(leaf_hashes[start : start + BLOCK_SIZE]) for start in range(0, len(leaf_hashes), BLOCK_SIZE)
        ]
        return cls(blocks, nodes)


BlockSource = Callable[[set[int]], Mapping[int, Sequence[str]]]
NodeSource = Callable[[Sequence[NodeId]], Mapping[NodeId, str]]


class BlockedNodeReader:
    """merkle.NodeReader over a blocked tree: small subtrees are hashed from their block."""

    def __init__(self, read_blocks: BlockSource, read_stored: NodeSource) -> None:
        self.read_blocks = read_blocks
        self.read_stored = read_stored

    @classmethod
    def in_memory(cls, tree: BlockedTree) -> BlockedNodeReader:
        return cls(
            lambda wanted: {block: tree.blocks[block] for block in wanted},
            lambda wanted: {node: tree.nodes[node] for node in wanted},
        )

    def read_nodes(self, nodes: Sequence[NodeId]) -> dict[NodeId, bytes]:
        small = [node for node in nodes if node.level < BLOCK_LEVEL]
        large = [node for node in nodes if node.level >= BLOCK_LEVEL]
        blocks = self.read_blocks({node.start >> BLOCK_LEVEL for node in small}) if small else {}
        levels = {number: block_levels(leaves) for number, leaves in blocks.items()}
        found: dict[NodeId, bytes] = {}
        for node in small:
            in_block = levels.get(node.start >> BLOCK_LEVEL, [])
            offset = (node.start % BLOCK_SIZE) >> node.level
            if node.level >= len(in_block) or offset >= len(in_block[node.level]):
                raise LookupError(
                    f"proof tree leaves of node (level {node.level}, index {node.index}) are not stored"
                )
            found[node] = in_block[node.level][offset]
        stored = self.read_stored(large) if large else {}
        for node in large:
            if node not in stored:
                raise LookupError(f"proof tree node (level {node.level}, index {node.index}) is not stored")
            found[node] = bytes.fromhex(stored[node])
        return found


def block_levels(leaves: Sequence[str]) -> list[list[bytes]]:
    """Every perfect subtree within a block, level by level: [level][index in the block]
    (a short last block has only those its leaves complete)."""
    levels = [[bytes.fromhex(leaf) for leaf in leaves]]
    while len(levels[-1]) > 1:
        below = levels[-1]
        levels.append([node_hash(below[i], below[i + 1]) for i in range(0, len(below) - 1, 2)])
    return levels


def audit_path(reader: BlockedNodeReader, index: int, size: int) -> list[str]:
    """The RFC 9162 audit path of leaf `index` in a tree of `size` leaves, hex."""
    return [digest.hex() for digest in inclusion_proof(reader, index, size)]


# --- Written when the audit projection applies Run.Committed -------------------------------


@dataclass(frozen=True)
class AttemptRows:
    """The rows of one committed attempt's trees, all but their commit position."""

    sizes: tuple[int, int]
    blocks: list[tuple[Any, ...]]
    nodes: list[tuple[Any, ...]]

    @classmethod
    def of(cls, material: ProofMaterial) -> AttemptRows:
        heads = sorted(material.decision_heads.items())
        events = BlockedTree.of(material.leaf_hashes)
        head_tree = BlockedTree.of([leaf for _, leaf in material.head_leaves()])
        blocks: list[tuple[Any, ...]] = [
            (EVENTS, number, "", "".join(leaves), None) for number, leaves in enumerate(events.blocks)
        ]
        for number, leaves in enumerate(head_tree.blocks):
            entries = heads[number * BLOCK_SIZE : (number + 1) * BLOCK_SIZE]
            blocks.append((HEADS, number, UUID(entries[0][0]).hex, "".join(leaves), json.dumps(entries)))
        nodes = [
            (tree, node_key(node), digest)
            for tree, blocked in ((EVENTS, events), (HEADS, head_tree))
            for node, digest in blocked.nodes.items()
        ]
        return cls((len(material.leaf_hashes), len(heads)), blocks, nodes)


class ProofTreesWriter:
    """Stores the trees of the attempts a batch commits.

    Hashing a big run's trees takes seconds: `prepare` does it before the batch's
    transaction opens (the run's records up to its seal are stored by then), so the
    transaction only inserts rows; PostgreSQL ends a transaction idle for too long."""

    def __init__(self, tables: Mapping[str, str]) -> None:
        self.t = tables
        self._prepared: dict[tuple[str, int], AttemptRows] = {}
        self._committed: list[tuple[str, int, int]] = []

    def prepare(self, store: ViewStore, run_id: str, seal_position: int) -> None:
        """Read and hash the attempt's trees, outside any write transaction."""
        with store.cursor(commit=False) as cursor:
            material = read_proof_material(cursor, self.t, run_id, seal_position)
        self._prepared[(run_id, seal_position)] = AttemptRows.of(material)

    def begin(self) -> None:
        self._committed = []

    def committed(self, run_id: str, seal_position: int, committed_at: int) -> None:
        self._committed.append((run_id, seal_position, committed_at))

    def flush(self, cursor: ViewCursor) -> None:
        """Call once the batch's audit records are written (an attempt not prepared is
        read from them here)."""
        for run_id, seal_position, committed_at in self._committed:
            rows = self._prepared.pop((run_id, seal_position), None)
            if rows is None:
                rows = AttemptRows.of(read_proof_material(cursor, self.t, run_id, seal_position))
            self._insert(cursor, (run_id, seal_position, committed_at), rows)
        self._committed = []

    def _insert(self, cursor: ViewCursor, attempt: tuple[str, int, int], rows: AttemptRows) -> None:
        run_id, seal_position, committed_at = attempt
        cursor.execute(
            f"INSERT INTO {self.t['proof_trees']} (run_id, seal_position, committed_at, tree_size, heads_size)"
            " VALUES (?, ?, ?, ?, ?)",
            (run_id, seal_position, committed_at, *rows.sizes),
        )
        cursor.executemany(
            f"INSERT INTO {self.t['proof_blocks']}"
            " (run_id, seal_position, tree, block, first_key, leaves, heads, committed_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [(run_id, seal_position, *block, committed_at) for block in rows.blocks],
        )
        cursor.executemany(
            f"INSERT INTO {self.t['proof_nodes']} (run_id, seal_position, tree, node, hash, committed_at)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            [(run_id, seal_position, *node, committed_at) for node in rows.nodes],
        )


def batch_parts(batch: Sequence[tuple[Any, Any]]) -> list[Sequence[tuple[Any, Any]]]:
    """The batch cut before each Run.Committed that carries a proof, so each such event
    starts a part, and its run's records up to the seal are stored before that part."""
    parts: list[Sequence[tuple[Any, Any]]] = []
    start = 0
    for index, (domain_event, _) in enumerate(batch):
        if index > start and is_proved_commit(domain_event):
            parts.append(batch[start:index])
            start = index
    parts.append(batch[start:])
    return parts


def is_proved_commit(domain_event: Any) -> bool:
    return isinstance(domain_event, Run.Committed) and getattr(domain_event, "proof", None) is not None


# --- Read on request ----------------------------------------------------------------------


class StoredRunTrees:
    """A committed attempt's stored trees, read through an open cursor (a proofs.RunTrees)."""

    def __init__(
        self,
        cursor: ViewCursor,
        tables: Mapping[str, str],
        attempt: tuple[str, int],
        sizes: Mapping[str, Any],
    ) -> None:
        self.cursor = cursor
        self.t = tables
        self.run_id, self.seal_position = attempt
        self.tree_size = int(sizes["tree_size"])
        self.heads_size = int(sizes["heads_size"])

    @classmethod
    def find(
        cls, cursor: ViewCursor, tables: Mapping[str, str], run_id: str, seal_position: int
    ) -> StoredRunTrees | None:
        """The trees of the attempt sealed at `seal_position`, or None if none are stored
        (the audit projection has not applied its Run.Committed yet, or applied it before
        these tables existed)."""
        sizes = cursor.execute(
            f"SELECT tree_size, heads_size FROM {tables['proof_trees']} WHERE run_id = ? AND seal_position = ?",
            (run_id, seal_position),
        ).fetchone()
        return None if sizes is None else cls(cursor, tables, (run_id, seal_position), sizes)

    def leaf_indexes(self, positions: Sequence[int]) -> list[int]:
        """Where each event is in the records tree: its record's number within the run."""
        if not positions:
            return []
        rows = self.cursor.execute(
            f"SELECT position, run_id, run_sequence FROM {self.t['records']}"
            f" WHERE position IN ({', '.join('?' * len(positions))})",
            tuple(positions),
        ).fetchall()
        sequence = {row["position"]: row["run_sequence"] for row in rows if row["run_id"] == self.run_id}
        indexes = []
        for position in positions:
            if position not in sequence or not 0 < sequence[position] <= self.tree_size:
                raise LookupError(
                    f"the event at position {position} is not a leaf of run {self.run_id!r}'s tree"
                )
            indexes.append(int(sequence[position]) - 1)
        return indexes

    def audit_path(self, index: int) -> list[str]:
        return audit_path(self._reader(EVENTS), index, self.tree_size)

    def head(self, decision_id: str) -> DecisionHead:
        """The decision's head: found in the one block whose first decision ID is the
        greatest at or below its own (an index lookup)."""
        row = self.cursor.execute(
            f"SELECT block, heads FROM {self.t['proof_blocks']} WHERE run_id = ? AND seal_position = ?"
            " AND tree = ? AND first_key <= ? ORDER BY first_key DESC LIMIT 1",
            (self.run_id, self.seal_position, HEADS, UUID(decision_id).hex),
        ).fetchone()
        entries: list[list[Any]] = [] if row is None else json.loads(row["heads"])
        for offset, (head_id, version) in enumerate(entries):
            if head_id == decision_id:
                assert row is not None  # entries came from it
                index = int(row["block"]) * BLOCK_SIZE + offset
                return DecisionHead(version, index, audit_path(self._reader(HEADS), index, self.heads_size))
        raise ProofNotFound(
            f"decision {decision_id} is not among run {self.run_id!r}'s committed decision heads"
        )

    def _reader(self, tree: int) -> BlockedNodeReader:
        def read_blocks(wanted: set[int]) -> dict[int, list[str]]:
            numbers = sorted(wanted)
            rows = self.cursor.execute(
                f"SELECT block, leaves FROM {self.t['proof_blocks']} WHERE run_id = ? AND seal_position = ?"
                f" AND tree = ? AND block IN ({', '.join('?' * len(numbers))})",
                (self.run_id, self.seal_position, tree, *numbers),
            ).fetchall()
            return {row["block"]: split_hashes(row["leaves"]) for row in rows}

        def read_stored(wanted: Sequence[NodeId]) -> dict[NodeId, str]:
            by_key = {node_key(node): node for node in wanted}
            rows = self.cursor.execute(
                f"SELECT node, hash FROM {self.t['proof_nodes']} WHERE run_id = ? AND seal_position = ?"
                f" AND tree = ? AND node IN ({', '.join('?' * len(by_key))})",
                (self.run_id, self.seal_position, tree, *by_key),
            ).fetchall()
            return {by_key[row["node"]]: row["hash"] for row in rows}

        return BlockedNodeReader(read_blocks, read_stored)


def split_hashes(concatenated: str) -> list[str]:
    return [concatenated[start : start + HASH_HEX] for start in range(0, len(concatenated), HASH_HEX)]


def proof_trees_as_of(t: Mapping[str, str], position: int) -> dict[str, tuple[str, tuple[Any, ...]]]:
    """The stored trees of the attempts committed by `position`: what verify compares."""
    return {
        "proof_trees": (
            f"SELECT run_id, seal_position, committed_at, tree_size, heads_size FROM {t['proof_trees']}"
            " WHERE committed_at <= ? ORDER BY run_id, seal_position",
            (position,),
        ),
        "proof_blocks": (
            f"SELECT run_id, seal_position, tree, block, first_key, leaves, heads, committed_at"
            f" FROM {t['proof_blocks']} WHERE committed_at <= ? ORDER BY run_id, seal_position, tree, block",
            (position,),
        ),
        "proof_nodes": (
            f"SELECT run_id, seal_position, tree, node, hash, committed_at FROM {t['proof_nodes']}"
            " WHERE committed_at <= ? ORDER BY run_id, seal_position, tree, node",
            (position,),
        ),
    }
