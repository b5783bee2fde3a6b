"""The keys a verify command trusts: pinned with --public-key, or listed in a trusted key
file (--trusted-keys). Without one, a signature only proves that *some* key signed, so
every verify command refuses to run (fails closed).

--public-key takes 64 hex characters (a raw Ed25519 public key), a signed-note verifier
key (name+id+base64), or a file holding either. A trusted key file is the body of
GET /keys (JSON), or text with one key a line in either form (# starts a comment).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from application.transparency.notes import NoteVerifier, split_note
from domain.errors import InvalidCommand, LedgerError, VerificationFailed

#: Fail closed: a valid signature by a key nobody trusted proves nothing about its origin.
NO_TRUST = (
    "the signer is not trusted: pin its public key with --public-key KEY or --trusted-keys FILE (GET /keys)"
)


class TrustedKeysInvalid(InvalidCommand):
    slug = "trusted-keys-invalid"


class NoTrustedKeys(TrustedKeysInvalid):
    """Nothing to trust was given: verification cannot mean anything."""


def key_id_of(public_key_hex: str) -> str:
    """The key ID run proofs carry (infrastructure/signing.py)."""
    return hashlib.sha256(bytes.fromhex(public_key_hex)).hexdigest()[:16]


@dataclass
class TrustedKeys:
    #: Raw public keys (hex) whose signed-note name is not known: trusted under any name.
    raw_keys: list[str] = field(default_factory=list)
    verifiers: list[NoteVerifier] = field(default_factory=list)

    @property
    def public_keys(self) -> set[str]:
        return {*self.raw_keys, *(verifier.public_key.hex() for verifier in self.verifiers)}

    def for_note(self, note: str | bytes) -> list[NoteVerifier]:
        """Verifiers for a note: the named keys, and each raw key under the names it bears."""
        names = {signature.name for signature in split_note(note)[1]}
        pinned = [NoteVerifier(name, bytes.fromhex(key)) for key in self.raw_keys for name in names]
        return [*self.verifiers, *pinned]

    def run_proof_key(self, proof: Any) -> str:
        """The trusted key a run proof was signed with, its key_id checked; raises otherwise."""
        signature = proof.get("signature") if isinstance(proof, dict) else None
        public_key = str(signature.get("public_key", "")).lower() if isinstance(signature, dict) else ""
        if public_key not in self.public_keys:
            raise VerificationFailed(
                f"wrong key: the proof is signed by public key {public_key[:16]}..., which is not a trusted key"
            )
        if proof.get("key_id") != key_id_of(public_key):
            raise VerificationFailed(
                f"the proof's key_id {proof.get('key_id')!r} does not name the key that signed it"
            )
        return public_key


def _parse_key(text: str, where: str) -> tuple[str | None, NoteVerifier | None]:
    text = text.strip()
    if "+" in text:
        try:
            return None, NoteVerifier.from_vkey(text)
        except LedgerError as error:
            raise TrustedKeysInvalid(f"{where}: {error.detail}") from None
    try:
        if len(bytes.fromhex(text)) == 32:
            return text.lower(), None
    except ValueError:
        pass
    raise TrustedKeysInvalid(f"{where}: a key is 64 hex characters or a verifier key name+id+base64")


def _add(trusted: TrustedKeys, text: str, where: str) -> None:
    raw, verifier = _parse_key(text, where)
    if raw is not None:
        trusted.raw_keys.append(raw)
    if verifier is not None:
        trusted.verifiers.append(verifier)


def _read_file(path: Path) -> str:
    try:
        return path.read_text()
    except (OSError, UnicodeDecodeError) as error:
        raise TrustedKeysInvalid(f"cannot read {path}: {getattr(error, 'strerror', None) or error}") from None


def trusted_keys(public_keys: Sequence[str], trusted_key_files: Sequence[Path]) -> TrustedKeys:
    """The keys given on the command line; raises if none are (fail closed)."""
    if not public_keys and not trusted_key_files:
        raise NoTrustedKeys(NO_TRUST)
    trusted = TrustedKeys()
    for given in public_keys:
        candidate = Path(given)
        text = _read_file(candidate) if candidate.is_file() else given
        _add(trusted, text, "--public-key")
    for path in trusted_key_files:
        text = _read_file(path)
        try:
            document = json.loads(text)
        except ValueError:
            document = None
        if isinstance(document, dict):
            entries = document.get("keys")
            if not isinstance(entries, list) or not entries:
                raise TrustedKeysInvalid(f"{path}: a JSON trusted key file is GET /keys: {{'keys': [...]}}")
            for entry in entries:
                if not isinstance(entry, dict) or not isinstance(entry.get("vkey"), str):
                    raise TrustedKeysInvalid(f"{path}: each key needs its 'vkey'")
                _add(trusted, entry["vkey"], str(path))
            continue
        lines = [line.split("#", 1)[0].strip() for line in text.splitlines()]
        keys = [line for line in lines if line]
        if not keys:
            raise TrustedKeysInvalid(f"{path} holds no key")
        for number, line in enumerate(keys, start=1):
            _add(trusted, line, f"{path}, key {number}")
    return trusted
