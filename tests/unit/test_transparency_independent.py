"""Our checkpoints, signatures and proofs, checked by a second implementation.

Everything under "the independent verifier" is written here from the texts of RFC 6962
(section 2.1), C2SP signed-note, tlog-checkpoint and tlog-proof, and calls none of our
code: the recursive definitions rather than our stored-subtree arithmetic, its own note
parser, Ed25519 straight from `cryptography`. The tests then hand it what our code made.
"""

from __future__ import annotations

import base64
import hashlib
import struct
import uuid

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from application.transparency.checkpoints import Checkpoint, sign_checkpoint
from application.transparency.leaves import event_leaf_bytes
from application.transparency.merkle import MemoryTree, consistency_proof, inclusion_proof, leaf_hash, root
from application.transparency.notes import NoteSigner
from application.transparency.tlog_proofs import make_tlog_proof

# --- the independent verifier --------------------------------------------------------


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def split_point(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def mth(entries: list[bytes]) -> bytes:
    """RFC 6962 2.1: MTH({}) = SHA-256(), MTH({d0}) = SHA-256(0x00 || d0), else split at k."""
    if not entries:
        return sha256(b"")
    if len(entries) == 1:
        return sha256(b"\x00" + entries[0])
    k = split_point(len(entries))
    return sha256(b"\x01" + mth(entries[:k]) + mth(entries[k:]))


def path(m: int, entries: list[bytes]) -> list[bytes]:
    """RFC 6962 2.1.1 PATH(m, D[n])."""
    if len(entries) == 1:
        return []
    k = split_point(len(entries))
    if m < k:
        return [*path(m, entries[:k]), mth(entries[k:])]
    return [*path(m - k, entries[k:]), mth(entries[:k])]


def subproof(m: int, entries: list[bytes], complete: bool) -> list[bytes]:
    """RFC 6962 2.1.2 SUBPROOF(m, D[n], b)."""
    n = len(entries)
    if m == n:
        return [] if complete else [mth(entries)]
    k = split_point(n)
    if m <= k:
        return [*subproof(m, entries[:k], complete), mth(entries[k:])]
    return [*subproof(m - k, entries[k:], False), mth(entries[:k])]


def root_from_path(index: int, size: int, leaf_digest: bytes, audit_path: list[bytes]) -> bytes:
    """Undo PATH's recursion: the last element is the sibling of the top split."""
    if size == 1:
        assert not audit_path, "path too long"
        return leaf_digest
    assert audit_path, "path too short"
    k = split_point(size)
    *rest, sibling = audit_path
    if index < k:
        return sha256(b"\x01" + root_from_path(index, k, leaf_digest, rest) + sibling)
    return sha256(b"\x01" + sibling + root_from_path(index - k, size - k, leaf_digest, rest))


def open_signed_note(note: str, name: str, public_key: bytes) -> str:
    """C2SP signed-note: the text if `name`/`public_key` signed it, else AssertionError."""
    separator = note.rindex("\n\n")
    text, signature_lines = note[: separator + 1], note[separator + 2 :].splitlines()
    wanted_id = sha256(name.encode() + b"\n" + b"\x01" + public_key)[:4]
    for line in signature_lines:
        assert line.startswith("\u2014 ")
        signer, encoded = line[2:].split(" ")
        blob = base64.b64decode(encoded, validate=True)
        if signer == name and blob[:4] == wanted_id:
            try:
                Ed25519PublicKey.from_public_bytes(public_key).verify(blob[4:], text.encode())
            except InvalidSignature:
                raise AssertionError("bad signature") from None
            return text
    raise AssertionError("no signature by the trusted key")


def read_checkpoint(text: str) -> tuple[str, int, bytes]:
    origin, size, root_hash = text.split("\n")[:3]
    assert size == str(int(size))
    return origin, int(size), base64.b64decode(root_hash, validate=True)


def leaf_bytes(position: int, aggregate: uuid.UUID, version: int, topic: str, state: bytes) -> bytes:
    """The README's leaf: each field as a 4-byte big-endian length and its bytes."""
    fields = [
        struct.pack(">Q", position),
        str(aggregate).encode(),
        struct.pack(">Q", version),
        topic.encode(),
        state,
    ]
    return b"".join(struct.pack(">I", len(field)) + field for field in fields)


# --- the tests ---------------------------------------------------------------------------

ORIGIN = "decision-ledger/independent-test"


@pytest.fixture
def signer() -> NoteSigner:
    return NoteSigner(ORIGIN, Ed25519PrivateKey.generate())


def public_bytes(signer: NoteSigner) -> bytes:
    return signer.verifier.public_key


def events(count: int) -> list[bytes]:
    """Leaf bytes of `count` made-up stored events, built by our code."""
    aggregate = uuid.uuid4()
    return [
        event_leaf_bytes(
            position,
            aggregate,
            position,
            "domain.decision:Decision.Recorded",
            b'{"score":0.1,"n":%d}' % position,
        )
        for position in range(1, count + 1)
    ]


def our_tree(entries: list[bytes]) -> MemoryTree:
    tree = MemoryTree()
    for entry in entries:
        tree.append(leaf_hash(entry))
    return tree


def test_leaf_bytes_follow_the_readme() -> None:
    aggregate = uuid.uuid4()
    state = b'{"outcome": "approve",  "score": 1.0e0}'  # stored bytes, odd spacing kept
    ours = event_leaf_bytes(7, aggregate, 3, "domain.run:Run.Sealed", state)
    assert ours == leaf_bytes(7, aggregate, 3, "domain.run:Run.Sealed", state)
    assert state in ours


@pytest.mark.parametrize("size", [1, 2, 3, 5, 8, 13, 64, 100])
def test_roots_and_inclusion_proofs_match_the_rfc_definitions(size: int) -> None:
    entries = events(size)
    tree = our_tree(entries)
    assert root(tree, size) == mth(entries)
    for index in range(size):
        proof = inclusion_proof(tree, index, size)
        assert proof == path(index, entries)
        assert root_from_path(index, size, sha256(b"\x00" + entries[index]), proof) == mth(entries)


@pytest.mark.parametrize("new_size", [1, 2, 3, 7, 8, 9, 31, 50])
def test_consistency_proofs_match_the_rfc_definition(new_size: int) -> None:
    entries = events(new_size)
    tree = our_tree(entries)
    for old_size in range(1, new_size + 1):
        assert consistency_proof(tree, old_size, new_size) == subproof(old_size, entries, True)


def test_our_signed_checkpoint_verifies_independently(signer: NoteSigner) -> None:
    entries = events(21)
    tree = our_tree(entries)
    note = sign_checkpoint(Checkpoint(ORIGIN, 21, root(tree, 21)), [signer])
    text = open_signed_note(note, ORIGIN, public_bytes(signer))
    assert read_checkpoint(text) == (ORIGIN, 21, mth(entries))
    # The key ID in the verifier key string is the spec's key ID.
    name, key_hash, encoded = signer.verifier.vkey.split("+", 2)
    assert name == ORIGIN
    assert bytes.fromhex(key_hash) == sha256(ORIGIN.encode() + b"\n\x01" + public_bytes(signer))[:4]
    assert base64.b64decode(encoded) == b"\x01" + public_bytes(signer)


def test_the_independent_verifier_refuses_an_edited_checkpoint(signer: NoteSigner) -> None:
    note = sign_checkpoint(Checkpoint(ORIGIN, 3, root(our_tree(events(3)), 3)), [signer])
    edited = note.replace(f"{ORIGIN}\n3\n", f"{ORIGIN}\n4\n")
    with pytest.raises(AssertionError, match="bad signature"):
        open_signed_note(edited, ORIGIN, public_bytes(signer))
    other = Ed25519PrivateKey.generate().public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    with pytest.raises(AssertionError, match="no signature"):
        open_signed_note(note, ORIGIN, other)


def test_our_tlog_proof_verifies_independently(signer: NoteSigner) -> None:
    entries = events(11)
    tree = our_tree(entries)
    note = sign_checkpoint(Checkpoint(ORIGIN, 11, root(tree, 11)), [signer])
    proof_text = make_tlog_proof(6, inclusion_proof(tree, 6, 11), note)

    # c2sp.org/tlog-proof@v1: header, "index N", hashes, blank line, checkpoint verbatim.
    head, checkpoint_note = proof_text.split("\n\n", 1)
    header, index_line, *hash_lines = head.split("\n")
    assert header == "c2sp.org/tlog-proof@v1"
    assert checkpoint_note == note
    index = int(index_line.removeprefix("index "))
    audit_path = [base64.b64decode(line, validate=True) for line in hash_lines]
    origin, size, checkpoint_root = read_checkpoint(
        open_signed_note(checkpoint_note, ORIGIN, public_bytes(signer))
    )
    assert (origin, size, index) == (ORIGIN, 11, 6)
    assert root_from_path(index, size, sha256(b"\x00" + entries[6]), audit_path) == checkpoint_root
    # The same path does not place another event at that index.
    assert root_from_path(index, size, sha256(b"\x00" + entries[5]), audit_path) != checkpoint_root
