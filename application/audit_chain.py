"""The audit log's hash chain and Merkle trees.

canonical_bytes(event) is the canonical JSON (sorted keys, no white space, UTF-8) of:

    {"position": <notification position>,
     "type": <event topic, e.g. "domain.decision:Decision.Recorded">,
     "aggregate_id": <aggregate UUID, hyphenated>,
     "version": <aggregate version>,
     "timestamp": <the event's timestamp, ISO 8601, as stored>,
     "state": <the stored state, parsed from its JSON bytes>}

The chain is h_0 = 32 zero bytes, h_n = SHA-256(h_{n-1} || canonical_bytes(event_n)),
in notification order. Merkle trees follow RFC 6962 / 9162: a leaf hash is
SHA-256(0x00 || canonical_bytes), a node hash is SHA-256(0x01 || left || right), and a
tree of n leaves splits at the largest power of two smaller than n.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from functools import lru_cache
from json.encoder import encode_basestring
from typing import Any
from uuid import UUID

from application.stored_form import parse_stored_state
from domain.canonical import canonical_json

GENESIS_CHAIN_HASH = "00" * 32


def canonical_bytes(position: int, topic: str, aggregate_id: UUID | str, version: int, state: bytes) -> bytes:
    return canonical_event_bytes(position, topic, aggregate_id, version, parse_stored_state(state))


def canonical_event_bytes(
    position: int, topic: str, aggregate_id: UUID | str, version: int, parsed: dict[str, Any]
) -> bytes:
    """canonical_bytes of an event whose stored state is parsed already."""
    return canonical_json(
        {
            "position": position,
            "type": topic,
            "aggregate_id": _uuid_text(aggregate_id),
            "version": version,
            "timestamp": event_timestamp(parsed),
            "state": parsed,
        }
    )


def as_stored_event_bytes(
    position: int, topic: str, aggregate_id: UUID | str, version: int, parsed: dict[str, Any], stored: bytes
) -> bytes:
    """canonical_bytes around the state exactly as stored: equal to them when the stored
    state is canonical JSON, as the ledger writes it (application/stored_form.py), and
    built without writing the state again. (Otherwise they differ, and a verifier that
    compares their hash with the audit log falls back to canonical_event_bytes.)"""
    return b'{"aggregate_id":"%s","position":%d,"state":%s,"timestamp":%s,"type":%s,"version":%d}' % (
        _uuid_text(aggregate_id).encode(),  # hex digits and dashes: nothing to escape
        position,
        stored,
        _json_text(event_timestamp(parsed)),
        _topic_text(topic),
        version,
    )


def _json_text(value: Any) -> bytes:
    """canonical_json of a value, quicker for text (escaped by json's own C function) and
    for integers."""
    if type(value) is str:
        return encode_basestring(value).encode("utf-8")
    if type(value) is int:
        return str(value).encode()
    return canonical_json(value)


@lru_cache(maxsize=256)
def _topic_text(topic: str) -> bytes:
    """A topic as canonical JSON (a ledger has a few dozen)."""
    return _json_text(topic)


def event_timestamp(parsed: dict[str, Any]) -> Any:
    """The event's timestamp as its stored state holds it (ISO 8601 text)."""
    timestamp = parsed.get("timestamp")
    return timestamp.get("_data_") if isinstance(timestamp, dict) else timestamp


def _uuid_text(aggregate_id: UUID | str) -> str:
    return str(aggregate_id if isinstance(aggregate_id, UUID) else UUID(aggregate_id))


def next_chain_hash(previous_hex: str, event_bytes: bytes) -> str:
    chained = hashlib.sha256(bytes.fromhex(previous_hex))
    chained.update(event_bytes)
    return chained.hexdigest()


def leaf_hash(event_bytes: bytes) -> str:
    return hashlib.sha256(b"\x00" + event_bytes).hexdigest()


def node_hash(left_hex: str, right_hex: str) -> str:
    return hashlib.sha256(b"\x01" + bytes.fromhex(left_hex) + bytes.fromhex(right_hex)).hexdigest()


def _split(size: int) -> int:
    """The largest power of two smaller than size (size > 1)."""
    split = 1
    while split * 2 < size:
        split *= 2
    return split


def merkle_root(leaves: Sequence[str]) -> str:
    """The root over leaf hashes; the empty tree's root is SHA-256 of nothing."""
    if not leaves:
        return hashlib.sha256(b"").hexdigest()
    level = list(leaves)
    # Bottom-up over the same tree shape as the recursive definition: pair from the
    # left; a lone last node is carried up unchanged.
    while len(level) > 1:
        paired = [node_hash(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            paired.append(level[-1])
        level = paired
    return level[0]


def inclusion_path(leaves: Sequence[str], index: int) -> list[str]:
    """The audit path (RFC 9162 section 2.1.3.1) of the leaf at `index`."""
    if not 0 <= index < len(leaves):
        raise IndexError(index)
    path: list[str] = []
    level = list(leaves)
    position = index
    while len(level) > 1:
        sibling = position ^ 1
        if sibling < len(level):
            path.append(level[sibling])
        paired = [node_hash(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            paired.append(level[-1])
        level = paired
        position //= 2
    return path


def root_from_inclusion_path(leaf: str, index: int, tree_size: int, path: Sequence[str]) -> str:
    """RFC 9162 section 2.1.3.2: recompute the root from a leaf and its audit path.
    Raises ValueError when the path cannot belong to a tree of that size."""
    if not 0 <= index < tree_size:
        raise ValueError("leaf index outside the tree")
    fn, sn = index, tree_size - 1
    result = leaf
    for sibling in path:
        if sn == 0:
            raise ValueError("audit path is longer than the tree is deep")
        if fn % 2 == 1 or fn == sn:
            result = node_hash(sibling, result)
            if fn % 2 == 0:
                while fn % 2 == 0 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            result = node_hash(result, sibling)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ValueError("audit path is shorter than the tree is deep")
    return result


def event_record_hashes(previous_chain: str, event_bytes: bytes) -> dict[str, Any]:
    return {"leaf_hash": leaf_hash(event_bytes), "chain_hash": next_chain_hash(previous_chain, event_bytes)}
