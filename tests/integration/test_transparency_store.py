"""The stored Merkle tree and signed checkpoints on both back ends, without the API.

A history is written through the REST API; the transparency log is then read from the
audit projection's stored tree levels, and checkpoints are checked against the stored
events by CheckpointAudit (what `audit verify --checkpoint` runs).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from psycopg import sql

from application.checkpoint_audit import CheckpointAudit
from application.projections.tree_levels import StoredTree
from application.transparency.checkpoints import Checkpoint, open_checkpoint
from application.transparency.leaves import event_leaf_bytes
from application.transparency.merkle import MemoryTree, leaf_hash, root
from application.transparency_log import TransparencyLog
from domain.errors import CheckpointNotFound, VerificationFailed
from infrastructure.checkpoint_store import open_checkpoint_store
from infrastructure.keyring import KeyEntry, KeyRing
from infrastructure.signing import Signer
from interfaces.bootstrap import build_service
from tests.support.tamper import History, RawEvents, raw_events, write_history

ORIGIN = "decision-ledger/test"


@pytest.fixture
def keyring() -> KeyRing:
    return KeyRing([KeyEntry(ORIGIN, Signer(Ed25519PrivateKey.generate()))])


@pytest.fixture
def history(database_url: str, signing_key_hex: str, tmp_path: Path) -> History:
    return write_history(database_url, signing_key_hex, tmp_path)


@contextmanager
def transparency(history: History, keyring: KeyRing) -> Iterator[tuple[TransparencyLog, object]]:
    service = build_service(history.settings())
    try:
        store = open_checkpoint_store(service.ledger.factory.datastore)  # type: ignore[attr-defined]
        yield TransparencyLog(service.projections, store, lambda: keyring, ORIGIN), service
    finally:
        service.close()


def audit(history: History, checkpoints: list[Checkpoint], from_position: int = 1):
    service = build_service(history.settings())
    try:
        service.projections.catch_up(
            service.projections.kind("audit").build(service.projections.live_store("audit"), service.ledger)
        )
        with service.projections.live_store("audit").cursor(commit=False) as cursor:
            tree = StoredTree(cursor, service.projections.live_tables("audit"))
            return CheckpointAudit(service.ledger.recorder, tree).verify(
                checkpoints, from_position=from_position
            )
    finally:
        service.close()


def raw_state(events: RawEvents, position: int) -> bytes:
    [(state,)] = events.execute(
        sql.SQL("SELECT state FROM {} WHERE {} = %s").format(events.events, events.position), (position,)
    )
    return bytes(state)


def signed(history: History, keyring: KeyRing) -> Checkpoint:
    with transparency(history, keyring) as (log, _):
        note = log.make_checkpoint().note
    return open_checkpoint(note, keyring.verifiers(), ORIGIN).checkpoint


def test_the_stored_tree_is_the_tree_of_the_stored_bytes(history: History, keyring: KeyRing) -> None:
    # Recompute, independently of the projection, the tree over every stored event's bytes.
    expected = MemoryTree()
    with transparency(history, keyring) as (log, service):
        for notification in service.ledger.recorder.select_notifications(start=1, limit=10_000):
            leaf = event_leaf_bytes(
                notification.id, notification.originator_id, notification.originator_version,
                notification.topic, notification.state,
            )  # fmt: skip
            expected.append(leaf_hash(leaf))
        assert log.tree_size() == expected.size == history.head
        with log.tree() as tree:
            for size in range(expected.size + 1):
                assert root(tree, size) == root(expected, size)
        # A checkpoint signs the root at the current size; asking again changes nothing.
        made = log.make_checkpoint()
        assert (made.tree_size, made.root_hash) == (expected.size, root(expected, expected.size).hex())
        assert log.make_checkpoint() == made
        assert log.latest_checkpoint() == made
        # An earlier size is signed on request and not kept; a later one does not exist.
        earlier = log.checkpoint_at(3)
        assert Checkpoint.parse(earlier.note.split("\n\n")[0] + "\n").size == 3
        assert log.checkpoints.at_size(3) is None
        with pytest.raises(CheckpointNotFound):
            log.checkpoint_at(expected.size + 1)


def test_untouched_store_matches_its_checkpoints(history: History, keyring: KeyRing) -> None:
    first = signed(history, keyring)
    report = audit(history, [first])
    assert report.checkpoints_checked == [first.size]
    assert report.events_checked == history.head


def test_an_edited_byte_is_found_at_its_position(history: History, keyring: KeyRing) -> None:
    checkpoint = signed(history, keyring)
    edited = history.positions["b"]
    with raw_events(history.database_url) as events:
        events.drop_append_only_triggers()
        before = events.state(edited)
        raw = raw_state(events, edited)
        colon = raw.index(b":") + 1
        events.set_state(edited, raw[:colon] + b" " + raw[colon:])  # one byte more, the same JSON value
        assert events.state(edited) == before
    with pytest.raises(VerificationFailed, match=f"^position {edited} "):
        audit(history, [checkpoint])


def test_a_deleted_tail_hidden_by_a_rebuild_is_found(history: History, keyring: KeyRing) -> None:
    checkpoint = signed(history, keyring)
    with raw_events(history.database_url) as events:
        events.drop_append_only_triggers()
        for position in range(history.positions["x"], history.head + 1):
            events.delete(position)
    history.rebuild_audit_log()
    with pytest.raises(VerificationFailed, match="the tail was deleted, or an older backup was restored"):
        audit(history, [checkpoint])
