"""The audit log: one record per stored event, hash-chained in notification order, and
the transparency log's Merkle tree over the same events (tree_levels.py)."""

from __future__ import annotations

from typing import Any, ClassVar

from application.audit_chain import GENESIS_CHAIN_HASH, canonical_bytes, leaf_hash, next_chain_hash
from application.ports import LedgerIndex, LoggedEvent
from application.projections.base import LedgerProjection, LogPage
from application.projections.run_proof_trees import (
    PROOF_TREE_DDL,
    PROOF_TREE_TABLES,
    ProofTreesWriter,
    batch_parts,
    is_proved_commit,
    proof_tree_index_names,
    proof_trees_as_of,
)
from application.projections.tree_levels import TREE_DDL, TREE_TABLES, TreeLevelsWriter, tree_levels_as_of
from infrastructure.view_store import ViewCursor, ViewStore

AUDIT_COLUMNS = (
    "position",
    "recorded_at",
    "run_id",
    "aggregate_id",
    "aggregate_version",
    "event_type",
    "actor",
    "attempt",
    "run_sequence",
    "summary",
    "leaf_hash",
    "chain_hash",
)


class AuditLogProjection(LedgerProjection):
    name = "audit"
    table_names: ClassVar = ("records", *TREE_TABLES, *PROOF_TREE_TABLES)
    ddl: ClassVar = (
        "CREATE TABLE IF NOT EXISTS {records} ("
        " position BIGINT PRIMARY KEY, recorded_at TEXT NOT NULL, run_id TEXT NOT NULL,"
        " aggregate_id TEXT NOT NULL, aggregate_version BIGINT NOT NULL, event_type TEXT NOT NULL,"
        " actor TEXT NOT NULL, attempt INTEGER NOT NULL, run_sequence BIGINT NOT NULL, summary TEXT NOT NULL,"
        " leaf_hash TEXT NOT NULL, chain_hash TEXT NOT NULL)",
        "CREATE INDEX IF NOT EXISTS {records_run} ON {records} (run_id, position)",
        *TREE_DDL,
        *PROOF_TREE_DDL,
    )

    def __init__(self, view: ViewStore, index: LedgerIndex) -> None:
        self._previous_chain = GENESIS_CHAIN_HASH
        self._run_sequences: dict[str, int] = {}
        self._records: list[tuple[Any, ...]] = []
        self.index_names = {
            "records_run": f'"{view.projection}_g{view.generation}_records_run"',
            **proof_tree_index_names(view.projection, view.generation),
        }
        super().__init__(view, index)
        self._tree = TreeLevelsWriter(self.t)
        self._proof_trees = ProofTreesWriter(self.t)

    def apply_page(self, page: LogPage) -> None:
        # A commit's proof trees are hashed before its part's transaction (run_proof_trees.py).
        for part in batch_parts(page.events):
            if part and is_proved_commit(part[0][0]):
                self._proof_trees.prepare(self.view, part[0][0].run_id, part[0][0].seal_position)
            super().apply_page(LogPage(list(part)))

    def _ddl_names(self) -> dict[str, str]:
        return {**self.t, **self.index_names}

    def begin_batch(self, cursor: ViewCursor, page: LogPage) -> None:
        row = cursor.execute(
            f"SELECT chain_hash FROM {self.t['records']} ORDER BY position DESC LIMIT 1"
        ).fetchone()
        self._previous_chain = row["chain_hash"] if row else GENESIS_CHAIN_HASH
        self._run_sequences = {}
        self._records = []
        self._tree.begin(cursor)
        self._proof_trees.begin()

    def end_batch(self, cursor: ViewCursor) -> None:
        self._tree.flush(cursor)
        cursor.executemany(
            f"INSERT INTO {self.t['records']} ({', '.join(AUDIT_COLUMNS)})"
            f" VALUES ({', '.join('?' * len(AUDIT_COLUMNS))})",
            self._records,
        )
        self._proof_trees.flush(cursor)

    def _next_run_sequence(self, cursor: ViewCursor, run_id: str) -> int:
        """Records are numbered within their run, so "how many as of P" is one lookup."""
        if run_id not in self._run_sequences:
            row = cursor.execute(
                f"SELECT run_sequence FROM {self.t['records']} WHERE run_id = ? ORDER BY position DESC LIMIT 1",
                (run_id,),
            ).fetchone()
            self._run_sequences[run_id] = row["run_sequence"] if row else 0
        self._run_sequences[run_id] += 1
        return self._run_sequences[run_id]

    def apply(self, cursor: ViewCursor, domain_event: Any, position: LoggedEvent) -> None:
        # The chain and the tree hash the event's bytes as stored, not a re-encoding.
        event_bytes = canonical_bytes(
            position.position,
            position.topic,
            position.originator_id,
            position.originator_version,
            position.state,
        )
        chain_hash = next_chain_hash(self._previous_chain, event_bytes)
        self._records.append(
            (
                position.position,
                position.recorded_text,
                position.run_id,
                str(domain_event.originator_id),
                domain_event.originator_version,
                type(domain_event).__qualname__,
                getattr(domain_event, "actor", ""),
                getattr(domain_event, "attempt", 0),
                self._next_run_sequence(cursor, position.run_id),
                describe(domain_event),
                leaf_hash(event_bytes),
                chain_hash,
            ),
        )
        self._previous_chain = chain_hash
        self._tree.append(position.position, position)
        if is_proved_commit(domain_event):
            self._proof_trees.committed(position.run_id, domain_event.seal_position, position.position)


def describe(domain_event: Any) -> str:
    """A short human summary of an event."""
    kind = type(domain_event).__qualname__
    data = vars(domain_event)
    match kind:
        case "Run.Opened":
            return f"run {data['run_id']} opened in lane {data['lane']}"
        case "Run.BasisAdmitted":
            return (
                f"{len(data['input_ids'])} of {data['batch_size']} inputs newly admitted"
                f" ({data['admitted_total']} in all)"
            )
        case "Run.Sealed":
            return f"attempt {data['attempt']} sealed"
        case "Run.Committed":
            return f"attempt {data['attempt']} committed at seal position {data['seal_position']}"
        case "Run.Rejected":
            codes = ", ".join(reason["code"] for reason in data["reasons"])
            return f"attempt {data['attempt']} rejected: {codes}"
        case "Run.Reopened":
            return f"reopened as attempt {data['attempt']}: {data['reason']}"
        case "Decision.Recorded":
            return f"decision for input {data['input_id']}: {data['outcome']}"
        case "Decision.Corrected":
            return f"decision corrected to {data['outcome']}: {data['reason']}"
        case "Action.Requested":
            return f"action {data['kind']} requested for input {data['input_id']}"
        case "Action.Committed":
            return "action committed" + (f" as {data['external_ref']}" if data.get("external_ref") else "")
        case "Action.Failed":
            return f"action failed: {data['error']}"
        case "Action.Waived":
            return f"action waived: {data['reason']}"
    return kind


def audit_log_as_of(t: dict[str, str], position: int) -> dict[str, tuple[str, tuple[Any, ...]]]:
    """The records as they stood at `position`: what verify compares."""
    return {
        "records": (
            f"SELECT {', '.join(AUDIT_COLUMNS)} FROM {t['records']} WHERE position <= ? ORDER BY position",
            (position,),
        ),
        **tree_levels_as_of(t, position),
        **proof_trees_as_of(t, position),
    }
