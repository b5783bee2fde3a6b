"""The signing keys: several Ed25519 keys, each with a signed-note name and a validity
period. One signs at a time (the newest valid one); every key, retired or not, stays
listed so what it signed can still be verified.

A key ring file is JSON, readable by its owner only:

    {"keys": [{"name": "decision-ledger/ledger", "private_key": "<64 hex>",
               "not_before": "2026-12-01T00:00:00+00:00", "not_after": null}, ...]}
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from application.transparency.notes import NoteSigner, NoteVerifier, check_key_name
from domain.errors import LedgerError, NoValidSigningKey
from infrastructure.signing import Signer, SigningKeyError


@dataclass(frozen=True)
class KeyEntry:
    name: str
    signer: Signer
    not_before: datetime | None = None
    not_after: datetime | None = None

    def __post_init__(self) -> None:
        try:
            check_key_name(self.name)
        except LedgerError as error:
            raise SigningKeyError(error.detail) from None
        for moment in (self.not_before, self.not_after):
            if moment is not None and moment.utcoffset() is None:
                raise SigningKeyError("a key's validity times need a UTC offset")
        if self.not_before and self.not_after and self.not_after < self.not_before:
            raise SigningKeyError(f"key {self.signer.key_id} is retired before it becomes valid")

    @property
    def note_signer(self) -> NoteSigner:
        private_key = Ed25519PrivateKey.from_private_bytes(self.signer.private_key_raw())
        return NoteSigner(self.name, private_key)

    @property
    def verifier(self) -> NoteVerifier:
        return NoteVerifier(self.name, bytes.fromhex(self.signer.public_key))

    def valid_at(self, moment: datetime) -> bool:
        return (self.not_before is None or self.not_before <= moment) and (
            self.not_after is None or moment < self.not_after
        )

    def public(self) -> dict[str, Any]:
        """What GET /keys shows of it."""
        return {
            "key_id": self.signer.key_id,
            "name": self.name,
            "public_key": self.signer.public_key,
            "vkey": self.verifier.vkey,
            "not_before": self.not_before.isoformat() if self.not_before else None,
            "not_after": self.not_after.isoformat() if self.not_after else None,
        }


class KeyRing:
    def __init__(self, entries: list[KeyEntry]) -> None:
        if not entries:
            raise SigningKeyError("a key ring holds at least one key")
        key_ids = [entry.signer.key_id for entry in entries]
        if len(set(key_ids)) != len(key_ids):
            raise SigningKeyError("a key ring holds each key once")
        self.entries = entries

    def current(self, moment: datetime) -> KeyEntry:
        """The key that signs at `moment`: the valid one that became valid last."""
        valid = [entry for entry in self.entries if entry.valid_at(moment)]
        if not valid:
            raise NoValidSigningKey(f"no signing key is valid at {moment.isoformat()}: rotate one in")
        return max(valid, key=lambda entry: entry.not_before or datetime.min.replace(tzinfo=moment.tzinfo))

    def verifiers(self) -> list[NoteVerifier]:
        return [entry.verifier for entry in self.entries]

    def rotated(self, moment: datetime, name: str) -> KeyRing:
        """A new key valid from `moment`; every key valid then is retired at `moment`."""
        retired = [
            KeyEntry(entry.name, entry.signer, entry.not_before, moment) if entry.valid_at(moment) else entry
            for entry in self.entries
        ]
        return KeyRing([*retired, KeyEntry(name, Signer(Ed25519PrivateKey.generate()), moment, None)])

    # --- The file -------------------------------------------------------------------------

    @classmethod
    def load(cls, path: Path) -> KeyRing:
        try:
            document = json.loads(path.read_text())
        except OSError as error:
            raise SigningKeyError(f"cannot read the key ring at {path}: {error.strerror}") from None
        except ValueError:
            raise SigningKeyError(f"the key ring at {path} is not JSON") from None
        try:
            return cls([_entry(item) for item in document["keys"]])
        except (KeyError, TypeError, ValueError):
            raise SigningKeyError(
                f"the key ring at {path} is not {{'keys': [{{name, private_key, not_before, not_after}}]}}"
            ) from None

    def save(self, path: Path) -> None:
        """Writes the ring readable by its owner only, replacing the file in one step."""
        document = {
            "keys": [
                {
                    "name": entry.name,
                    "private_key": entry.signer.private_key_raw().hex(),
                    "not_before": entry.not_before.isoformat() if entry.not_before else None,
                    "not_after": entry.not_after.isoformat() if entry.not_after else None,
                }
                for entry in self.entries
            ]
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            handle.write(json.dumps(document, indent=2) + "\n")
        os.replace(temporary, path)


def _entry(item: dict[str, Any]) -> KeyEntry:
    def moment(value: Any) -> datetime | None:
        return None if value is None else datetime.fromisoformat(value)

    return KeyEntry(
        str(item["name"]),
        Signer.from_hex(str(item["private_key"])),
        moment(item["not_before"]),
        moment(item["not_after"]),
    )


class KeyRingFile:
    """A key ring file, read again whenever it changes (so a rotation reaches a running server)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._seen: tuple[float, int] | None = None
        self._ring: KeyRing | None = None

    def __call__(self) -> KeyRing:
        try:
            stat = self.path.stat()
        except OSError as error:
            raise SigningKeyError(f"cannot read the key ring at {self.path}: {error.strerror}") from None
        if self._ring is None or self._seen != (stat.st_mtime, stat.st_size):
            self._ring = KeyRing.load(self.path)
            self._seen = (stat.st_mtime, stat.st_size)
        return self._ring


class CurrentSigner:
    """The run-proof signer (application/proofs.py SigningKey): the ring's current key."""

    algorithm = "ed25519"

    def __init__(self, keys: Callable[[], KeyRing]) -> None:
        self.keys = keys

    def _current(self) -> Signer:
        return self.keys().current(datetime.now(UTC)).signer

    @property
    def public_key(self) -> str:
        return self._current().public_key

    @property
    def key_id(self) -> str:
        return self._current().key_id

    def sign(self, message: bytes) -> str:
        return self._current().sign(message)
