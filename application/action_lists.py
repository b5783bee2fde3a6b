"""Listing actions: by status, kind and run, a page at a time (what an operator looks at
to find dead letters and redeliver them).

The run views hold each action's current status; a page's actions are then read from
the ledger itself, so each entry shows its deliveries as `GET /actions/{id}` does."""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

from application.ledger import DecisionLedger
from application.projections.runtime import Projections
from application.queries.aggregates import AggregateQueries
from application.queries.read_models import ReadModels
from application.results import ActionView
from domain.delivery import ActionStatus
from domain.errors import InvalidCommand
from domain.fields import require_label, validate_run_id

MAX_PAGE = 200


@dataclass(frozen=True)
class ActionListPage:
    actions: list[ActionView]
    next_after: str | None
    as_of_position: int


class ActionLists:
    def __init__(
        self,
        ledger: DecisionLedger,
        projections: Projections,
        read_models: ReadModels,
        queries: AggregateQueries,
    ) -> None:
        self.ledger = ledger
        self.projections = projections
        self.read_models = read_models
        self.queries = queries

    def list_actions(
        self,
        *,
        status: str | None = None,
        kind: str | None = None,
        run_id: str | None = None,
        limit: int = 50,
        after: str | None = None,
        as_of_position: int | None = None,
    ) -> ActionListPage:
        """Actions in ID order, now or as of a position; `after` is the last ID of the
        previous page."""
        position = self.read_models.reading_position(as_of_position)
        params: list[object] = []
        if as_of_position is None:
            where = ["valid_to IS NULL"]
        else:
            where = ["valid_from <= ?", "(valid_to IS NULL OR valid_to > ?)"]
            params = [position, position]
        if status is not None:
            if status not in set(ActionStatus):
                choices = ", ".join(sorted(ActionStatus))
                raise InvalidCommand(f"status must be one of {choices}", field="status")
            where.append("status = ?")
            params.append(status)
        if kind is not None:
            where.append("kind = ?")
            params.append(require_label(kind, "kind"))
        if run_id is not None:
            validate_run_id(run_id)
            where.append("run_id = ?")
            params.append(run_id)
        if after is not None:
            try:
                after = str(UUID(after))
            except ValueError:
                raise InvalidCommand(
                    "after must be an action ID from a previous page", field="after"
                ) from None
            where.append("action_id > ?")
            params.append(after)
        if not 1 <= limit <= MAX_PAGE:
            raise InvalidCommand(f"limit must be between 1 and {MAX_PAGE}", field="limit")
        store = self.projections.live_store("runs")
        table = self.projections.live_tables("runs")["actions"]
        rows = store.fetchall(
            f"SELECT action_id FROM {table} WHERE {' AND '.join(where)} ORDER BY action_id LIMIT ?",
            [*params, limit + 1],
        )
        # Each action as the ledger has it now (a change since the views' position shows),
        # or as it was at the position asked for.
        actions = [
            self.queries.action(UUID(row["action_id"]), as_of_position=as_of_position) for row in rows[:limit]
        ]
        next_after = actions[-1].action_id if len(rows) > limit else None
        return ActionListPage(actions, next_after, position)
