"""Actions: request, commit, fail, waive, redeliver, list, show, history."""

from __future__ import annotations

from typing import Annotated, Any, Literal
from uuid import UUID

from fastapi import APIRouter, Body, Query, Response

from domain.commands import CommitAction, FailAction, RedeliverAction, RequestAction, WaiveAction
from interfaces.api.dependencies import OperatorCall, ReadCallDep, WriterCall, reflects
from interfaces.api.routes.runs import READ_PROBLEMS, WRITE_PROBLEMS, RunIdPath
from interfaces.api.schemas import (
    ActionCommit,
    ActionCreate,
    ActionFail,
    ActionHistoryPublic,
    ActionListPublic,
    ActionPublic,
    ActionWaive,
    Label,
    RedeliverCreate,
    RunId,
)

router = APIRouter(tags=["actions"])


@router.post("/runs/{run_id}/actions", status_code=201, response_model=ActionPublic, responses=WRITE_PROBLEMS)
async def request_action(run_id: RunIdPath, body: ActionCreate, call: WriterCall, response: Response) -> Any:
    command = RequestAction(
        run_id=run_id,
        action_key=call.idempotency.key,
        decision_id=body.decision_id,
        kind=body.kind,
        target=body.target,
        params=body.params,
        token=call.token,
        actor=call.actor,
    )
    return await call.run(call.service.commands.actions.request, command, response)


@router.post("/actions/{action_id}/commit", response_model=ActionPublic, responses=WRITE_PROBLEMS)
async def commit_action(action_id: UUID, body: ActionCommit, call: WriterCall, response: Response) -> Any:
    command = CommitAction(
        action_id=action_id,
        external_ref=body.external_ref,
        result=body.result,
        token=call.token,
        actor=call.actor,
    )
    return await call.run(call.service.commands.actions.commit, command, response)


@router.post("/actions/{action_id}/fail", response_model=ActionPublic, responses=WRITE_PROBLEMS)
async def fail_action(action_id: UUID, body: ActionFail, call: WriterCall, response: Response) -> Any:
    command = FailAction(
        action_id=action_id, error=body.error, retryable=body.retryable, token=call.token, actor=call.actor
    )
    return await call.run(call.service.commands.actions.fail, command, response)


@router.post("/actions/{action_id}/waive", response_model=ActionPublic, responses=WRITE_PROBLEMS)
async def waive_action(action_id: UUID, body: ActionWaive, call: OperatorCall, response: Response) -> Any:
    command = WaiveAction(action_id=action_id, reason=body.reason, token=call.token, actor=call.actor)
    return await call.run(call.service.commands.actions.waive, command, response)


@router.post("/actions/{action_id}/redeliver", response_model=ActionPublic, responses=WRITE_PROBLEMS)
async def redeliver_action(
    action_id: UUID,
    call: OperatorCall,
    response: Response,
    body: Annotated[RedeliverCreate | None, Body()] = None,
) -> Any:
    """A fresh delivery schedule for a failed (retryable) action: same webhook-id, same body."""
    command = RedeliverAction(action_id=action_id, token=call.token, actor=call.actor)
    return await call.run(call.service.commands.actions.redeliver, command, response)


@router.get("/actions", response_model=ActionListPublic, responses=READ_PROBLEMS)
async def list_actions(
    call: ReadCallDep,
    response: Response,
    status: Literal["requested", "committed", "failed", "waived"] | None = None,
    kind: Annotated[Label | None, Query()] = None,
    run_id: Annotated[RunId | None, Query()] = None,
    after: Annotated[UUID | None, Query(description="Page after this action_id")] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> Any:
    def page(position: int | None) -> Any:
        actions = call.service.actions.list_actions(
            status=status,
            kind=kind,
            run_id=run_id,
            after=None if after is None else str(after),
            limit=limit,
            as_of_position=position,
        )
        return reflects(response, actions)

    return await call.run(page, response)


@router.get("/actions/{action_id}/history", response_model=ActionHistoryPublic, responses=READ_PROBLEMS)
async def action_history(action_id: UUID, call: ReadCallDep, response: Response) -> Any:
    def history(position: int | None) -> Any:
        events = call.service.queries.action_history(action_id, as_of_position=position)
        return ActionHistoryPublic(action_id=action_id, events=events)  # type: ignore[arg-type]

    return await call.run(history, response)


@router.get("/actions/{action_id}", response_model=ActionPublic, responses=READ_PROBLEMS)
async def show_action(action_id: UUID, call: ReadCallDep, response: Response) -> Any:
    return await call.run(
        lambda position: call.service.queries.action(action_id, as_of_position=position), response
    )
