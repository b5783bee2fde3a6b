"""The order-independent digest of a run's admitted inputs.

The digest is a set hash: the sum, modulo 2**256, of SHA-256 over each distinct
input ID. Adding the same set in any order, in any batches, gives the same digest,
and it can be extended one batch at a time without holding the set in memory.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

_MODULUS = 2**256
EMPTY_BASIS_DIGEST = "0" * 64


def _element_hash(input_id: str) -> int:
    return int.from_bytes(hashlib.sha256(input_id.encode("utf-8")).digest(), "big")


def extend_basis_digest(digest: str, new_input_ids: Iterable[str]) -> str:
    """Add inputs that are not yet in the set to its digest."""
    total = int(digest, 16)
    for input_id in new_input_ids:
        total = (total + _element_hash(input_id)) % _MODULUS
    return f"{total:064x}"


def basis_digest(input_ids: Iterable[str]) -> str:
    """The digest of a set, from scratch (duplicates count once)."""
    return extend_basis_digest(EMPTY_BASIS_DIGEST, set(input_ids))
