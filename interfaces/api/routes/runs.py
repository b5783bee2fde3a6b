"""Runs: open, admit, close, reopen; show, list, summarise, reconcile, prove."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Path, Query, Request, Response

from domain.commands import AdmitInputs, CloseRun, OpenRun, ReopenRun
from domain.fields import RUN_ID_PATTERN
from interfaces.api.dependencies import OperatorCall, ReadCallDep, reflects
from interfaces.api.problems import problem_responses
from interfaces.api.routes.transparency import (
    PROOF_RESPONSES,
    ProofFormat,
    tlog_proof_response,
    wants_tlog_proof,
)
from interfaces.api.schemas import (
    AdmissionPublic,
    BasisCreate,
    CloseCreate,
    ClosePublic,
    ReconciliationPublic,
    ReopenCreate,
    RunCreate,
    RunId,
    RunListPublic,
    RunPublic,
    SummaryPublic,
)

router = APIRouter(prefix="/runs", tags=["runs"])
RunIdPath = Annotated[str, Path(pattern=RUN_ID_PATTERN)]
WRITE_PROBLEMS = problem_responses(400, 401, 403, 404, 409, 413, 422, 503)
READ_PROBLEMS = problem_responses(401, 404, 422, 503)


@router.post("", status_code=201, response_model=RunPublic, responses=WRITE_PROBLEMS)
async def open_run(body: RunCreate, call: OperatorCall, response: Response) -> Any:
    command = OpenRun(
        run_id=body.run_id,
        lane=body.lane,
        allow_empty=body.allow_empty,
        metadata=body.metadata,
        token=call.token,
        actor=call.actor,
    )
    return await call.run(call.service.commands.runs.open, command, response)


@router.get("", response_model=RunListPublic, responses=READ_PROBLEMS)
async def list_runs(
    call: ReadCallDep,
    response: Response,
    status: Literal["open", "sealed", "committed", "rejected"] | None = None,
    lane: Annotated[str | None, Query(max_length=64)] = None,
    after: Annotated[RunId | None, Query(description="Page after this run_id")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> Any:
    def page(position: int | None) -> Any:
        runs = call.service.read_models.list_runs(
            status=status, lane=lane, limit=limit, after=after, as_of_position=position
        )
        return reflects(response, runs)

    return await call.run(page, response)


@router.get("/{run_id}", response_model=RunPublic, responses=READ_PROBLEMS)
async def show_run(run_id: RunIdPath, call: ReadCallDep, response: Response) -> Any:
    return await call.run(
        lambda position: call.service.queries.run(run_id, as_of_position=position), response
    )


@router.post("/{run_id}/basis", response_model=AdmissionPublic, responses=WRITE_PROBLEMS)
async def admit_inputs(run_id: RunIdPath, body: BasisCreate, call: OperatorCall, response: Response) -> Any:
    command = AdmitInputs(run_id=run_id, input_ids=tuple(body.input_ids), token=call.token, actor=call.actor)
    return await call.run(call.service.commands.runs.admit, command, response)


@router.post("/{run_id}/close", response_model=ClosePublic, responses=WRITE_PROBLEMS)
async def close_run(
    run_id: RunIdPath,
    call: OperatorCall,
    response: Response,
    body: Annotated[CloseCreate | None, Body()] = None,
) -> Any:
    command = CloseRun(run_id=run_id, token=call.token, actor=call.actor)
    return await call.run(call.service.closer.close, command, response)


@router.post("/{run_id}/reopen", response_model=RunPublic, responses=WRITE_PROBLEMS)
async def reopen_run(run_id: RunIdPath, body: ReopenCreate, call: OperatorCall, response: Response) -> Any:
    command = ReopenRun(run_id=run_id, reason=body.reason, token=call.token, actor=call.actor)
    return await call.run(call.service.commands.runs.reopen, command, response)


@router.get("/{run_id}/summary", response_model=SummaryPublic, responses=READ_PROBLEMS)
async def run_summary(
    run_id: RunIdPath,
    call: ReadCallDep,
    response: Response,
    attempt: Annotated[int | None, Query(ge=1, le=2**31, description="The summary of this attempt")] = None,
) -> Any:
    def summary(position: int | None) -> Any:
        return reflects(
            response, call.service.read_models.summary(run_id, as_of_position=position, attempt=attempt)
        )

    return await call.run(summary, response)


@router.get("/{run_id}/reconciliation", response_model=ReconciliationPublic, responses=READ_PROBLEMS)
async def run_reconciliation(
    run_id: RunIdPath,
    call: ReadCallDep,
    response: Response,
    category: Literal["missing", "unexpected", "pending", "failed"] | None = None,
    after: Annotated[
        str | None, Query(max_length=256, description="Page after this ID (with category)")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> Any:
    def reconciliation(position: int | None) -> Any:
        view = call.service.read_models.reconciliation(
            run_id, as_of_position=position, limit=limit, category=category, after=after
        )
        return reflects(response, view)

    return await call.run(reconciliation, response)


@router.get("/{run_id}/proof", responses={**READ_PROBLEMS, **PROOF_RESPONSES})
async def run_proof(
    run_id: RunIdPath, call: ReadCallDep, request: Request, response: Response, format: ProofFormat = None
) -> Any:
    """The signed proof of the latest committed attempt; as a C2SP tlog-proof
    (`Accept: text/x-tlog-proof` or `?format=tlog-proof`), the inclusion of its seal event
    in the latest signed checkpoint."""
    as_tlog_proof = wants_tlog_proof(request, format)

    def proof(position: int | None) -> Any:
        latest = call.service.queries.latest_proof(run_id, as_of_position=position)
        if as_tlog_proof:
            return call.service.transparency.tlog_proof(latest["seal_position"])
        return latest

    answer = await call.run(proof, response)
    return tlog_proof_response(answer, response) if as_tlog_proof else answer
