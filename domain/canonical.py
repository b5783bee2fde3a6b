"""Canonical JSON: one byte string per value, so hashes and fingerprints are stable."""

from __future__ import annotations

import hashlib
import json
from typing import Any

#: What makes JSON canonical here: the options of every encoder that writes it.
CANONICAL_JSON_OPTIONS: dict[str, Any] = {
    "sort_keys": True,
    "separators": (",", ":"),
    "ensure_ascii": False,
    "allow_nan": False,
}

#: One encoder for every call (json.dumps with options builds a new one each time).
_encode = json.JSONEncoder(**CANONICAL_JSON_OPTIONS).encode


def canonical_json(value: Any) -> bytes:
    """Sorted keys, no insignificant white space, UTF-8, and no NaN or infinity."""
    return _encode(value).encode("utf-8")


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def fingerprint(command_name: str, payload: dict[str, Any]) -> str:
    """The fingerprint of a command: what it asks for, not who asked or under which token."""
    return sha256_hex(canonical_json({"command": command_name, "payload": payload}))
