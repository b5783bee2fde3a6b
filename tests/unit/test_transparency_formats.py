"""Signed notes, checkpoints and tlog-proofs: what is accepted, and every way to be refused."""

from __future__ import annotations

import base64
import uuid

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from application.transparency.checkpoints import Checkpoint, open_checkpoint, sign_checkpoint
from application.transparency.leaves import EventLeaf, event_leaf_bytes, parse_event_leaf
from application.transparency.merkle import MemoryTree, inclusion_proof, leaf_hash, root
from application.transparency.notes import NoteSigner, NoteVerifier, open_note, sign_note
from application.transparency.tlog_proofs import TlogProof, make_tlog_proof
from domain.errors import MalformedTransparencyText, NoteNotVerified, ProofInvalid, SignatureInvalid

# The example of golang.org/x/mod/sumdb/note's package documentation: a signer key, its
# verifier key, a text and the note Go's note.Sign makes of it. Ed25519 is deterministic,
# so the same key and text must give the same bytes here.
GO_SIGNER_KEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
GO_VERIFIER_KEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
GO_TEXT = (
    "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n"
)
GO_NOTE = (
    GO_TEXT
    + "\n\u2014 PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"
)


def go_signer() -> NoteSigner:
    _, _, name, _, encoded = GO_SIGNER_KEY.split("+", 4)
    seed = base64.b64decode(encoded)
    assert seed[0] == 1
    return NoteSigner(name, Ed25519PrivateKey.from_private_bytes(seed[1:]))


def new_signer(name: str = "example.com/log") -> NoteSigner:
    return NoteSigner(name, Ed25519PrivateKey.generate())


# --- signed notes ------------------------------------------------------------------------


def test_we_sign_the_go_example_byte_for_byte() -> None:
    signer = go_signer()
    assert signer.verifier.vkey == GO_VERIFIER_KEY
    assert sign_note(GO_TEXT, [signer]) == GO_NOTE


def test_we_open_the_go_example_with_its_verifier_key() -> None:
    verifier = NoteVerifier.from_vkey(GO_VERIFIER_KEY)
    opened = open_note(GO_NOTE, [verifier])
    assert opened.text == GO_TEXT
    assert opened.verified_by == (verifier,)


def test_an_unknown_key_does_not_verify_and_is_ignored_beside_a_known_one() -> None:
    known, stranger = new_signer(), new_signer("stranger.example")
    note = sign_note("hello\n", [stranger])
    with pytest.raises(NoteNotVerified):
        open_note(note, [known.verifier])
    # Same name, other key: still unknown (the key ID differs).
    impostor = new_signer("example.com/log")
    with pytest.raises(NoteNotVerified):
        open_note(sign_note("hello\n", [impostor]), [known.verifier])
    # A known key's signature beside the stranger's verifies.
    both = sign_note("hello\n", [stranger, known])
    assert open_note(both, [known.verifier]).verified_by == (known.verifier,)


def test_a_failing_signature_by_a_trusted_key_refuses_the_whole_note() -> None:
    signer, other = new_signer(), new_signer("other.example")
    note = sign_note("tree 1\n", [other, signer])
    with pytest.raises(SignatureInvalid):
        open_note(note.replace("tree 1", "tree 2"), [signer.verifier, other.verifier])
    # The trusted signature line moved onto another text.
    signature_line = note.splitlines(keepends=True)[-1]
    with pytest.raises(SignatureInvalid):
        open_note("tree 2\n\n" + signature_line, [signer.verifier])


@pytest.mark.parametrize(
    "note",
    [
        "no blank line\n\u2014 example.com/log AAAAAAA=\n",
        "text\n\n",  # no signature lines
        "text\n\n- example.com/log AAAAAAAA\n",  # a hyphen, not an em dash
        "text\n\n\u2014 example.com/log not*base64\n",
        "text\n\n\u2014 example.com/log AAAA\n",  # 3 bytes: shorter than a key ID
        "text\n\n\u2014 bad+name AAAAAAAA\n",
        "text\n\n\u2014  AAAAAAAA\n",  # empty key name
        "te\x07xt\n\n\u2014 example.com/log AAAAAAAA\n",  # a control character
        "text\n\n\u2014 example.com/log AAAAAAAA",  # no final newline
        "text\n\n" + "\u2014 example.com/log AAAAAAAA\n" * 101,  # too many signatures
    ],
)
def test_malformed_notes_are_refused(note: str) -> None:
    with pytest.raises(MalformedTransparencyText):
        open_note(note, [new_signer().verifier])


def test_a_note_that_is_not_utf8_is_refused() -> None:
    with pytest.raises(MalformedTransparencyText, match="UTF-8"):
        open_note(b"\xff\xfe\n\n\xe2\x80\x94 a AAAAAAAA\n", [new_signer().verifier])


def test_a_verifier_key_whose_base64_holds_a_plus_round_trips() -> None:
    # A verifier key of transparency-dev/formats' tests (note/note_cosigv1_test.go).
    plus_key = "TEST+7997405c+AQcC+FTVKf0jlTdHDY3rbevmnKxxPjigCXlVtGe6RIr6"
    assert NoteVerifier.from_vkey(plus_key).vkey == plus_key


@pytest.mark.parametrize(
    "vkey",
    [
        "PeterNeumann+c74f20a4+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",  # wrong key ID
        "PeterNeumann+C74F20A3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",  # upper-case ID
        "PeterNeumann+c74f20a3+AhpcZ2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10T",  # type 0x02
        "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy",  # too short
        "PeterNeumann+c74f20a3",
        "Peter Neumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
        "",
    ],
)
def test_malformed_verifier_keys_are_refused(vkey: str) -> None:
    with pytest.raises(MalformedTransparencyText):
        NoteVerifier.from_vkey(vkey)


def test_a_text_we_cannot_sign_is_refused() -> None:
    with pytest.raises(MalformedTransparencyText):
        sign_note("no final newline", [new_signer()])
    with pytest.raises(MalformedTransparencyText):
        NoteSigner("has space", Ed25519PrivateKey.generate())


# --- checkpoints ---------------------------------------------------------------------------


def test_a_checkpoint_round_trips_through_its_text() -> None:
    checkpoint = Checkpoint("example.com/log", 20852163, bytes(range(32)), ("ext one",))
    assert checkpoint.text() == (
        "example.com/log\n20852163\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\next one\n"
    )
    assert Checkpoint.parse(checkpoint.text()) == checkpoint


def test_a_signed_checkpoint_opens_only_for_its_origin_and_key() -> None:
    signer = new_signer("example.com/log")
    note = sign_checkpoint(Checkpoint("example.com/log", 0, bytes(32)), [signer])
    assert open_checkpoint(note, [signer.verifier], "example.com/log").checkpoint.size == 0
    with pytest.raises(NoteNotVerified, match=r"not 'example\.com/other'"):
        open_checkpoint(note, [signer.verifier], "example.com/other")
    with pytest.raises(NoteNotVerified):
        open_checkpoint(note, [new_signer("example.com/log").verifier])


@pytest.mark.parametrize(
    "text",
    [
        "example.com/log\n7\n",  # no root
        "example.com/log\n07\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n",  # leading zero
        "example.com/log\n-7\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n",
        "example.com/log\n\u0667\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n",  # an Arabic-Indic 7
        "example.com/log\n7\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHg==\n",  # 31 bytes
        "example.com/log\n7\nnot base64!\n",
        "\n7\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n",  # empty origin
        "example.com/log\n7\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n\nafter blank\n",
        "example.com/log\n7\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",  # no final newline
    ],
)
def test_malformed_checkpoints_are_refused(text: str) -> None:
    with pytest.raises(MalformedTransparencyText):
        Checkpoint.parse(text)


# --- tlog-proofs ------------------------------------------------------------------------------


def proof_fixture() -> tuple[NoteSigner, MemoryTree, str]:
    signer, tree = new_signer("example.com/log"), MemoryTree()
    for number in range(10):
        tree.append(leaf_hash(b"entry %d" % number))
    note = sign_checkpoint(Checkpoint("example.com/log", 10, root(tree, 10)), [signer])
    return signer, tree, note


def test_a_tlog_proof_round_trips_and_verifies() -> None:
    signer, tree, note = proof_fixture()
    text = make_tlog_proof(3, inclusion_proof(tree, 3, 10), note, extra=b"seal of run-1")
    parsed = TlogProof.parse(text)
    assert parsed.text() == text
    assert parsed.extra == b"seal of run-1"
    verified = parsed.verify(leaf_hash(b"entry 3"), [signer.verifier], "example.com/log")
    assert verified.checkpoint.size == 10


def test_a_tlog_proof_for_another_entry_or_key_fails() -> None:
    signer, tree, note = proof_fixture()
    proof = TlogProof.parse(make_tlog_proof(3, inclusion_proof(tree, 3, 10), note))
    with pytest.raises(ProofInvalid):
        proof.verify(leaf_hash(b"entry 4"), [signer.verifier])
    with pytest.raises(NoteNotVerified):
        proof.verify(leaf_hash(b"entry 3"), [new_signer().verifier])


@pytest.mark.parametrize(
    "text",
    [
        "c2sp.org/tlog-proof@v2\nindex 0\n\n",
        "c2sp.org/tlog-proof@v1\n\n",  # no index line
        "c2sp.org/tlog-proof@v1\nindex 01\n\n",
        "c2sp.org/tlog-proof@v1\nindex 1\nnot base64!\n\n",
        "c2sp.org/tlog-proof@v1\nextra ***\nindex 1\n\n",
        "c2sp.org/tlog-proof@v1\nindex 1",  # no checkpoint
    ],
)
def test_malformed_tlog_proofs_are_refused(text: str) -> None:
    with pytest.raises(MalformedTransparencyText):
        TlogProof.parse(text)


# --- event leaves ---------------------------------------------------------------------------


def test_an_event_leaf_parses_back_into_its_fields() -> None:
    aggregate = uuid.uuid4()
    leaf = event_leaf_bytes(42, aggregate, 3, "domain.run:Run.Sealed", b'{"attempt": 1}')
    assert parse_event_leaf(leaf) == EventLeaf(
        42, str(aggregate), 3, "domain.run:Run.Sealed", b'{"attempt": 1}'
    )


@pytest.mark.parametrize("cut", [1, 5, 20])
def test_truncated_or_padded_leaves_are_refused(cut: int) -> None:
    leaf = event_leaf_bytes(42, uuid.uuid4(), 3, "domain.run:Run.Sealed", b"{}")
    for damaged in (leaf[:-cut], leaf + b"\x00" * cut):
        with pytest.raises(MalformedTransparencyText):
            parse_event_leaf(damaged)
