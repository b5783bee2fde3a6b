"""Actions across runs, from the run views' temporal actions table: what an operator
scans for the actions still pending or failed."""

from __future__ import annotations

from dataclasses import dataclass

from application.queries.read_models import ReadModels
from domain import errors
from domain.delivery import ActionStatus

ACTION_STATUSES = tuple(status.value for status in ActionStatus)


@dataclass(frozen=True)
class ActionRow:
    action_id: str
    run_id: str
    input_id: str
    kind: str
    status: str
    position: int


@dataclass(frozen=True)
class ActionListPage:
    actions: list[ActionRow]
    next_after: str | None


def list_actions(
    read_models: ReadModels,
    *,
    status: str | None = None,
    run_id: str | None = None,
    after: str | None = None,
    limit: int = 50,
) -> ActionListPage:
    """The current state of each action, by action ID, a page at a time."""
    if status is not None and status not in ACTION_STATUSES:
        raise errors.InvalidCommand(f"status must be one of {', '.join(ACTION_STATUSES)}", field="status")
    if not 1 <= limit <= 500:
        raise errors.InvalidCommand("limit must be between 1 and 500", field="limit")
    projections = read_models.projections
    tables = projections.live_tables("runs")
    where, params = ["valid_to IS NULL", "action_id > ?"], [after or ""]
    if status is not None:
        where.append("status = ?")
        params.append(status)
    if run_id is not None:
        where.append("run_id = ?")
        params.append(run_id)
    rows = projections.live_store("runs").fetchall(
        f"SELECT action_id, run_id, input_id, kind, status, valid_from FROM {tables['actions']}"
        f" WHERE {' AND '.join(where)} ORDER BY action_id LIMIT ?",
        [*params, limit + 1],
    )
    actions = [
        ActionRow(
            row["action_id"], row["run_id"], row["input_id"], row["kind"], row["status"], row["valid_from"]
        )
        for row in rows[:limit]
    ]
    return ActionListPage(actions, actions[-1].action_id if len(rows) > limit else None)
