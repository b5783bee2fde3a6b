"""The leaf bytes of one stored event: what the log's Merkle tree commits to.

    field(b) = uint32_be(len(b)) || b
    leaf     = field(uint64_be(position))
            || field(aggregate id as ASCII text, lowercase, hyphenated)
            || field(uint64_be(aggregate version))
            || field(topic, UTF-8)
            || field(state bytes, exactly as stored)

Why these: the state bytes are hashed as stored, so a verifier in any language needs no
JSON decoder (no float formatting to re-implement), and an edit of any byte is seen even
when it decodes to the same value. Position, aggregate, version and topic are columns
beside the state, not inside it, so they are added: moving, renumbering or retyping an
event changes its leaf. Every field carries its length, so two different events can never
give the same bytes by shifting a boundary between fields.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from uuid import UUID

from domain.errors import InvalidCommand, MalformedTransparencyText

_UINT64_MAX = 2**64 - 1


def _field(value: bytes) -> bytes:
    return struct.pack(">I", len(value)) + value


def _uint64(name: str, value: int) -> bytes:
    if not 0 <= value <= _UINT64_MAX:
        raise InvalidCommand(f"{name} {value} does not fit an unsigned 64-bit integer")
    return struct.pack(">Q", value)


def aggregate_id_text(aggregate_id: UUID | str) -> str:
    return str(aggregate_id if isinstance(aggregate_id, UUID) else UUID(aggregate_id))


def event_leaf_bytes(
    position: int, aggregate_id: UUID | str, version: int, topic: str, state: bytes
) -> bytes:
    return b"".join(
        (
            _field(_uint64("position", position)),
            _field(aggregate_id_text(aggregate_id).encode("ascii")),
            _field(_uint64("version", version)),
            _field(topic.encode("utf-8")),
            _field(bytes(state)),
        )
    )


@dataclass(frozen=True)
class EventLeaf:
    position: int
    aggregate_id: str
    version: int
    topic: str
    state: bytes


def parse_event_leaf(leaf: bytes) -> EventLeaf:
    """The fields of an event's leaf bytes (for a verifier holding only the leaf)."""
    fields: list[bytes] = []
    offset = 0
    while offset < len(leaf) and len(fields) < 5:
        if offset + 4 > len(leaf):
            break
        (length,) = struct.unpack_from(">I", leaf, offset)
        offset += 4
        if offset + length > len(leaf):
            break
        fields.append(leaf[offset : offset + length])
        offset += length
    if len(fields) != 5 or offset != len(leaf) or len(fields[0]) != 8 or len(fields[2]) != 8:
        raise MalformedTransparencyText("these bytes are not an event's leaf (five length-prefixed fields)")
    try:
        aggregate_id = aggregate_id_text(fields[1].decode("ascii"))
        topic = fields[3].decode("utf-8")
    except (UnicodeDecodeError, ValueError):
        raise MalformedTransparencyText("an event leaf's aggregate ID or topic is not text") from None
    (position,) = struct.unpack(">Q", fields[0])
    (version,) = struct.unpack(">Q", fields[2])
    return EventLeaf(position, aggregate_id, version, topic, fields[4])
