"""Checking the stored events against signed checkpoints kept elsewhere.

For each checkpoint (already opened with trusted keys), the tree recomputed from the
events as stored must have the checkpoint's root at the checkpoint's size, and each
checkpoint must be consistent with the one before it. The recomputation streams the
events once, carrying only the tree's right border, so memory stays O(log n).

Where it can, a failure names the first position that differs: the audit projection's
stored leaves are compared with the recomputed ones as they stream by, and a stored
tree whose root matches a checkpoint authenticates every stored leaf under it. When the
projection was rebuilt from already-altered events, the checkpoints still catch it, and
the report names the range between the last checkpoint that holds and the first that
does not.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any

from application.projections.tree_levels import StoredTree
from application.transparency.checkpoints import Checkpoint
from application.transparency.leaves import event_leaf_bytes
from application.transparency.merkle import NodeId, TreeAppender, consistency_proof, leaf_hash, root
from application.transparency.verify import verify_consistency
from domain.errors import ProofInvalid, VerificationFailed

Progress = Callable[[int], None]
PAGE = 2000


@dataclass
class CheckpointReport:
    events_checked: int = 0
    checkpoints_checked: list[int] = field(default_factory=list)
    last_position: int = 0


def _ordered(checkpoints: Sequence[Checkpoint]) -> list[Checkpoint]:
    """Sorted by size, one per size; two roots for one size are the log contradicting itself."""
    by_size: dict[int, Checkpoint] = {}
    for checkpoint in checkpoints:
        seen = by_size.setdefault(checkpoint.size, checkpoint)
        if seen.root_hash != checkpoint.root_hash:
            raise VerificationFailed(
                f"two signed checkpoints of size {checkpoint.size} have different roots: the log forked"
            )
    return [by_size[size] for size in sorted(by_size)]


class CheckpointAudit:
    def __init__(self, recorder: Any, tree: StoredTree) -> None:
        self.recorder = recorder
        self.tree = tree

    def _stored_events(self, after: int) -> Iterator[list[Any]]:
        position = after
        while True:
            page = self.recorder.stored_events_between(position, None, PAGE)
            if not page:
                return
            yield page
            position = page[-1].id

    def verify(
        self,
        checkpoints: Sequence[Checkpoint],
        *,
        from_position: int = 1,
        on_progress: Progress | None = None,
    ) -> CheckpointReport:
        ordered = _ordered(checkpoints)
        stored_size = self.tree.size()
        start_leaf = self.tree.size_at(from_position - 1) if from_position > 1 else 0
        report = CheckpointReport()
        # Checkpoints wholly before --from: the stored tree must carry their roots.
        pending = []
        for checkpoint in ordered:
            if checkpoint.size <= start_leaf:
                if root(self.tree, checkpoint.size) != checkpoint.root_hash:
                    raise VerificationFailed(
                        f"checkpoint of size {checkpoint.size}: the audit log's tree differs from its signed "
                        f"root before position {from_position}; check without --from to find where"
                    )
                report.checkpoints_checked.append(checkpoint.size)
            else:
                pending.append(checkpoint)
        appender = TreeAppender.resume(self.tree, start_leaf)
        last_good = (start_leaf, from_position - 1)  # (tree size, last position) known to match
        divergence: tuple[int, int] | None = None  # (leaf index, position) first unlike the stored tree
        for page in self._stored_events(from_position - 1):
            first_leaf = appender.size
            known = min(len(page), max(0, stored_size - first_leaf))
            stored_leaves = (
                self.tree.read_nodes([NodeId(0, first_leaf + offset) for offset in range(known)])
                if known
                else {}
            )
            stored_positions = self.tree.positions(first_leaf, first_leaf + known - 1) if known else []
            for offset, notification in enumerate(page):
                leaf_index = appender.size
                digest = leaf_hash(
                    event_leaf_bytes(
                        notification.id,
                        notification.originator_id,
                        notification.originator_version,
                        notification.topic,
                        notification.state,
                    )
                )
                if (
                    divergence is None
                    and offset < known
                    and (
                        stored_leaves[NodeId(0, leaf_index)] != digest
                        or stored_positions[offset] != notification.id
                    )
                ):
                    divergence = (leaf_index, min(notification.id, stored_positions[offset]))
                appender.append(digest)
                while pending and pending[0].size == appender.size:
                    checkpoint = pending.pop(0)
                    if appender.root() != checkpoint.root_hash:
                        raise VerificationFailed(
                            self._mismatch(checkpoint, notification.id, last_good, divergence)
                        )
                    report.checkpoints_checked.append(checkpoint.size)
                    last_good = (checkpoint.size, notification.id)
                report.events_checked += 1
                report.last_position = notification.id
            if on_progress:
                on_progress(len(page))
        if pending:
            missing = pending[-1]
            if divergence is not None:
                raise VerificationFailed(divergence_text(divergence).lstrip("; "))
            raise VerificationFailed(
                f"{self._first_missing(appender.size, report.last_position)}: the store holds {appender.size} "
                f"events but the signed checkpoint of size {missing.size} covers more: the tail was deleted, "
                "or an older backup was restored"
            )
        if divergence is not None:
            verified = max(report.checkpoints_checked, default=0)
            if divergence[0] < verified:
                raise VerificationFailed(divergence_text(divergence, stored_tree_altered=True).lstrip("; "))
            raise VerificationFailed(
                divergence_text(divergence).lstrip("; ") + " (after the last checkpoint)"
            )
        if stored_size > appender.size:
            raise VerificationFailed(
                f"{self._first_missing(appender.size, report.last_position)}: the audit log's tree has "
                f"{stored_size} leaves but the store only {appender.size} events: events were deleted"
            )
        self._check_consistency(ordered, stored_size)
        return report

    def _first_missing(self, leaf_index: int, last_position: int) -> str:
        """Where the store ends too early: the audit log's position for that leaf, if it has one."""
        known = self.tree.positions(leaf_index, leaf_index) if leaf_index < self.tree.size() else []
        if known:
            return f"position {known[0]} (leaf {leaf_index}) is missing"
        return f"position {last_position + 1} onwards (leaf {leaf_index} onwards) is missing"

    def _check_consistency(self, ordered: list[Checkpoint], stored_size: int) -> None:
        """Each checkpoint extends the one before it (proofs from the stored tree)."""
        sized = [checkpoint for checkpoint in ordered if 0 < checkpoint.size <= stored_size]
        for older, newer in pairwise(sized):
            try:
                verify_consistency(
                    older.size,
                    newer.size,
                    older.root_hash,
                    newer.root_hash,
                    consistency_proof(self.tree, older.size, newer.size),
                )
            except ProofInvalid as error:
                raise VerificationFailed(
                    f"the checkpoints of sizes {older.size} and {newer.size} are not consistent: {error.detail}"
                ) from None

    @staticmethod
    def _mismatch(
        checkpoint: Checkpoint, position: int, last_good: tuple[int, int], divergence: tuple[int, int] | None
    ) -> str:
        if divergence is not None and divergence[0] < checkpoint.size:
            return divergence_text(divergence).lstrip("; ") + (
                f"; the tree over the stored events differs from the signed checkpoint of size {checkpoint.size}"
            )
        good_size, good_position = last_good
        matching = (
            f", while the one of size {good_size} (up to position {good_position}) matches"
            if good_size
            else ""
        )
        return (
            f"position {good_position + 1} to {position}: the tree over the stored events up to position "
            f"{position} differs from the signed checkpoint of size {checkpoint.size}{matching}: an event in "
            "that range was edited, inserted, moved or deleted, and the audit log rebuilt from the altered events"
        )


def divergence_text(divergence: tuple[int, int], *, stored_tree_altered: bool = False) -> str:
    leaf_index, position = divergence
    if stored_tree_altered:
        return (
            f"; position {position} (leaf {leaf_index}): the audit log's stored tree differs from the stored "
            "event, which matches the signed checkpoints: the audit projection was altered; rebuild it"
        )
    return (
        f"; position {position} (leaf {leaf_index}): the stored event differs from the one the audit log's "
        "tree recorded: it was edited, inserted, moved or deleted"
    )
