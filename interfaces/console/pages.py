"""The console's pages: runs, one run (with its as-of slider), actions, the audit log."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from application.queries.read_models import RECONCILIATION_CATEGORIES
from domain import errors
from interfaces.console import reads
from interfaces.console.context import ConsoleRoute, ViewerDep, render

router = APIRouter(prefix="/console", route_class=ConsoleRoute, include_in_schema=False)
RUN_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$"
RunIdPath = Annotated[str, Path(pattern=RUN_ID_PATTERN)]
RUN_STATUSES = ("open", "sealed", "committed", "rejected")
#: What a redirect after a write may say: codes, never text from the query string.
NOTICES = {
    "closed": "The run was closed; its verdict is below.",
    "reopened": "The run was reopened in a new attempt.",
    "waived": "The action was waived.",
    "redelivered": "Redelivery requested: the dispatcher sends the action again, with the same webhook-id.",
}
Cursor = Annotated[str | None, Query(max_length=256)]
#: Read-your-writes: a page after a write waits (bounded) until the views reach its position.
MinPosition = Annotated[int | None, Query(ge=0, le=2**62)]


def _blank_is_none(value: str | None) -> str | None:
    return value if value else None


@router.get("")
async def runs_page(
    request: Request,
    viewer: ViewerDep,
    lane: Annotated[str | None, Query(max_length=64)] = None,
    status: Annotated[str | None, Query(max_length=16)] = None,
    after: Cursor = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    min_position: MinPosition = None,
) -> Response:
    lane, status, after = _blank_is_none(lane), _blank_is_none(status), _blank_is_none(after)
    if status is not None and status not in RUN_STATUSES:
        raise errors.InvalidCommand(f"status must be one of {', '.join(RUN_STATUSES)}", field="status")
    page = await run_in_threadpool(
        reads.runs,
        viewer.service,
        lane=lane,
        status=status,
        after=after,
        limit=limit,
        min_position=min_position,
    )
    return render(
        request,
        "runs.html",
        viewer=viewer,
        page=page,
        lane=lane or "",
        status=status or "",
        statuses=RUN_STATUSES,
        limit=limit,
    )


@router.get("/runs/{run_id}")
async def run_page(
    request: Request,
    viewer: ViewerDep,
    run_id: RunIdPath,
    as_of_position: Annotated[int | None, Query(ge=1, le=2**62)] = None,
    as_of: Annotated[str | None, Query(max_length=64)] = None,
    missing_after: Cursor = None,
    unexpected_after: Cursor = None,
    pending_after: Cursor = None,
    failed_after: Cursor = None,
    timeline_after: Annotated[int, Query(ge=0, le=2**62)] = 0,
    notice: Annotated[str | None, Query(max_length=32)] = None,
    min_position: MinPosition = None,
) -> Response:
    as_of = _blank_is_none(as_of)
    if as_of is not None and as_of_position is not None:
        raise errors.InvalidCommand("give a time or a position, not both", field="as_of")
    cursors = {
        "missing": _blank_is_none(missing_after),
        "unexpected": _blank_is_none(unexpected_after),
        "pending": _blank_is_none(pending_after),
        "failed": _blank_is_none(failed_after),
    }

    def gather() -> reads.RunPage:
        viewer.service.read_models.wait_for(min_position)
        position = as_of_position
        if as_of is not None:
            position = reads.position_at(viewer.service, _moment(as_of))
        return reads.run_page(
            viewer.service,
            run_id,
            as_of_position=position,
            category_after=cursors,
            timeline_after=timeline_after,
        )

    page = await run_in_threadpool(gather)
    return render(
        request,
        "run.html",
        viewer=viewer,
        page=page,
        categories=RECONCILIATION_CATEGORIES,
        cursors=cursors,
        as_of=as_of or "",
        notice=NOTICES.get(notice or ""),
    )


def _moment(text: str) -> datetime:
    """A time from the page's field: RFC 3339, or a local-looking one taken as UTC."""
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError as error:
        raise errors.InvalidCommand(
            "as_of must be a time such as 2026-11-27T14:00:00 (UTC) or 2026-11-27T14:00:00+01:00",
            field="as_of",
        ) from error
    return moment if moment.utcoffset() is not None else moment.replace(tzinfo=UTC)


@router.get("/runs/{run_id}/proof.json")
async def proof_download(viewer: ViewerDep, run_id: RunIdPath) -> Response:
    proof = await run_in_threadpool(reads.proof_of, viewer.service, run_id)
    return Response(
        json.dumps(proof, indent=2, sort_keys=True),
        media_type="application/json",
        headers={"Content-Disposition": f'attachment; filename="{run_id}.proof.json"'},
    )


@router.get("/actions")
async def actions_page(
    request: Request,
    viewer: ViewerDep,
    status: Annotated[str | None, Query(max_length=16)] = None,
    kind: Annotated[str | None, Query(max_length=64)] = None,
    run_id: Annotated[str | None, Query(max_length=128, pattern=RUN_ID_PATTERN + "|^$")] = None,
    after: Cursor = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    notice: Annotated[str | None, Query(max_length=32)] = None,
    min_position: MinPosition = None,
) -> Response:
    status, kind, run_id = _blank_is_none(status), _blank_is_none(kind), _blank_is_none(run_id)
    after = _blank_is_none(after)
    page = await run_in_threadpool(
        reads.actions,
        viewer.service,
        status=status,
        kind=kind,
        run_id=run_id,
        after=after,
        limit=limit,
        min_position=min_position,
    )
    return render(
        request,
        "actions.html",
        viewer=viewer,
        page=page,
        status=status or "",
        kind=kind or "",
        run_id=run_id or "",
        limit=limit,
        statuses=("requested", "committed", "failed", "waived"),
        notice=NOTICES.get(notice or ""),
    )


@router.get("/audit")
async def audit_page(
    request: Request,
    viewer: ViewerDep,
    after: Annotated[int, Query(ge=0, le=2**62)] = 0,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> Response:
    overview = await run_in_threadpool(reads.audit, viewer.service, after=after, limit=limit)
    return render(request, "audit.html", viewer=viewer, overview=overview, limit=limit)
