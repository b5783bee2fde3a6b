"""Actions: request, commit, fail, waive, show."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from fastapi import APIRouter, Response

from domain.commands import CommitAction, FailAction, RequestAction, WaiveAction
from interfaces.api.dependencies import OperatorCall, ReadCallDep, WriterCall
from interfaces.api.routes.runs import READ_PROBLEMS, WRITE_PROBLEMS, RunIdPath
from interfaces.api.schemas import ActionCommit, ActionCreate, ActionFail, ActionPublic, ActionWaive

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


@router.get("/actions/{action_id}", response_model=ActionPublic, responses=READ_PROBLEMS)
async def show_action(action_id: UUID, call: ReadCallDep, response: Response) -> Any:
    return await call.run(
        lambda position: call.service.queries.action(action_id, as_of_position=position), response
    )
