"""Decisions: record (one or a batch), correct, show, history, inclusion proof."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Path, Query, Request, Response
from pydantic import ValidationError

from application.commands.batches import batch_fingerprint
from application.results import CommandResult
from domain import errors
from domain.commands import CorrectDecision, ModelRef, RecordDecision
from domain.fields import INPUT_ID_PATTERN, require_moment
from interfaces.api.dependencies import CommandCall, Idempotency, OperatorCall, ReadCallDep, WriterCall
from interfaces.api.problems import Problem, problem_for_error, problem_responses
from interfaces.api.routes.runs import READ_PROBLEMS, WRITE_PROBLEMS, RunIdPath
from interfaces.api.routes.transparency import (
    PROOF_RESPONSES,
    ProofFormat,
    tlog_proof_response,
    wants_tlog_proof,
)
from interfaces.api.schemas import (
    BatchItemPublic,
    BatchPublic,
    CorrectionCreate,
    DecisionBatchCreate,
    DecisionBatchItem,
    DecisionCreate,
    DecisionPublic,
    HistoryPublic,
    Moment,
)

router = APIRouter(tags=["decisions"])
InputIdPath = Annotated[str, Path(pattern=INPUT_ID_PATTERN)]
ValidAt = Annotated[
    Moment | None, Query(description="Which outcome applied at this time (valid time), with an offset")
]


def record_command(run_id: str, body: DecisionCreate, token: str, actor: str) -> RecordDecision:
    return RecordDecision(
        run_id=run_id,
        input_id=body.input_id,
        outcome=body.outcome,
        score=body.score,
        model=ModelRef(body.model.name, body.model.version),
        policy_version=body.policy_version,
        reasons=tuple(body.reasons),
        features_digest=body.features_digest,
        token=token,
        actor=actor,
    )


@router.post(
    "/runs/{run_id}/decisions", status_code=201, response_model=DecisionPublic, responses=WRITE_PROBLEMS
)
async def record_decision(
    run_id: RunIdPath, body: DecisionCreate, call: WriterCall, response: Response
) -> Any:
    # Decided on the event loop when it can be (see DecisionCommands.record_async).
    command = record_command(run_id, body, call.token, call.actor)
    return call.answer(await call.service.commands.decisions.record_async(command), response)


def _batch_item(
    run_id: str, index: int, raw: dict[str, Any], batch_key: Idempotency, actor: str
) -> RecordDecision | errors.LedgerError:
    """Validate one item on its own, so one bad item never fails its neighbours."""
    try:
        item = DecisionBatchItem.model_validate(raw)
    except ValidationError as error:
        first = error.errors()[0]
        field = ".".join(["decisions", str(index), *(str(part) for part in first["loc"])])
        return errors.InvalidCommand(f"{field}: {first['msg']}", field=field)
    try:
        return record_command(run_id, item, batch_key.item_token(item.idempotency_key, "/batch"), actor)
    except errors.LedgerError as error:
        return error


@router.post("/runs/{run_id}/decisions/batch", response_model=BatchPublic, responses=WRITE_PROBLEMS)
async def record_decision_batch(
    run_id: RunIdPath, body: DecisionBatchCreate, call: WriterCall, response: Response
) -> Any:
    return await call.run(lambda decisions: _record_batch(call, run_id, decisions), body.decisions, response)


def _record_batch(
    call: CommandCall, run_id: str, decisions: list[dict[str, Any]]
) -> CommandResult[BatchPublic]:
    items = [
        _batch_item(run_id, index, raw, call.idempotency, call.actor) for index, raw in enumerate(decisions)
    ]
    result = call.service.commands.batches.record(
        run_id, items, call.token, batch_fingerprint(run_id, decisions)
    )
    answers = [
        BatchItemPublic(
            index=index,
            status=item.status,
            decision_id=item.decision_id,
            input_id=item.input_id,
            version=item.version,
            position=item.position,
            problem=Problem.model_validate(problem_for_error(item.error))
            if isinstance(item.error, errors.LedgerError)
            else None,
        )
        for index, item in enumerate(result.view.items)
    ]
    counts = {status: result.view.count(status) for status in ("created", "replayed", "conflict", "invalid")}
    return CommandResult(BatchPublic(run_id=run_id, counts=counts, items=answers), 0, 0, result.replayed)


@router.get(
    "/runs/{run_id}/decisions/{input_id:path}", response_model=DecisionPublic, responses=READ_PROBLEMS
)
async def find_decision(
    run_id: RunIdPath, input_id: InputIdPath, call: ReadCallDep, response: Response, valid_at: ValidAt = None
) -> Any:
    def decision(position: int | None) -> Any:
        return call.service.queries.decision_for_input(
            run_id, input_id, as_of_position=position, valid_at=_aware(valid_at)
        )

    return await call.run(decision, response)


@router.get("/decisions/{decision_id}", response_model=DecisionPublic, responses=READ_PROBLEMS)
async def show_decision(
    decision_id: UUID, call: ReadCallDep, response: Response, valid_at: ValidAt = None
) -> Any:
    def decision(position: int | None) -> Any:
        return call.service.queries.decision(decision_id, as_of_position=position, valid_at=_aware(valid_at))

    return await call.run(decision, response)


@router.get("/decisions/{decision_id}/history", response_model=HistoryPublic, responses=READ_PROBLEMS)
async def decision_history(decision_id: UUID, call: ReadCallDep, response: Response) -> Any:
    def history(position: int | None) -> Any:
        events = call.service.queries.decision_history(decision_id, as_of_position=position)
        return HistoryPublic(decision_id=decision_id, events=events)  # type: ignore[arg-type]

    return await call.run(history, response)


@router.post(
    "/decisions/{decision_id}/corrections",
    status_code=201,
    response_model=DecisionPublic,
    responses=WRITE_PROBLEMS,
)
async def correct_decision(
    decision_id: UUID, body: CorrectionCreate, call: OperatorCall, response: Response
) -> Any:
    command = CorrectDecision(
        decision_id=decision_id,
        outcome=body.outcome,
        reason=body.reason,
        score=body.score,
        reasons=None if body.reasons is None else tuple(body.reasons),
        effective_at=_aware(body.effective_at, field="effective_at"),
        token=call.token,
        actor=call.actor,
    )
    return await call.run(call.service.commands.decisions.correct, command, response)


@router.get("/decisions/{decision_id}/proof", responses={**READ_PROBLEMS, **PROOF_RESPONSES}, tags=["proofs"])
async def decision_proof(
    decision_id: UUID, call: ReadCallDep, request: Request, response: Response, format: ProofFormat = None
) -> Any:
    """An inclusion proof: the decision's events as leaves of its run's committed Merkle
    tree, their audit paths, and the signed run proof they belong to. As a C2SP tlog-proof
    (`Accept: text/x-tlog-proof` or `?format=tlog-proof`): the inclusion of that run's
    seal event in the latest signed checkpoint."""
    as_tlog_proof = wants_tlog_proof(request, format)

    def proof(position: int | None) -> Any:
        inclusion = call.service.decision_proof(decision_id, as_of_position=position)
        if as_tlog_proof:
            return call.service.transparency.tlog_proof(inclusion["run_proof"]["seal_position"])
        return inclusion

    answer = await call.run(proof, response)
    return tlog_proof_response(answer, response) if as_tlog_proof else answer


def _aware(moment: datetime | None, field: str = "valid_at") -> datetime | None:
    if moment is None:
        return None
    problem = errors.InvalidQuery if field == "valid_at" else errors.InvalidCommand
    return require_moment(moment, field, error=problem)


__all__ = ["problem_responses", "router"]
