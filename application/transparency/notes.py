"""C2SP signed-note (c2sp.org/signed-note) with Ed25519 signatures.

A note is a text ending in a newline, a blank line, then signature lines
"— <key name> base64(key ID || signature)". The key ID is the first four bytes of
SHA-256(key name || 0x0A || 0x01 || public key). A verifier key is written as
"<name>+<key ID, 8 hex digits>+base64(0x01 || public key)", as Go's sumdb/note does.

Opening a note takes the keys the reader trusts: a signature by any other key is ignored,
a trusted key's signature that fails refuses the whole note, and a note no trusted key
signed is not verified.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from domain.errors import MalformedTransparencyText, NoteNotVerified, SignatureInvalid

ED25519_TYPE = b"\x01"
SIGNATURE_PREFIX = "\u2014 "  # em dash, space
MAX_SIGNATURES = 100
MAX_NOTE_BYTES = 1 << 20


def check_key_name(name: str) -> None:
    if not name or "+" in name or any(char.isspace() or ord(char) < 0x20 for char in name):
        raise MalformedTransparencyText(
            f"key name {name!r} must be non-empty, without spaces, plus signs or control characters"
        )


def check_note_text(text: str) -> None:
    """Valid UTF-8 (a str), ends in a newline, no control character but the newline."""
    if not text.endswith("\n"):
        raise MalformedTransparencyText("a note's text must end with a newline")
    bad = next((char for char in text if ord(char) < 0x20 and char != "\n"), None)
    if bad is not None:
        raise MalformedTransparencyText(f"a note must not contain control character {ord(bad):#04x}")


def key_id(name: str, public_key: bytes) -> bytes:
    return hashlib.sha256(name.encode("utf-8") + b"\n" + ED25519_TYPE + public_key).digest()[:4]


def _b64decode(text: str, what: str) -> bytes:
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        raise MalformedTransparencyText(f"{what} is not standard base64") from None


@dataclass(frozen=True)
class NoteVerifier:
    """A trusted Ed25519 key: its signed-note name and its 32 raw public key bytes."""

    name: str
    public_key: bytes

    def __post_init__(self) -> None:
        check_key_name(self.name)
        if len(self.public_key) != 32:
            raise MalformedTransparencyText("an Ed25519 public key is 32 bytes")

    @property
    def key_id(self) -> bytes:
        return key_id(self.name, self.public_key)

    @property
    def vkey(self) -> str:
        encoded = base64.b64encode(ED25519_TYPE + self.public_key).decode("ascii")
        return f"{self.name}+{self.key_id.hex()}+{encoded}"

    @classmethod
    def from_vkey(cls, vkey: str) -> NoteVerifier:
        parts = vkey.strip().split("+", 2)  # the base64 key may hold a "+" itself
        if len(parts) != 3:
            raise MalformedTransparencyText("a verifier key is <name>+<8 hex digits>+<base64 key>")
        name, hex_id, encoded = parts
        check_key_name(name)
        if len(hex_id) != 8 or any(char not in "0123456789abcdef" for char in hex_id):
            raise MalformedTransparencyText("a verifier key's ID is 8 lowercase hexadecimal digits")
        key = _b64decode(encoded, "the verifier key's key")
        if key[:1] != ED25519_TYPE or len(key) != 33:
            raise MalformedTransparencyText("the verifier key is not an Ed25519 key (type 0x01, 32 bytes)")
        verifier = cls(name, key[1:])
        if verifier.key_id.hex() != hex_id:
            raise MalformedTransparencyText("the verifier key's ID does not match its name and key")
        return verifier

    def verifies(self, text: bytes, signature: bytes) -> bool:
        try:
            Ed25519PublicKey.from_public_bytes(self.public_key).verify(signature, text)
        except InvalidSignature:
            return False
        return True


class NoteSigner:
    """An Ed25519 private key under a signed-note key name."""

    def __init__(self, name: str, private_key: Ed25519PrivateKey) -> None:
        public_key = private_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        self.verifier = NoteVerifier(name, public_key)
        self._private_key = private_key

    @property
    def name(self) -> str:
        return self.verifier.name

    def signature_line(self, text: str) -> str:
        signature = self._private_key.sign(text.encode("utf-8"))
        encoded = base64.b64encode(self.verifier.key_id + signature).decode("ascii")
        return f"{SIGNATURE_PREFIX}{self.name} {encoded}\n"


def sign_note(text: str, signers: Sequence[NoteSigner]) -> str:
    check_note_text(text)
    if not signers:
        raise ValueError("a note needs at least one signature")
    return text + "\n" + "".join(signer.signature_line(text) for signer in signers)


@dataclass(frozen=True)
class NoteSignature:
    name: str
    key_id: bytes
    signature: bytes


@dataclass(frozen=True)
class OpenedNote:
    """A note whose text a trusted key vouches for."""

    text: str
    verified_by: tuple[NoteVerifier, ...]
    signatures: tuple[NoteSignature, ...]


def split_note(note: str | bytes) -> tuple[str, tuple[NoteSignature, ...]]:
    """The text and the signatures of a note, syntax checked, nothing verified."""
    if isinstance(note, str):
        try:
            note = note.encode("utf-8")
        except UnicodeEncodeError:
            raise MalformedTransparencyText("a note must be valid UTF-8") from None
    if len(note) > MAX_NOTE_BYTES:
        raise MalformedTransparencyText(f"a note is at most {MAX_NOTE_BYTES} bytes")
    try:
        note = note.decode("utf-8")
    except UnicodeDecodeError:
        raise MalformedTransparencyText("a note must be valid UTF-8") from None
    check_note_text(note)
    separator = note.rfind("\n\n")
    if separator < 0:
        raise MalformedTransparencyText("a note has no blank line before its signatures")
    text, block = note[: separator + 1], note[separator + 2 :]
    lines = block.split("\n")[:-1]
    if not lines:
        raise MalformedTransparencyText("a note has no signature lines")
    if len(lines) > MAX_SIGNATURES:
        raise MalformedTransparencyText(f"a note carries at most {MAX_SIGNATURES} signatures")
    signatures = []
    for line in lines:
        if not line.startswith(SIGNATURE_PREFIX):
            raise MalformedTransparencyText("a signature line starts with an em dash and a space")
        name, _, encoded = line[len(SIGNATURE_PREFIX) :].partition(" ")
        check_key_name(name)
        raw = _b64decode(encoded, f"the signature by {name}")
        if len(raw) < 5:
            raise MalformedTransparencyText(f"the signature by {name} is too short")
        signatures.append(NoteSignature(name, raw[:4], raw[4:]))
    return text, tuple(signatures)


def open_note(note: str | bytes, trusted: Iterable[NoteVerifier]) -> OpenedNote:
    """The note's text, if a trusted key signed it; raises otherwise."""
    text, signatures = split_note(note)
    by_identity = {(verifier.name, verifier.key_id): verifier for verifier in trusted}
    verified: list[NoteVerifier] = []
    for signature in signatures:
        verifier = by_identity.get((signature.name, signature.key_id))
        if verifier is None or verifier in verified:
            continue  # unknown keys prove nothing; a second signature by one key adds nothing
        if not verifier.verifies(text.encode("utf-8"), signature.signature):
            raise SignatureInvalid(
                f"the signature by trusted key {verifier.name}+{verifier.key_id.hex()} does not verify"
            )
        verified.append(verifier)
    if not verified:
        names = ", ".join(f"{s.name}+{s.key_id.hex()}" for s in signatures)
        raise NoteNotVerified(f"no trusted key signed this note (it is signed by {names})")
    return OpenedNote(text, tuple(verified), signatures)
