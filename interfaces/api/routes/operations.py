"""Liveness, readiness, metrics, the audit log, the proof key and problem types."""

from __future__ import annotations

import logging
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from application.redaction import redacted
from interfaces.api.dependencies import ReadCallDep, ServiceDep, reflects
from interfaces.api.follower_schemas import FollowerPublic
from interfaces.api.problems import PROBLEM_TYPE_PREFIX, HttpProblem, title_for
from interfaces.api.routes.runs import READ_PROBLEMS
from interfaces.api.schemas import AuditPagePublic, HealthPublic, KeysPublic, RunId

router = APIRouter(tags=["operations"])
log = logging.getLogger(__name__)


@router.get("/healthz", response_model=HealthPublic)
def liveness() -> Any:
    return HealthPublic(status="ok")


@router.get("/readyz", response_model=HealthPublic, responses={503: {"model": HealthPublic}})
def readiness(service: ServiceDep, request: Request) -> Any:
    try:
        readiness = service.readiness()
        if not readiness.ready:
            failures = [
                # The error's kind only: its text may quote data (`projections status` shows it).
                {
                    "projection": failure.name,
                    "position": failure.position,
                    "error": failure.error.split(":")[0],
                }
                for failure in readiness.failures
            ]
            body = HealthPublic(status="unavailable", detail={"failed_projections": failures})
            return JSONResponse(body.model_dump(), status_code=503)
    except Exception as error:  # readiness reports any database failure, never raises
        reason = redacted(str(error).splitlines()[0] if str(error) else type(error).__name__)
        log.warning("not ready: %s", reason)
        # The database's own words (hosts, users, schemas) go to the log and to callers
        # with an API key only.
        shown = reason if _authenticated(request) else "the database is unavailable"
        body = HealthPublic(status="unavailable", detail={"error": shown})
        return JSONResponse(body.model_dump(), status_code=503, headers={"Retry-After": "1"})
    return HealthPublic(
        status="ready",
        detail={
            "head_position": readiness.head_position,
            "projection_lag": readiness.projection_lag,
            "followers": [
                FollowerPublic.of(status).model_dump(mode="json") for status in readiness.followers
            ],
        },
    )


def _authenticated(request: Request) -> bool:
    try:
        request.app.state.authenticator.authenticate(request)
    except HttpProblem:
        return False
    return True


@router.get("/metrics", response_class=Response, responses={200: {"content": {CONTENT_TYPE_LATEST: {}}}})
def metrics(request: Request) -> Response:
    return Response(generate_latest(request.app.state.metrics.registry), media_type=CONTENT_TYPE_LATEST)


@router.get("/audit", response_model=AuditPagePublic, responses=READ_PROBLEMS, tags=["audit"])
async def audit_log(
    call: ReadCallDep,
    response: Response,
    run_id: Annotated[RunId | None, Query()] = None,
    after: Annotated[int, Query(ge=0, le=2**62, description="Records after this position")] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> Any:
    def page(position: int | None) -> Any:
        records = call.service.read_models.audit(
            run_id=run_id, after=after, limit=limit, as_of_position=position
        )
        return reflects(response, records)

    return await call.run(page, response)


@router.get("/keys", response_model=KeysPublic, tags=["proofs"])
def signing_key(service: ServiceDep) -> Any:
    """The keys that verify run proofs and checkpoints: the one signing now, and every key."""
    return KeysPublic(**service.transparency.keys_listing())


@router.get("/problems/{slug}", include_in_schema=False)
def problem_type(slug: str) -> dict[str, str]:
    """Dereferencing a problem type URI gives its title."""
    return {"type": PROBLEM_TYPE_PREFIX + slug, "title": title_for(slug)}
