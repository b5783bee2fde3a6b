"""The transparency log's Merkle tree, stored level by level beside the audit log.

The audit projection appends one leaf per stored event (its leaf bytes are in
application/transparency/leaves.py) and, with it, every perfect subtree the leaf
completes. Rows are only ever inserted: a perfect subtree never changes. So a root or a
proof for any size reads O(log n) rows (application/transparency/merkle.py), and an
append reads none (the right border is carried from one event to the next).

Tables, in the audit projection's generation:
- tree_nodes: node (level << 48 | index), level, idx, end_leaf (leaves [0, end_leaf)
  are needed to complete it), hash (hex);
- tree_leaves: leaf_index, position: which stored event each leaf is.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from application.transparency.leaves import event_leaf_bytes
from application.transparency.merkle import NodeId, TreeAppender, leaf_hash
from infrastructure.view_store import ViewCursor

TREE_TABLES = ("tree_nodes", "tree_leaves")
TREE_DDL = (
    "CREATE TABLE IF NOT EXISTS {tree_nodes} (node BIGINT PRIMARY KEY, level INTEGER NOT NULL,"
    " idx BIGINT NOT NULL, end_leaf BIGINT NOT NULL, hash TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS {tree_leaves} (leaf_index BIGINT PRIMARY KEY, position BIGINT NOT NULL UNIQUE)",
)
#: Leaf indexes fit 48 bits (2.8e14 events); the level goes above them in one BIGINT key.
INDEX_BITS = 48


def node_key(node: NodeId) -> int:
    return node.level << INDEX_BITS | node.index


class StoredTree:
    """The tree tables of one generation, read through an open cursor (a NodeReader)."""

    def __init__(self, cursor: ViewCursor, tables: Mapping[str, str]) -> None:
        self.cursor = cursor
        self.t = tables

    def read_nodes(self, nodes: Sequence[NodeId]) -> dict[NodeId, bytes]:
        by_key = {node_key(node): node for node in nodes}
        rows = self.cursor.execute(
            f"SELECT node, hash FROM {self.t['tree_nodes']} WHERE node IN ({', '.join('?' * len(by_key))})",
            tuple(by_key),
        ).fetchall()
        found = {by_key[row["node"]]: bytes.fromhex(row["hash"]) for row in rows}
        if len(found) != len(by_key):
            missing = sorted(set(by_key.values()) - set(found))[0]
            raise LookupError(f"tree node (level {missing.level}, index {missing.index}) is not stored")
        return found

    def size(self) -> int:
        row = self.cursor.execute(
            f"SELECT leaf_index FROM {self.t['tree_leaves']} ORDER BY leaf_index DESC LIMIT 1"
        ).fetchone()
        return 0 if row is None else int(row["leaf_index"]) + 1

    def size_at(self, position: int) -> int:
        """How many leaves the tree had once the event at `position` was appended."""
        row = self.cursor.execute(
            f"SELECT leaf_index FROM {self.t['tree_leaves']} WHERE position <= ? ORDER BY position DESC LIMIT 1",
            (position,),
        ).fetchone()
        return 0 if row is None else int(row["leaf_index"]) + 1

    def leaf_index_of(self, position: int) -> int | None:
        row = self.cursor.execute(
            f"SELECT leaf_index FROM {self.t['tree_leaves']} WHERE position = ?", (position,)
        ).fetchone()
        return None if row is None else int(row["leaf_index"])

    def positions(self, first_leaf: int, last_leaf: int) -> list[int]:
        """The positions of leaves first_leaf..last_leaf, in order."""
        rows = self.cursor.execute(
            f"SELECT position FROM {self.t['tree_leaves']} WHERE leaf_index BETWEEN ? AND ? ORDER BY leaf_index",
            (first_leaf, last_leaf),
        ).fetchall()
        return [int(row["position"]) for row in rows]


class TreeLevelsWriter:
    """Appends a batch of events to the stored tree, in the projection's transaction."""

    def __init__(self, tables: Mapping[str, str]) -> None:
        self.t = tables
        self._appender = TreeAppender(0, [])
        self._nodes: list[tuple[int, int, int, int, str]] = []
        self._leaves: list[tuple[int, int]] = []

    def begin(self, cursor: ViewCursor) -> None:
        stored = StoredTree(cursor, self.t)
        self._appender = TreeAppender.resume(stored, stored.size())
        self._nodes, self._leaves = [], []

    def append(self, position: int, notification: Any) -> None:
        """Adds the stored event `notification` (raw, as the recorder returns it)."""
        leaf = event_leaf_bytes(
            position,
            notification.originator_id,
            notification.originator_version,
            notification.topic,
            notification.state,
        )
        self._leaves.append((self._appender.size, position))
        for node, digest in self._appender.append(leaf_hash(leaf)):
            self._nodes.append((node_key(node), node.level, node.index, node.end, digest.hex()))

    def flush(self, cursor: ViewCursor) -> None:
        cursor.executemany(
            f"INSERT INTO {self.t['tree_nodes']} (node, level, idx, end_leaf, hash) VALUES (?, ?, ?, ?, ?)",
            self._nodes,
        )
        cursor.executemany(
            f"INSERT INTO {self.t['tree_leaves']} (leaf_index, position) VALUES (?, ?)", self._leaves
        )
        self._nodes, self._leaves = [], []


def tree_levels_as_of(t: Mapping[str, str], position: int) -> dict[str, tuple[str, tuple[Any, ...]]]:
    """The tree rows as they stood at `position`: what `projections verify` compares."""
    return {
        "tree_leaves": (
            f"SELECT leaf_index, position FROM {t['tree_leaves']} WHERE position <= ? ORDER BY leaf_index",
            (position,),
        ),
        "tree_nodes": (
            f"SELECT node, level, idx, end_leaf, hash FROM {t['tree_nodes']}"
            f" WHERE end_leaf <= (SELECT COUNT(*) FROM {t['tree_leaves']} WHERE position <= ?) ORDER BY node",
            (position,),
        ),
    }
