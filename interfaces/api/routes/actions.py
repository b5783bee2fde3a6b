"""Actions: request, commit, fail, waive, show."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from fastapi import APIRouter, Response

from domain.commands import CommitAction, FailAction, RequestAction, WaiveAction
from interfaces.api.dependencies import (
    IdempotencyDep,
    OperatorDep,
    PrincipalDep,
    ReadPointDep,
    ServiceDep,
    WriterDep,
)
from interfaces.api.routes.runs import READ_PROBLEMS, WRITE_PROBLEMS, RunIdPath
from interfaces.api.schemas import ActionCommit, ActionCreate, ActionFail, ActionPublic, ActionWaive

router = APIRouter(tags=["actions"])


@router.post("/runs/{run_id}/actions", status_code=201, response_model=ActionPublic, responses=WRITE_PROBLEMS)
def request_action(
    run_id: RunIdPath,
    body: ActionCreate,
    service: ServiceDep,
    principal: WriterDep,
    key: IdempotencyDep,
    response: Response,
) -> Any:
    result = service.ledger.request_action(
        RequestAction(
            run_id=run_id,
            action_key=key.key,
            decision_id=body.decision_id,
            kind=body.kind,
            target=body.target,
            params=body.params,
            token=key.token(),
            actor=principal.name,
        )
    )
    key.mark(response, result.replayed)
    return result.view


@router.post("/actions/{action_id}/commit", response_model=ActionPublic, responses=WRITE_PROBLEMS)
def commit_action(
    action_id: UUID,
    body: ActionCommit,
    service: ServiceDep,
    principal: WriterDep,
    key: IdempotencyDep,
    response: Response,
) -> Any:
    result = service.ledger.commit_action(
        CommitAction(
            action_id=action_id,
            external_ref=body.external_ref,
            result=body.result,
            token=key.token(),
            actor=principal.name,
        )
    )
    key.mark(response, result.replayed)
    return result.view


@router.post("/actions/{action_id}/fail", response_model=ActionPublic, responses=WRITE_PROBLEMS)
def fail_action(
    action_id: UUID,
    body: ActionFail,
    service: ServiceDep,
    principal: WriterDep,
    key: IdempotencyDep,
    response: Response,
) -> Any:
    result = service.ledger.fail_action(
        FailAction(
            action_id=action_id,
            error=body.error,
            retryable=body.retryable,
            token=key.token(),
            actor=principal.name,
        )
    )
    key.mark(response, result.replayed)
    return result.view


@router.post("/actions/{action_id}/waive", response_model=ActionPublic, responses=WRITE_PROBLEMS)
def waive_action(
    action_id: UUID,
    body: ActionWaive,
    service: ServiceDep,
    principal: OperatorDep,
    key: IdempotencyDep,
    response: Response,
) -> Any:
    result = service.ledger.waive_action(
        WaiveAction(action_id=action_id, reason=body.reason, token=key.token(), actor=principal.name)
    )
    key.mark(response, result.replayed)
    return result.view


@router.get("/actions/{action_id}", response_model=ActionPublic, responses=READ_PROBLEMS)
def show_action(action_id: UUID, service: ServiceDep, principal: PrincipalDep, point: ReadPointDep) -> Any:
    return service.ledger.get_action(action_id, as_of_position=point.as_of_position)
