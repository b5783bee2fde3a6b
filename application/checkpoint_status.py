"""The latest signed checkpoint, checked now: what the console's audit page shows.

The check is cheap (O(log n) stored nodes), so it runs on every look: the checkpoint's
signature is from a key of the ring and it is of this log, and the audit log's stored
tree still has the signed root at the signed size (the log only grew since). The full
check from the stored events is `decision-ledger audit verify --checkpoint ...`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from application.transparency.checkpoints import open_checkpoint
from application.transparency.merkle import root
from application.transparency_log import TransparencyLog
from domain.errors import LedgerError
from infrastructure.checkpoint_store import StoredCheckpoint


@dataclass(frozen=True)
class CheckpointCheck:
    #: The latest kept checkpoint (None: none was made yet).
    checkpoint: StoredCheckpoint | None
    #: Leaves in the audit log's tree now.
    tree_size: int
    verified: bool
    detail: str
    checked_at: datetime


def check_latest_checkpoint(log: TransparencyLog) -> CheckpointCheck:
    now = log.clock()
    latest = log.checkpoints.latest()
    with log.tree() as tree:
        size = tree.size()
        if latest is None:
            return CheckpointCheck(None, size, False, "no checkpoint has been made yet", now)
        try:
            opened = open_checkpoint(latest.note, log.keys().verifiers(), log.origin).checkpoint
        except (LedgerError, LookupError) as error:
            detail = getattr(error, "detail", None) or str(error)
            return CheckpointCheck(latest, size, False, f"its signature does not verify: {detail}", now)
        if opened.size > size:
            return CheckpointCheck(
                latest,
                size,
                False,
                f"the audit log's tree has {size} leaves but the checkpoint signs {opened.size}:"
                " the audit log is rebuilding, or events were deleted",
                now,
            )
        if root(tree, opened.size) != opened.root_hash:
            return CheckpointCheck(
                latest,
                size,
                False,
                f"the audit log's tree at size {opened.size} differs from the signed root:"
                " run decision-ledger audit verify to find where",
                now,
            )
    return CheckpointCheck(
        latest,
        size,
        True,
        f"signed by key {latest.key_id} of log {opened.origin!r}; the audit log's tree"
        f" ({size} leaves) has the signed root at size {opened.size}",
        now,
    )
