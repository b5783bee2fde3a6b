"""What every console route shares: who is looking (from the session cookie), the CSRF
check of a form, HTML rendering, and errors shown as pages instead of problem+json."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import parse_qsl, quote

from fastapi import Depends, Request
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from fastapi.templating import Jinja2Templates
from starlette.responses import HTMLResponse, RedirectResponse, Response

from application.service import LedgerService
from domain import errors
from interfaces.api.problems import HttpProblem, status_for
from interfaces.api.security import WRITE_PERMISSIONS, Authenticator, Principal
from interfaces.console import reads
from interfaces.console.sessions import COOKIE_NAME, COOKIE_PATH, Session, SessionCodec

TEMPLATES_DIR = Path(__file__).with_name("templates")
STATIC_DIR = Path(__file__).with_name("static")
#: Form bodies are small; anything larger is refused before it is parsed.
MAX_FORM_BYTES = 16_384
_log = logging.getLogger(__name__)

#: The console loads nothing from anywhere but itself.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:;"
        " form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def build_templates() -> Jinja2Templates:
    templates = Jinja2Templates(directory=str(TEMPLATES_DIR))
    templates.env.globals["badge"] = reads.badge
    templates.env.filters["short"] = lambda text, size=12: (text or "")[:size]
    templates.env.filters["moment"] = lambda text: (text or "").replace("T", " ")[:19]
    return templates


class LoginRequired(Exception):
    pass


class CsrfRefused(Exception):
    pass


@dataclass(frozen=True)
class Viewer:
    """The person at the browser: their principal, session, and what they may do."""

    principal: Principal
    session: Session
    csrf_token: str
    open_mode: bool
    service: LedgerService

    def may(self, permission: str) -> bool:
        return bool(self.principal.roles & WRITE_PERMISSIONS[permission])

    @property
    def can_operate(self) -> bool:
        return self.may("operate")

    def new_idempotency_key(self) -> str:
        """A key for one rendered form: submitting it twice replays the first answer."""
        return "console-" + secrets.token_urlsafe(16)


def codec_of(request: Request) -> SessionCodec:
    state = request.app.state
    if getattr(state, "console_codec", None) is None:
        state.console_codec = SessionCodec.from_signer(state.service.signer)
    return state.console_codec


def current_session(request: Request) -> Session:
    """The signed session the browser sent, or a new anonymous one (set on the answer)."""
    session = codec_of(request).decode(request.cookies.get(COOKIE_NAME))
    if session is None:
        session = Session.anonymous()
        request.state.console_new_session = session
    return session


def start_session(request: Request, session: Session) -> None:
    request.state.console_new_session = session


async def viewer(request: Request) -> Viewer:
    authenticator: Authenticator = request.app.state.authenticator
    session = current_session(request)
    principal = None
    if authenticator.open_local_mode:
        principal = authenticator.principal_for_hash("")
    elif session.key_sha256 is not None:
        principal = authenticator.principal_for_hash(session.key_sha256)
    if principal is None:
        raise LoginRequired()
    seen = Viewer(
        principal,
        session,
        codec_of(request).csrf_token(session),
        authenticator.open_local_mode,
        request.app.state.service,
    )
    request.state.console_viewer = seen
    return seen


ViewerDep = Annotated[Viewer, Depends(viewer)]


async def read_form(request: Request) -> dict[str, str]:
    """A url-encoded form, each field once; a body that is not one is refused."""
    body = await request.body()
    if not body:
        return {}
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/x-www-form-urlencoded":
        raise errors.InvalidCommand("send the form as application/x-www-form-urlencoded")
    if len(body) > MAX_FORM_BYTES:
        raise errors.InvalidCommand("the form is too large")
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=True)
    except (UnicodeDecodeError, ValueError) as error:
        raise errors.InvalidCommand("the form is not valid url-encoded UTF-8") from error
    form: dict[str, str] = {}
    for name, value in pairs:
        if name in form:
            raise errors.InvalidCommand(f"the form field {name!r} is given twice", field=name)
        form[name] = value
    return form


def require_csrf(request: Request, session: Session, form: dict[str, str]) -> None:
    if not codec_of(request).csrf_valid(session, form.get("csrf_token")):
        raise CsrfRefused()


def render(request: Request, template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    templates: Jinja2Templates = request.app.state.console_templates
    return templates.TemplateResponse(request, template, context, status_code=status_code)


def _error_page(request: Request, status: int, title: str, detail: str) -> Response:
    viewer_of_page = getattr(request.state, "console_viewer", None)
    return render(request, "error.html", status, title=title, detail=detail, viewer=viewer_of_page)


class ConsoleRoute(APIRoute):
    """A console route: its errors are HTML pages, a missing login is a redirect, and
    every answer carries the session cookie (when new) and the security headers."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def console_handler(request: Request) -> Response:
            try:
                response = await handler(request)
            except LoginRequired:
                target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
                response = RedirectResponse(f"/console/login?next={quote(target, safe='')}", 303)
            except CsrfRefused:
                response = _error_page(
                    request, 403, "Form refused", "the form's CSRF token is missing or not this session's"
                )
            except errors.LedgerError as error:
                response = _error_page(request, status_for(error), error.slug.replace("-", " "), error.detail)
            except HttpProblem as problem:
                response = _error_page(
                    request, problem.status, problem.slug.replace("-", " "), problem.detail
                )
            except RequestValidationError as error:
                detail = "; ".join(
                    f"{'.'.join(str(part) for part in item.get('loc', ())[1:])}: {item.get('msg', '')}"
                    for item in error.errors()[:5]
                )
                response = _error_page(request, 422, "invalid request", detail or "invalid request")
            new_session: Session | None = getattr(request.state, "console_new_session", None)
            if new_session is not None:
                set_session_cookie(request, response, new_session)
            response.headers.update(SECURITY_HEADERS)
            return response

        return console_handler


def set_session_cookie(request: Request, response: Response, session: Session) -> None:
    codec = codec_of(request)
    response.set_cookie(
        COOKIE_NAME,
        codec.encode(session),
        max_age=codec.lifetime,
        path=COOKIE_PATH,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
