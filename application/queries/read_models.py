"""Queries over the projections: run summaries, reconciliation, run listings and the
audit log, current or as of any earlier position (an index lookup, not a replay)."""

from __future__ import annotations

import json
from collections.abc import Generator, Iterator
from contextlib import contextmanager
from typing import Any

from application.caching import BoundedLRU
from application.projections.run_proof_trees import StoredRunTrees, read_proof_material
from application.projections.run_tables import (
    fold_tail,
    split_summary_rows,
    summary_as_of_statement,
    tail_statement,
)
from application.projections.runtime import Projections
from application.proofs import MaterialTrees, ProofMaterial, RunTrees
from application.read_ahead import read_ahead
from application.results import (
    AuditPage,
    AuditRecordView,
    CategoryPage,
    ReconciliationView,
    RunListPage,
    RunSummaryView,
)
from domain import errors
from domain.fields import validate_run_id
from domain.run import Reconciliation, RejectionReason

#: How many IDs a reconciliation category shows before paging.
DEFAULT_SAMPLE = 100
RECONCILIATION_CATEGORIES = ("missing", "unexpected", "pending", "failed")


class ReadModels:
    """Reads the live generation of each projection."""

    def __init__(self, projections: Projections, *, wait_timeout: float = 5.0) -> None:
        self.projections = projections
        self.index = projections.app.index
        self.wait_timeout = wait_timeout
        # A committed run's material never changes.
        self._material: BoundedLRU[tuple[str, int], ProofMaterial] = BoundedLRU(32)

    # --- Consistency ---------------------------------------------------------------------

    def wait_for(self, position: int | None, timeout: float | None = None) -> None:
        """Read-your-writes: wait until the views have applied `position`."""
        if position is None or position <= 0:
            return
        target = min(position, self.index.head_position())
        failure = self.projections.failure_blocking(target)
        if failure is not None:
            raise errors.ProjectionFailed(failure.describe())
        if not self.projections.wait_for(target, self.wait_timeout if timeout is None else timeout):
            failure = self.projections.failure_blocking(target)
            if failure is not None:
                raise errors.ProjectionFailed(failure.describe())
            raise errors.ProjectionsBehind(
                f"the read models have not reached position {target} yet; retry shortly"
            )

    def reading_position(self, as_of_position: int | None) -> int:
        """The position an answer from the views reflects (for queries built elsewhere)."""
        return self._reading_position(as_of_position)

    def _reading_position(self, as_of_position: int | None) -> int:
        """The position an answer reflects: the views' own, or an earlier one asked for."""
        views_at = min(self.projections.live_store(name).position() for name in self.projections.names)
        if as_of_position is None:
            return views_at
        if as_of_position > views_at:
            self.wait_for(as_of_position)
            return min(as_of_position, self.index.head_position())
        return as_of_position

    # --- Summaries ---------------------------------------------------------------------------

    def summary(
        self, run_id: str, *, as_of_position: int | None = None, attempt: int | None = None
    ) -> RunSummaryView:
        validate_run_id(run_id)
        position = self._reading_position(as_of_position)
        tables = self.projections.live_tables("runs")
        statement = summary_as_of_statement(
            tables, self.projections.live_tables("audit")["records"], of_attempt=attempt is not None
        )
        params = [position, run_id, position, *([] if attempt is None else [attempt]), position]
        rows = self.projections.live_store("runs").fetchall(statement, params)
        if not rows:
            if as_of_position is None and attempt is None:
                raise errors.RunNotFound(f"run {run_id!r} not found")
            raise errors.NothingKnownYet(f"no summary of run {run_id!r} is known at position {position}")
        anchor, tail, last_record = split_summary_rows(rows)
        summary = self._folded(anchor, tail)
        # A summary holds until its run's next event: it counts the audit records up to
        # that event (an earlier attempt's summary must not count later records).
        audit_records = self._from_audit_record(summary, *last_record)
        return self._summary_view(summary, audit_records, position)

    def _with_tail(self, tables: dict[str, str], anchor: dict[str, Any], position: int) -> dict[str, Any]:
        """A run's summary at a position: the stored anchor in force there, and the
        decisions recorded after it up to the position (run_tables.py)."""
        up_to = position if anchor["valid_to"] is None else min(position, anchor["valid_to"] - 1)
        tail = []
        if up_to > anchor["valid_from"]:
            tail = self.projections.live_store("runs").fetchall(
                tail_statement(tables), (anchor["run_id"], anchor["valid_from"], up_to)
            )
        return self._folded(anchor, tail)

    @staticmethod
    def _folded(anchor: dict[str, Any], tail: list[dict[str, Any]]) -> dict[str, Any]:
        """An anchor with its tail folded in; its outcome counts become a dict, and
        `updated_at` is left to the audit record of its last event when the tail has one."""
        summary = dict(anchor)
        summary["outcome_counts"] = json.loads(anchor["outcome_counts"])
        fold_tail(summary, summary["outcome_counts"], tail)
        if tail:
            summary["updated_at"] = None
        return summary

    def _audit_records(self, summary: dict[str, Any], position: int) -> int:
        """How many audit records the run had at a position (one index lookup)."""
        tables = self.projections.live_tables("audit")
        rows = self.projections.live_store("audit").fetchall(
            f"SELECT run_sequence, recorded_at FROM {tables['records']} WHERE run_id = ? AND position <= ?"
            " ORDER BY position DESC LIMIT 1",
            (summary["run_id"], position),
        )
        return self._from_audit_record(
            summary, *((rows[0]["run_sequence"], rows[0]["recorded_at"]) if rows else (None, None))
        )

    @staticmethod
    def _from_audit_record(summary: dict[str, Any], run_sequence: int | None, recorded_at: str | None) -> int:
        """The run's audit records by the summary's last event; that record says when a
        summary with a tail was updated."""
        if summary["updated_at"] is None:
            if recorded_at is None:
                raise LookupError(
                    f"no audit record of run {summary['run_id']} at position {summary['last_position']}"
                )
            summary["updated_at"] = recorded_at
        return 0 if run_sequence is None else int(run_sequence)

    @staticmethod
    def _summary_view(row: dict[str, Any], audit_records: int, position: int) -> RunSummaryView:
        return RunSummaryView(
            run_id=row["run_id"],
            attempt=row["attempt"],
            status=row["status"],
            lane=row["lane"],
            allow_empty=bool(row["allow_empty"]),
            admitted_count=row["admitted_count"],
            basis_digest=row["basis_digest"],
            decision_count=row["decision_count"],
            outcome_counts=row["outcome_counts"],
            corrected_count=row["corrected_count"],
            missing_count=row["missing_count"],
            unexpected_count=row["unexpected_count"],
            actions={
                "requested": row["actions_requested"],
                "pending": row["actions_pending"],
                "committed": row["actions_committed"],
                "failed": row["actions_failed"],
                "waived": row["actions_waived"],
                "delivery_attempts": row["delivery_attempts"],
                "delivery_failures": row["delivery_failures"],
                "dead_letters": row["dead_letters"],
            },
            audit_records=audit_records,
            event_count=row["event_count"],
            first_position=row["first_position"],
            last_position=row["last_position"],
            opened_at=row["opened_at"],
            updated_at=row["updated_at"],
            as_of_position=position,
        )

    def list_runs(
        self,
        *,
        status: str | None = None,
        lane: str | None = None,
        limit: int = 50,
        after: str | None = None,
        as_of_position: int | None = None,
    ) -> RunListPage:
        position = self._reading_position(as_of_position)
        tables = self.projections.live_tables("runs")
        if as_of_position is None:
            where, params = ["valid_to IS NULL"], list[Any]()
        else:
            where = ["valid_from <= ?", "(valid_to IS NULL OR valid_to > ?)"]
            params = list[Any]([position, position])
        for column, value in (("status", status), ("lane", lane)):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        if after is not None:
            where.append("run_id > ?")
            params.append(after)
        rows = self.projections.live_store("runs").fetchall(
            f"SELECT * FROM {tables['summary']} WHERE {' AND '.join(where)} ORDER BY run_id LIMIT ?",
            [*params, limit + 1],
        )
        summaries = [self._with_tail(tables, row, position) for row in rows[:limit]]
        runs = [
            self._summary_view(summary, self._audit_records(summary, position), position)
            for summary in summaries
        ]
        next_after = runs[-1].run_id if len(rows) > limit else None
        return RunListPage(runs, next_after, position)

    # --- Reconciliation -----------------------------------------------------------------------

    def reconciliation(
        self,
        run_id: str,
        *,
        as_of_position: int | None = None,
        limit: int = DEFAULT_SAMPLE,
        category: str | None = None,
        after: str | None = None,
    ) -> ReconciliationView:
        if category is not None and category not in RECONCILIATION_CATEGORIES:
            raise errors.InvalidCommand(
                f"category must be one of {', '.join(RECONCILIATION_CATEGORIES)}", field="category"
            )
        summary = self.summary(run_id, as_of_position=as_of_position)
        position = summary.as_of_position
        counts = {
            "missing": summary.missing_count,
            "unexpected": summary.unexpected_count,
            "pending": summary.actions["pending"],
            "failed": summary.actions["failed"],
        }
        wanted = RECONCILIATION_CATEGORIES if category is None else (category,)
        categories = {}
        for name in wanted:
            # A category the summary counts as empty has no IDs to look for.
            ids = self._category_ids(run_id, name, position, limit + 1, after) if counts[name] else []
            categories[name] = CategoryPage(
                count=counts[name], ids=ids[:limit], next_after=ids[limit - 1] if len(ids) > limit else None
            )
        return ReconciliationView(run_id, position, categories)

    def _category_ids(
        self, run_id: str, category: str, position: int, limit: int, after: str | None
    ) -> list[str]:
        tables = self.projections.live_tables("runs")
        store = self.projections.live_store("runs")
        if category == "missing":  # admitted, and no decision yet
            statement = (
                f"SELECT a.input_id AS id FROM {tables['inputs']} a WHERE a.run_id = ? AND a.admitted_at <= ?"
                f" AND NOT EXISTS (SELECT 1 FROM {tables['decisions']} d WHERE d.run_id = a.run_id"
                " AND d.input_id = a.input_id AND d.valid_from <= ?)"
                " AND a.input_id > ? ORDER BY a.input_id LIMIT ?"
            )
        elif category == "unexpected":  # decided (a decision's first version), and not admitted yet
            statement = (
                f"SELECT d.input_id AS id FROM {tables['decisions']} d WHERE d.run_id = ? AND d.valid_from <= ?"
                f" AND d.corrections = 0 AND NOT EXISTS (SELECT 1 FROM {tables['inputs']} a"
                " WHERE a.run_id = d.run_id AND a.input_id = d.input_id AND a.admitted_at <= ?)"
                " AND d.input_id > ? ORDER BY d.input_id LIMIT ?"
            )
        elif category in ("pending", "failed"):
            status = "requested" if category == "pending" else "failed"
            statement = (
                f"SELECT action_id AS id FROM {tables['actions']} WHERE run_id = ? AND valid_from <= ?"
                f" AND (valid_to IS NULL OR valid_to > ?) AND status = '{status}' AND action_id > ?"
                " ORDER BY action_id LIMIT ?"
            )
        else:
            raise errors.InvalidCommand(
                f"category must be one of {', '.join(RECONCILIATION_CATEGORIES)}", field="category"
            )
        rows = store.fetchall(statement, (run_id, position, position, after or "", limit))
        return [row["id"] for row in rows]

    def evidence(self, run_id: str, seal_position: int) -> Reconciliation:
        """What the views prove about a run as of its seal: the input to its verdict."""
        summary = self.summary(run_id, as_of_position=seal_position)
        view = self.reconciliation(run_id, as_of_position=seal_position)

        def reason(code: str) -> RejectionReason:
            page = view.categories[code]
            return RejectionReason(code, page.count, page.ids)

        return Reconciliation(
            seal_position=seal_position,
            admitted_count=summary.admitted_count,
            basis_digest=summary.basis_digest,
            decision_count=summary.decision_count,
            missing=reason("missing"),
            unexpected=reason("unexpected"),
            pending=reason("pending"),
            failed=reason("failed"),
            events_expected=self.index.count_run_events(run_id, seal_position),
            audit_records=summary.audit_records,
            summary=summary.counts(),
        )

    # --- Audit log ----------------------------------------------------------------------------

    def audit(
        self,
        *,
        run_id: str | None = None,
        after: int = 0,
        limit: int = 100,
        as_of_position: int | None = None,
    ) -> AuditPage:
        position = self._reading_position(as_of_position)
        tables = self.projections.live_tables("audit")
        where, params = ["position > ?", "position <= ?"], list[Any]([after, position])
        if run_id is not None:
            where.append("run_id = ?")
            params.append(run_id)
        rows = self.projections.live_store("audit").fetchall(
            f"SELECT * FROM {tables['records']} WHERE {' AND '.join(where)} ORDER BY position LIMIT ?",
            [*params, limit + 1],
        )
        records = [AuditRecordView(**row) for row in rows[:limit]]
        return AuditPage(records, records[-1].position if len(rows) > limit else None, position)

    def proof_material(self, run_id: str, up_to: int) -> ProofMaterial:
        """A run's leaf hashes and decision heads up to a position (cached: a committed
        run's material never changes)."""
        key = (run_id, up_to)
        cached = self._material.get(key)
        if cached is not None:
            return cached
        with self.projections.live_store("audit").cursor(commit=False) as cursor:
            material = read_proof_material(cursor, self.projections.live_tables("audit"), run_id, up_to)
        self._material.put(key, material)
        return material

    @contextmanager
    def run_trees(self, run_id: str, seal_position: int, *, recompute: bool = False) -> Iterator[RunTrees]:
        """The committed attempt's trees: as stored by the audit projection, else (or with
        `recompute`) recomputed from the run's material."""
        if not recompute:
            with self.projections.live_store("audit").cursor(commit=False) as cursor:
                stored = StoredRunTrees.find(
                    cursor, self.projections.live_tables("audit"), run_id, seal_position
                )
                if stored is not None:
                    yield stored
                    return
        yield MaterialTrees(self.proof_material(run_id, seal_position))

    def audit_record_at(self, position: int) -> AuditRecordView | None:
        tables = self.projections.live_tables("audit")
        rows = self.projections.live_store("audit").fetchall(
            f"SELECT * FROM {tables['records']} WHERE position = ?", (position,)
        )
        return AuditRecordView(**rows[0]) if rows else None

    def audit_stream(
        self, after: int, up_to: int | None, page: int = 2000
    ) -> Generator[dict[str, Any], None, None]:
        """Every audit record after a position, in order; each page is read while the
        one before is used."""
        for rows in read_ahead(self._audit_pages(after, up_to, page), name="audit-pages"):
            yield from rows

    def _audit_pages(self, after: int, up_to: int | None, page: int) -> Iterator[list[dict[str, Any]]]:
        tables = self.projections.live_tables("audit")
        store = self.projections.live_store("audit")
        position = after
        while True:
            rows = store.fetchall(
                f"SELECT position, chain_hash FROM {tables['records']} WHERE position > ? AND position <= ?"
                " ORDER BY position LIMIT ?",
                (position, up_to if up_to is not None else 2**62, page),
            )
            if not rows:
                return
            yield rows
            position = rows[-1]["position"]

    def chain_hash_before(self, position: int) -> str:
        """The audit log's chain hash just before a position (genesis before the first)."""
        from application.audit_chain import GENESIS_CHAIN_HASH

        tables = self.projections.live_tables("audit")
        rows = self.projections.live_store("audit").fetchall(
            f"SELECT chain_hash FROM {tables['records']} WHERE position < ? ORDER BY position DESC LIMIT 1",
            (position,),
        )
        return rows[0]["chain_hash"] if rows else GENESIS_CHAIN_HASH
