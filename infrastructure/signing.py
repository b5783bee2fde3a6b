"""The Ed25519 key that signs run proofs."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from domain.errors import InvalidCommand


class SigningKeyError(InvalidCommand):
    slug = "signing-key-invalid"


def public_key_hex(private_key: Ed25519PrivateKey) -> str:
    return private_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw).hex()


def key_id(public_key: str) -> str:
    """A short, stable name for a public key."""
    return hashlib.sha256(bytes.fromhex(public_key)).hexdigest()[:16]


class Signer:
    algorithm = "ed25519"

    def __init__(self, private_key: Ed25519PrivateKey) -> None:
        self._private_key = private_key
        self.public_key = public_key_hex(private_key)
        self.key_id = key_id(self.public_key)

    def sign(self, message: bytes) -> str:
        return self._private_key.sign(message).hex()

    def private_key_raw(self) -> bytes:
        """The 32 private key bytes: for the key ring file (0600) and signed-note signing."""
        return self._private_key.private_bytes_raw()

    def write_private_copy(self, path: Path) -> None:
        """Hand the key to worker processes of this same service: a new file readable by
        its owner only (never the environment, which other tools log and inherit)."""
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            handle.write(self._private_key.private_bytes_raw().hex())

    @classmethod
    def from_hex(cls, text: str) -> Signer:
        try:
            raw = bytes.fromhex(text.strip())
            return cls(Ed25519PrivateKey.from_private_bytes(raw))
        except ValueError:
            raise SigningKeyError(
                "the signing key must be 64 hexadecimal characters (a raw Ed25519 private key)"
            ) from None

    @classmethod
    def from_file(cls, path: Path) -> Signer:
        try:
            return cls.from_hex(path.read_text())
        except OSError as error:
            raise SigningKeyError(f"cannot read the signing key at {path}: {error.strerror}") from None

    @classmethod
    def kept_at(cls, path: Path) -> Signer:
        """The key stored at `path`, generated there (readable by its owner only) if absent."""
        if path.exists():
            return cls.from_file(path)
        signer = cls(Ed25519PrivateKey.generate())
        path.parent.mkdir(parents=True, exist_ok=True)
        signer.write_private_copy(path)
        return signer
