"""RFC 6962 / RFC 9162 Merkle trees over stored perfect subtrees.

A tree of n leaves is hashed as RFC 9162 section 2.1.1 says: a leaf is
SHA-256(0x00 || leaf bytes), an inner node SHA-256(0x01 || left || right), and a tree
splits at the largest power of two smaller than its size. The empty tree's root is
SHA-256 of nothing.

Only perfect subtrees are ever stored: node (level, index) is the root of leaves
[index * 2^level, (index + 1) * 2^level). Once complete it never changes, so a store can
append them and never update. Every hash this module answers (a root, each element of an
inclusion or consistency proof) is the hash of a range [start, end) that RFC 9162's
recursion reaches; such a range splits into at most log2(n) + 1 stored perfect subtrees.
A root or a proof therefore reads O(log n) nodes, in one `read_nodes` call.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from domain.errors import TreeSizeInvalid

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()


def leaf_hash(leaf: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + leaf).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


@dataclass(frozen=True, order=True)
class NodeId:
    """The root of the perfect subtree over leaves [index << level, (index + 1) << level)."""

    level: int
    index: int

    @property
    def start(self) -> int:
        return self.index << self.level

    @property
    def end(self) -> int:
        return (self.index + 1) << self.level


class NodeReader(Protocol):
    """Where the stored perfect subtrees are read (a view table, or memory in tests)."""

    def read_nodes(self, nodes: Sequence[NodeId]) -> Mapping[NodeId, bytes]:
        """The hash of every node asked for. Raises LookupError if one is not stored."""
        ...


def largest_power_of_two_below(size: int) -> int:
    """RFC 9162's split point k: the largest power of two smaller than size (size > 1)."""
    return 1 << ((size - 1).bit_length() - 1)


def perfect_subtrees(start: int, end: int) -> list[NodeId]:
    """The perfect subtrees RFC 9162's recursion splits [start, end) into, left to right.

    Only ranges the recursion reaches are accepted: start must be a multiple of the
    smallest power of two that is at least end - start."""
    length = end - start
    if length <= 0:
        raise ValueError(f"empty range [{start}, {end})")
    if start % (1 << (length - 1).bit_length()):
        raise ValueError(f"[{start}, {end}) is not a subtree of an RFC 6962 tree")
    nodes: list[NodeId] = []
    cursor = start
    for level in range(length.bit_length() - 1, -1, -1):
        if length >> level & 1:
            nodes.append(NodeId(level, cursor >> level))
            cursor += 1 << level
    return nodes


def fold_subtrees(hashes: Sequence[bytes]) -> bytes:
    """The hash of a range from the hashes of its perfect subtrees, left to right."""
    result = hashes[-1]
    for left in reversed(hashes[:-1]):
        result = node_hash(left, result)
    return result


def range_hashes(reader: NodeReader, ranges: Sequence[tuple[int, int]]) -> list[bytes]:
    """MTH(D[start:end]) for each range, reading every stored node they need at once."""
    splits = [perfect_subtrees(start, end) for start, end in ranges]
    wanted = sorted({node for split in splits for node in split})
    stored = reader.read_nodes(wanted) if wanted else {}
    return [fold_subtrees([stored[node] for node in split]) for split in splits]


def root(reader: NodeReader, size: int) -> bytes:
    """MTH(D[0:size])."""
    if size < 0:
        raise TreeSizeInvalid(f"a tree size cannot be negative ({size})")
    if size == 0:
        return EMPTY_ROOT
    return range_hashes(reader, [(0, size)])[0]


def inclusion_ranges(index: int, size: int) -> list[tuple[int, int]]:
    """The ranges of RFC 9162 section 2.1.3.1 PATH(index, D[0:size]), leaf's sibling first."""
    if not 0 <= index < size:
        raise TreeSizeInvalid(f"leaf index {index} is not in a tree of size {size}")
    from_root: list[tuple[int, int]] = []
    start, end = 0, size
    while end - start > 1:
        split = start + largest_power_of_two_below(end - start)
        if index < split:
            from_root.append((split, end))
            end = split
        else:
            from_root.append((start, split))
            start = split
    return from_root[::-1]


def consistency_ranges(old_size: int, new_size: int) -> list[tuple[int, int]]:
    """The ranges of RFC 9162 section 2.1.4.1 PROOF(old_size, D[0:new_size]), in its order."""
    if not 0 < old_size <= new_size:
        raise TreeSizeInvalid(
            f"no consistency proof from size {old_size} to size {new_size}: it needs 0 < from <= to"
        )
    from_root: list[tuple[int, int]] = []
    start, end = 0, new_size
    whole_old_tree_known = True  # SUBPROOF's flag b: the verifier holds MTH(D[0:old_size])
    while old_size != end:
        split = start + largest_power_of_two_below(end - start)
        if old_size <= split:
            from_root.append((split, end))
            end = split
        else:
            from_root.append((start, split))
            start = split
            whole_old_tree_known = False
    if not whole_old_tree_known:
        from_root.append((start, end))
    return from_root[::-1]


def inclusion_proof(reader: NodeReader, index: int, size: int) -> list[bytes]:
    return range_hashes(reader, inclusion_ranges(index, size))


def consistency_proof(reader: NodeReader, old_size: int, new_size: int) -> list[bytes]:
    return range_hashes(reader, consistency_ranges(old_size, new_size))


class TreeAppender:
    """Appends leaves to a tree, answering the perfect subtrees each one completes.

    It keeps the tree's right border (the perfect subtrees of [0, size), left to right),
    so an append costs O(log n) hashing and no reads."""

    def __init__(self, size: int, border: Sequence[bytes]) -> None:
        expected = size.bit_count()
        if len(border) != expected:
            raise ValueError(f"a tree of size {size} has {expected} border nodes, not {len(border)}")
        self.size = size
        self._border = list(border)

    @classmethod
    def resume(cls, reader: NodeReader, size: int) -> TreeAppender:
        nodes = perfect_subtrees(0, size) if size else []
        stored = reader.read_nodes(nodes) if nodes else {}
        return cls(size, [stored[node] for node in nodes])

    def append(self, leaf: bytes) -> list[tuple[NodeId, bytes]]:
        """Adds the leaf whose hash is `leaf`; answers the nodes to store, bottom up."""
        index, level, current = self.size, 0, leaf
        completed = [(NodeId(0, index), current)]
        while index & 1:
            current = node_hash(self._border.pop(), current)
            index >>= 1
            level += 1
            completed.append((NodeId(level, index), current))
        self._border.append(current)
        self.size += 1
        return completed

    def root(self) -> bytes:
        return fold_subtrees(self._border) if self._border else EMPTY_ROOT


class MemoryTree:
    """A whole tree held in memory: for tests, and for checking small trees offline."""

    def __init__(self) -> None:
        self.nodes: dict[NodeId, bytes] = {}
        self._appender = TreeAppender(0, [])

    @property
    def size(self) -> int:
        return self._appender.size

    def append(self, leaf: bytes) -> None:
        self.nodes.update(self._appender.append(leaf))

    def read_nodes(self, nodes: Sequence[NodeId]) -> Mapping[NodeId, bytes]:
        return {node: self.nodes[node] for node in nodes}
