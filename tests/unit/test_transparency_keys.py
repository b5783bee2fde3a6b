"""The key ring: several signing keys with validity periods, rotation, and what verifies."""

from __future__ import annotations

import json
import os
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from application.transparency.checkpoints import Checkpoint, open_checkpoint, sign_checkpoint
from domain.errors import NoteNotVerified
from infrastructure.keyring import CurrentSigner, KeyEntry, KeyRing, KeyRingFile, NoValidSigningKey
from infrastructure.signing import Signer, SigningKeyError

ORIGIN = "decision-ledger/keys-test"
T0 = datetime(2026, 12, 1, tzinfo=UTC)


def one_key_ring() -> KeyRing:
    return KeyRing([KeyEntry(ORIGIN, Signer(Ed25519PrivateKey.generate()), T0, None)])


def checkpoint_signed_at(ring: KeyRing, moment: datetime, size: int = 5) -> str:
    signer = ring.current(moment).note_signer
    return sign_checkpoint(Checkpoint(ORIGIN, size, bytes(32)), [signer])


def test_a_rotation_retires_the_old_key_for_signing_but_not_for_verifying() -> None:
    ring = one_key_ring()
    before = checkpoint_signed_at(ring, T0 + timedelta(hours=1))
    rotated = ring.rotated(T0 + timedelta(days=1), ORIGIN)

    # Two keys now; the old one's period ends where the new one's begins.
    old, new = rotated.entries
    assert old.not_after == new.not_before == T0 + timedelta(days=1)
    assert rotated.current(T0 + timedelta(hours=2)).signer.key_id == old.signer.key_id
    assert rotated.current(T0 + timedelta(days=2)).signer.key_id == new.signer.key_id

    # A checkpoint signed by the retired key still verifies with the ring's keys.
    assert open_checkpoint(before, rotated.verifiers(), ORIGIN).verified_by == (old.verifier,)
    after = checkpoint_signed_at(rotated, T0 + timedelta(days=2), size=9)
    assert open_checkpoint(after, rotated.verifiers(), ORIGIN).verified_by == (new.verifier,)


def test_a_checkpoint_signed_by_an_unknown_key_does_not_verify() -> None:
    ring, stranger = one_key_ring(), one_key_ring()
    forged = checkpoint_signed_at(stranger, T0 + timedelta(hours=1))
    with pytest.raises(NoteNotVerified):
        open_checkpoint(forged, ring.verifiers(), ORIGIN)


def test_no_key_signs_outside_every_validity_period() -> None:
    ring = one_key_ring().rotated(T0 + timedelta(days=1), ORIGIN)
    with pytest.raises(NoValidSigningKey):
        ring.current(T0 - timedelta(seconds=1))


def test_the_ring_file_round_trips_and_is_private(tmp_path: Path) -> None:
    path = tmp_path / "ring.json"
    ring = one_key_ring().rotated(T0 + timedelta(days=1), ORIGIN)
    ring.save(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    loaded = KeyRing.load(path)
    assert [entry.public() for entry in loaded.entries] == [entry.public() for entry in ring.entries]


def test_a_running_server_sees_a_rotation_written_to_its_ring_file(tmp_path: Path) -> None:
    path = tmp_path / "ring.json"
    one_key_ring().save(path)
    keys = KeyRingFile(path)
    signer = CurrentSigner(keys)
    first = signer.key_id
    keys().rotated(datetime.now(UTC) - timedelta(seconds=1), ORIGIN).save(path)
    os.utime(path, (1, 1))  # a new mtime even within the file system's time resolution
    assert signer.key_id != first
    assert len(keys().entries) == 2


@pytest.mark.parametrize(
    "document",
    [
        "not json",
        json.dumps({"keys": []}),
        json.dumps({"keys": [{"name": ORIGIN, "private_key": "zz", "not_before": None, "not_after": None}]}),
        json.dumps({"keys": [{"name": "has space", "private_key": "00" * 32, "not_before": None, "not_after": None}]}),
        json.dumps({"keys": [{"name": ORIGIN, "private_key": "00" * 32, "not_before": "2026-01-01T00:00:00", "not_after": None}]}),
        json.dumps({"keys": [{"name": ORIGIN, "private_key": "00" * 32, "not_before": "2026-02-01T00:00:00+00:00", "not_after": "2026-01-01T00:00:00+00:00"}]}),
        json.dumps({"keys": [{"name": ORIGIN, "private_key": "00" * 32, "not_before": None, "not_after": None}] * 2}),
        json.dumps({"keys": [{"name": ORIGIN}]}),
    ],
)  # fmt: skip
def test_a_bad_ring_file_is_one_clear_error(tmp_path: Path, document: str) -> None:
    path = tmp_path / "ring.json"
    path.write_text(document)
    with pytest.raises(SigningKeyError):
        KeyRing.load(path)
