"""The console's forms: log in and out, and the operator's writes (close, reopen, waive,
redeliver).

Every form is checked for its CSRF token before anything else; every write is a ledger
command under an idempotency key rendered into its form, so a double submission is
answered by the first one and writes nothing twice."""

from __future__ import annotations

import re
from typing import Annotated
from urllib.parse import quote
from uuid import UUID

from fastapi import APIRouter, Path, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import RedirectResponse, Response

from domain.commands import CloseRun, RedeliverAction, ReopenRun, WaiveAction
from interfaces.api.problems import HttpProblem
from interfaces.api.security import Authenticator, authorize, hash_api_key
from interfaces.console.context import (
    ConsoleRoute,
    Viewer,
    ViewerDep,
    codec_of,
    current_session,
    read_form,
    render,
    require_csrf,
    start_session,
)
from interfaces.console.pages import RunIdPath
from interfaces.console.sessions import Session

router = APIRouter(prefix="/console", route_class=ConsoleRoute, include_in_schema=False)
_VISIBLE_ASCII = re.compile(r"^[\x21-\x7e]{1,255}$")
_SAFE_NEXT = re.compile(r"^/console(/[A-Za-z0-9._:/-]*)?(\?[A-Za-z0-9._:=&%+-]*)?$")


def _safe_next(target: str | None) -> str:
    """Where to go after logging in: a console page, never another site."""
    return target if target and _SAFE_NEXT.fullmatch(target) else "/console"


@router.get("/login")
async def login_page(request: Request, next: str | None = None) -> Response:
    authenticator: Authenticator = request.app.state.authenticator
    if authenticator.open_local_mode:
        return RedirectResponse(_safe_next(next), 303)
    session = current_session(request)
    return render(
        request,
        "login.html",
        csrf_token=codec_of(request).csrf_token(session),
        next=_safe_next(next),
        error=None,
        viewer=None,
    )


@router.post("/login")
async def login(request: Request) -> Response:
    authenticator: Authenticator = request.app.state.authenticator
    form = await read_form(request)
    session = current_session(request)
    require_csrf(request, session, form)
    target = _safe_next(form.get("next"))
    if authenticator.open_local_mode:
        return RedirectResponse(target, 303)
    key = form.get("api_key", "").strip()
    key_hash = hash_api_key(key) if key else ""
    if not key or authenticator.principal_for_hash(key_hash) is None:
        return render(
            request,
            "login.html",
            401,
            csrf_token=codec_of(request).csrf_token(session),
            next=target,
            error="This API key is not known.",
            viewer=None,
        )
    start_session(request, Session.for_key(key_hash))
    return RedirectResponse(target, 303)


@router.post("/logout")
async def logout(request: Request, viewer: ViewerDep) -> Response:
    require_csrf(request, viewer.session, await read_form(request))
    start_session(request, Session.anonymous())
    return RedirectResponse("/console/login" if not viewer.open_mode else "/console", 303)


async def _operator_form(request: Request, viewer: Viewer) -> tuple[dict[str, str], str]:
    """The checked form of an operator's write, and the command token it runs under."""
    form = await read_form(request)
    require_csrf(request, viewer.session, form)
    authorize(viewer.principal, "operate")
    key = form.get("idempotency_key", "")
    if not _VISIBLE_ASCII.fullmatch(key):
        raise HttpProblem(
            400, "idempotency-key-malformed", "the form's idempotency key is missing or malformed"
        )
    return form, f"{viewer.principal.name}|POST {request.url.path}|{key}"


@router.post("/runs/{run_id}/close")
async def close_run(request: Request, viewer: ViewerDep, run_id: RunIdPath) -> Response:
    _, token = await _operator_form(request, viewer)
    command = CloseRun(run_id=run_id, token=token, actor=viewer.principal.name)
    result = await run_in_threadpool(viewer.service.closer.close, command)
    return RedirectResponse(
        f"/console/runs/{quote(run_id)}?notice=closed&min_position={result.position}", 303
    )


@router.post("/runs/{run_id}/reopen")
async def reopen_run(request: Request, viewer: ViewerDep, run_id: RunIdPath) -> Response:
    form, token = await _operator_form(request, viewer)
    command = ReopenRun(
        run_id=run_id, reason=form.get("reason", ""), token=token, actor=viewer.principal.name
    )
    result = await run_in_threadpool(viewer.service.commands.runs.reopen, command)
    return RedirectResponse(
        f"/console/runs/{quote(run_id)}?notice=reopened&min_position={result.position}", 303
    )


@router.post("/actions/{action_id}/waive")
async def waive_action(request: Request, viewer: ViewerDep, action_id: Annotated[UUID, Path()]) -> Response:
    form, token = await _operator_form(request, viewer)
    command = WaiveAction(
        action_id=action_id, reason=form.get("reason", ""), token=token, actor=viewer.principal.name
    )
    result = await run_in_threadpool(viewer.service.commands.actions.waive, command)
    return RedirectResponse(
        f"/console/actions?run_id={quote(result.view.run_id)}&notice=waived&min_position={result.position}",
        303,
    )


@router.post("/actions/{action_id}/redeliver")
async def redeliver_action(
    request: Request, viewer: ViewerDep, action_id: Annotated[UUID, Path()]
) -> Response:
    """The command `POST /actions/{id}/redeliver` runs: a fresh delivery schedule for a
    failed action, with the same webhook-id and body; the dispatcher sends it."""
    _, token = await _operator_form(request, viewer)
    command = RedeliverAction(action_id=action_id, token=token, actor=viewer.principal.name)
    result = await run_in_threadpool(viewer.service.commands.actions.redeliver, command)
    return RedirectResponse(
        f"/console/actions?run_id={quote(result.view.run_id)}&notice=redelivered&min_position={result.position}",
        303,
    )
