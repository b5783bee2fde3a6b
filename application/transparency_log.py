"""The ledger's transparency log: signed checkpoints of the Merkle tree over every
stored event, and the proofs that tie events and checkpoints together.

The tree is the audit projection's (application/projections/tree_levels.py), so every
answer here reads O(log n) stored nodes. Checkpoints are C2SP tlog-checkpoints signed
as C2SP signed-notes by the key ring's current key; they are kept in the database and,
when a directory is configured, written there as files for others to keep.
"""

from __future__ import annotations

import base64
import logging
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from application.checkpoint_audit import CheckpointAudit, CheckpointReport
from application.projections.tree_levels import StoredTree
from application.transparency.checkpoints import Checkpoint, sign_checkpoint
from application.transparency.leaves import event_leaf_bytes
from application.transparency.merkle import consistency_proof, inclusion_proof, root
from application.transparency.tlog_proofs import make_tlog_proof
from domain.errors import (
    CheckpointNotFound,
    NoValidSigningKey,
    ProjectionsBehind,
    ProofNotFound,
    TreeSizeInvalid,
)
from infrastructure.checkpoint_store import CheckpointStore, StoredCheckpoint

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]


class SigningKeys(Protocol):
    """The key ring, as this module needs it (infrastructure/keyring.py)."""

    def current(self, moment: datetime) -> Any: ...

    def verifiers(self) -> list[Any]: ...


class TreeSource(Protocol):
    """Where the stored tree is read: the audit projection's live generation."""

    def live_store(self, name: str) -> Any: ...

    def live_tables(self, name: str) -> dict[str, str]: ...


class TransparencyLog:
    def __init__(
        self,
        trees: TreeSource,
        checkpoints: CheckpointStore,
        keys: Callable[[], SigningKeys],
        origin: str,
        *,
        events: Any = None,
        checkpoint_dir: Path | None = None,
        clock: Clock = lambda: datetime.now(UTC),
    ) -> None:
        self.trees = trees
        self.events = events
        self.checkpoints = checkpoints
        self.keys = keys
        self.origin = origin
        self.checkpoint_dir = checkpoint_dir
        self.clock = clock
        self._making = threading.Lock()

    @contextmanager
    def tree(self) -> Iterator[StoredTree]:
        """The stored tree, read in one transaction (one consistent snapshot)."""
        with self.trees.live_store("audit").cursor(commit=False) as cursor:
            yield StoredTree(cursor, self.trees.live_tables("audit"))

    def tree_size(self) -> int:
        with self.tree() as tree:
            return tree.size()

    # --- Checkpoints -------------------------------------------------------------------

    def _signed(self, size: int, root_hash: bytes) -> StoredCheckpoint:
        key = self.keys().current(self.clock())
        note = sign_checkpoint(Checkpoint(self.origin, size, root_hash), [key.note_signer])
        return StoredCheckpoint(size, root_hash.hex(), note, key.signer.key_id, self.clock().isoformat())

    def make_checkpoint(self) -> StoredCheckpoint:
        """A checkpoint of the tree as it is now (the latest one, if the tree has not grown)."""
        with self._making:
            with self.tree() as tree:
                size = tree.size()
                latest = self.checkpoints.latest()
                if latest is not None and latest.tree_size >= size:
                    return latest
                made = self._signed(size, root(tree, size))
            if self.checkpoints.add(made):
                self._write_file(made)
                return made
            kept = self.checkpoints.at_size(size)
            assert kept is not None
            return kept

    def make_checkpoint_if_grown(self) -> StoredCheckpoint | None:
        latest = self.checkpoints.latest()
        if latest is not None and latest.tree_size >= self.tree_size():
            return None
        return self.make_checkpoint()

    def latest_checkpoint(self) -> StoredCheckpoint:
        return self.checkpoints.latest() or self.make_checkpoint()

    def checkpoint_at(self, size: int) -> StoredCheckpoint:
        """The checkpoint kept for `size`, or one signed now for that earlier size (the same
        tree: a log never signs two roots for one size); not kept, so asking stores nothing."""
        if size < 0:
            raise TreeSizeInvalid(f"a tree size cannot be negative ({size})")
        kept = self.checkpoints.at_size(size)
        if kept is not None:
            return kept
        with self.tree() as tree:
            current = tree.size()
            if size > current:
                raise CheckpointNotFound(f"{entries(current)}; there is no tree of size {size} yet")
            return self._signed(size, root(tree, size))

    def _write_file(self, checkpoint: StoredCheckpoint) -> None:
        if self.checkpoint_dir is None:
            return
        try:
            self.checkpoint_dir.mkdir(parents=True, exist_ok=True)
            path = self.checkpoint_dir / f"checkpoint-{checkpoint.tree_size:012d}"
            temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            temporary.write_text(checkpoint.note)
            os.replace(temporary, path)
        except OSError:
            # The database keeps it; the directory is a copy for others, retried next time.
            log.exception("could not write checkpoint %d to %s", checkpoint.tree_size, self.checkpoint_dir)

    # --- Proofs ---------------------------------------------------------------------------

    def consistency(self, old_size: int, new_size: int) -> list[str]:
        """RFC 9162 consistency proof between two tree sizes, base64 hashes in its order."""
        if not 0 < old_size <= new_size:
            raise TreeSizeInvalid(
                f"no consistency proof from size {old_size} to size {new_size}: it needs 0 < from <= to"
            )
        with self.tree() as tree:
            current = tree.size()
            if new_size > current:
                raise CheckpointNotFound(f"{entries(current)}; there is no tree of size {new_size} yet")
            proof = consistency_proof(tree, old_size, new_size)
        return [base64.b64encode(element).decode("ascii") for element in proof]

    def tlog_proof(self, position: int) -> str:
        """A C2SP tlog-proof that the event at `position` is in the latest checkpoint. Its
        extra data is the event's leaf bytes, so a verifier can hash the leaf itself."""
        stored = self.events.select_notifications(start=position, limit=1, stop=position)
        if not stored:
            raise ProofNotFound(f"no event is stored at position {position}")
        event = stored[0]
        leaf = event_leaf_bytes(
            event.id, event.originator_id, event.originator_version, event.topic, event.state
        )
        checkpoint = self.latest_checkpoint()
        with self.tree() as tree:
            leaf_index = tree.leaf_index_of(position)
            if leaf_index is None:
                raise ProjectionsBehind(
                    f"the event at position {position} is not in the transparency log yet"
                )
        if leaf_index >= checkpoint.tree_size:
            checkpoint = self.make_checkpoint()
        with self.tree() as tree:
            if checkpoint.tree_size > tree.size():
                raise ProjectionsBehind("the audit log's tree is behind the latest checkpoint (rebuilding?)")
            proof = inclusion_proof(tree, leaf_index, checkpoint.tree_size)
        return make_tlog_proof(leaf_index, proof, checkpoint.note, leaf)

    def audit_checkpoints(
        self, checkpoints: Sequence[Checkpoint], *, from_position: int = 1
    ) -> CheckpointReport:
        """The stored events against signed checkpoints (application/checkpoint_audit.py)."""
        with self.tree() as tree:
            return CheckpointAudit(self.events, tree).verify(checkpoints, from_position=from_position)

    def keys_listing(self) -> dict[str, Any]:
        """Every key (GET /keys), and the one signing now, if one is valid now."""
        ring = self.keys()
        try:
            current = ring.current(self.clock()).signer
        except NoValidSigningKey:
            current = None
        return {
            "algorithm": "ed25519",
            "public_key": current.public_key if current else None,
            "key_id": current.key_id if current else None,
            "keys": [entry.public() for entry in ring.entries],  # type: ignore[attr-defined]
        }


def entries(count: int) -> str:
    return f"the log has {count} {'entry' if count == 1 else 'entries'}"


class CheckpointScheduler:
    """Makes a checkpoint every `interval` seconds when the log grew."""

    def __init__(self, transparency_log: TransparencyLog, interval: float) -> None:
        self.transparency_log = transparency_log
        self.interval = interval
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="checkpoints", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join()

    def _run(self) -> None:
        while not self._stopping.wait(self.interval):
            try:
                self.transparency_log.make_checkpoint_if_grown()
            except Exception:  # the next round retries
                log.exception("could not make a checkpoint")
