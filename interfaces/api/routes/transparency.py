"""The transparency log: signed checkpoints, consistency proofs, and tlog-proofs of a
run's seal (offered by the proof routes of runs and decisions)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from application.transparency.tlog_proofs import MEDIA_TYPE as TLOG_PROOF_MEDIA_TYPE
from interfaces.api.dependencies import PrincipalDep, ServiceDep
from interfaces.api.problems import problem_responses

router = APIRouter(tags=["transparency"])
TEXT_MEDIA_TYPE = "text/plain; charset=utf-8"
ProofFormat = Annotated[
    Literal["json", "tlog-proof"] | None,
    Query(
        description="tlog-proof: the C2SP tlog-proof of the run's seal event (as Accept: text/x-tlog-proof)"
    ),
]


class ConsistencyPublic(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    from_size: int = Field(alias="from", description="The older tree size")
    to_size: int = Field(alias="to", description="The newer tree size")
    proof: list[str] = Field(description="RFC 9162 consistency proof: base64 SHA-256 hashes, in its order")


@router.get(
    "/checkpoint",
    response_class=PlainTextResponse,
    responses={200: {"content": {"text/plain": {}}}, **problem_responses(401, 404, 422, 503)},
)
async def checkpoint(
    service: ServiceDep, principal: PrincipalDep, size: Annotated[int | None, Query(ge=0, le=2**62)] = None
) -> PlainTextResponse:
    """The latest signed checkpoint (a C2SP tlog-checkpoint signed note); with `size`, the
    checkpoint of the tree at that earlier size."""
    log = service.transparency
    made = await run_in_threadpool(log.latest_checkpoint if size is None else lambda: log.checkpoint_at(size))
    return PlainTextResponse(made.note, media_type=TEXT_MEDIA_TYPE)


@router.get(
    "/checkpoints/consistency",
    response_model=ConsistencyPublic,
    response_model_by_alias=True,
    responses=problem_responses(401, 404, 422, 503),
)
async def consistency(
    service: ServiceDep,
    principal: PrincipalDep,
    from_size: Annotated[int, Query(alias="from", ge=1, le=2**62, description="The older tree size")],
    to_size: Annotated[int, Query(alias="to", ge=1, le=2**62, description="The newer tree size")],
) -> Any:
    """An RFC 6962 consistency proof: the tree of size `to` extends the tree of size `from`."""
    proof = await run_in_threadpool(service.transparency.consistency, from_size, to_size)
    return ConsistencyPublic.model_validate({"from": from_size, "to": to_size, "proof": proof})


#: A proof route's 200, documented in both its forms (JSON, or the tlog-proof text).
PROOF_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The proof: JSON, or a C2SP tlog-proof when asked for",
        "content": {
            "application/json": {},
            TLOG_PROOF_MEDIA_TYPE: {"schema": {"type": "string"}},
        },
    }
}


def wants_tlog_proof(request: Request, format_: str | None) -> bool:
    """`?format=tlog-proof`, or an Accept header that names the tlog-proof media type."""
    if format_ is not None:
        return format_ == "tlog-proof"
    accepted = [part.split(";")[0].strip().lower() for part in request.headers.get("accept", "").split(",")]
    return TLOG_PROOF_MEDIA_TYPE in accepted


def tlog_proof_response(text: str, answered: Response) -> PlainTextResponse:
    """The tlog-proof as text, keeping the headers the read set (Ledger-As-Of-Position)."""
    response = PlainTextResponse(text, media_type=f"{TLOG_PROOF_MEDIA_TYPE}; charset=utf-8")
    for name, value in answered.headers.items():
        if name.lower().startswith("ledger-"):
            response.headers[name] = value
    return response
