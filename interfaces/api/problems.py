"""RFC 9457 problem details: every error the API returns, mapped in one place."""

from __future__ import annotations

from typing import Any

from eventsourcing.persistence import IntegrityError, InterfaceError, OperationalError
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from application.redaction import redacted
from domain import errors

PROBLEM_MEDIA_TYPE = "application/problem+json"
PROBLEM_TYPE_PREFIX = "/problems/"

#: Domain errors to statuses: the most specific class listed first wins.
STATUS_BY_ERROR: tuple[tuple[type[errors.LedgerError], int], ...] = (
    (errors.NotFound, 404),
    (errors.Conflict, 409),
    (errors.IdempotencyKeyReused, 422),
    (errors.InvalidCommand, 422),
    (errors.VerificationFailed, 422),
    (errors.ProjectionsBehind, 503),
    (errors.ProjectionFailed, 503),
    (errors.NoValidSigningKey, 503),
)

#: Titles of the problem types the HTTP layer raises itself.
HTTP_PROBLEM_TITLES = {
    "idempotency-key-missing": "Idempotency-Key header missing",
    "idempotency-key-malformed": "Idempotency-Key header malformed",
    "unauthorized": "Missing or unknown API key",
    "forbidden": "The API key's roles do not allow this",
    "open-mode-off-loopback": "No API keys are configured: loopback callers only",
    "payload-too-large": "Request body too large",
    "validation-error": "The request does not match the schema",
    "not-found": "No such resource",
    "method-not-allowed": "Method not allowed",
    "internal-error": "Internal error",
    "write-conflict": "Too many concurrent writers; retry",
    "database-unavailable": "The database is unavailable; retry",
}


class FieldError(BaseModel):
    field: str = Field(description="Dotted path of the offending field, e.g. body.model.name")
    message: str


class Problem(BaseModel):
    """An RFC 9457 problem detail."""

    type: str = Field(description="A stable URI reference naming the problem type")
    title: str
    status: int
    detail: str
    instance: str | None = None
    errors: list[FieldError] | None = None


class HttpProblem(Exception):
    """A problem detected by the HTTP layer itself (keys, auth, size)."""

    def __init__(self, status: int, slug: str, detail: str, headers: dict[str, str] | None = None):
        super().__init__(detail)
        self.status, self.slug, self.detail, self.headers = status, slug, detail, headers or {}


def status_for(error: errors.LedgerError) -> int:
    for error_class, status in STATUS_BY_ERROR:
        if isinstance(error, error_class):
            return status
    return 400


def title_for(slug: str) -> str:
    return HTTP_PROBLEM_TITLES.get(slug) or slug.replace("-", " ").capitalize()


def problem_body(
    status: int, slug: str, detail: str, *, instance: str | None = None, **extra: Any
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": PROBLEM_TYPE_PREFIX + slug,
        "title": title_for(slug),
        "status": status,
        "detail": detail,
    }
    if instance is not None:
        body["instance"] = instance
    body.update({key: value for key, value in extra.items() if value is not None})
    return body


def problem_for_error(error: errors.LedgerError) -> dict[str, Any]:
    """The problem object of a domain error, also used inside batch answers."""
    field = getattr(error, "field", None)
    location = getattr(error, "location", "body")
    field_errors = [{"field": f"{location}.{field}", "message": error.detail}] if field else None
    return problem_body(status_for(error), error.slug, error.detail, errors=field_errors)


def problem_response(body: dict[str, Any], headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(body, status_code=body["status"], media_type=PROBLEM_MEDIA_TYPE, headers=headers)


def install_problem_handlers(app: FastAPI) -> None:
    @app.exception_handler(errors.LedgerError)
    async def ledger_error(request: Request, error: errors.LedgerError) -> JSONResponse:
        body = problem_for_error(error)
        body["instance"] = request.url.path
        if isinstance(error, (errors.Conflict, errors.IdempotencyKeyReused)):
            request.app.state.metrics.conflicts.labels(body["type"], str(body["status"])).inc()
        headers = None
        if isinstance(error, errors.ProjectionsBehind):
            headers = {"Retry-After": "1"}
        elif isinstance(error, errors.ProjectionFailed):
            headers = {"Retry-After": "30"}
        return problem_response(body, headers)

    @app.exception_handler(HttpProblem)
    async def http_problem(request: Request, problem: HttpProblem) -> JSONResponse:
        body = problem_body(problem.status, problem.slug, problem.detail, instance=request.url.path)
        return problem_response(body, problem.headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, error: RequestValidationError) -> JSONResponse:
        field_errors = [
            {"field": ".".join(str(part) for part in item.get("loc", ())), "message": item.get("msg", "")}
            for item in error.errors()
        ]
        summary = "; ".join(f"{item['field']}: {item['message']}" for item in field_errors[:5])
        body = problem_body(
            422,
            "validation-error",
            summary or "invalid request",
            instance=request.url.path,
            errors=field_errors,
        )
        return problem_response(body)

    @app.exception_handler(StarletteHTTPException)
    async def http_exception(request: Request, error: StarletteHTTPException) -> JSONResponse:
        slug = {404: "not-found", 405: "method-not-allowed"}.get(error.status_code, "http-error")
        body = problem_body(error.status_code, slug, str(error.detail), instance=request.url.path)
        headers = dict(getattr(error, "headers", None) or {})
        if error.status_code == 405:
            # Starlette names only the first route on the path; RFC 9110 wants every method it serves.
            headers["Allow"] = ", ".join(allowed_methods(request))
        return problem_response(body, headers)

    @app.exception_handler(IntegrityError)
    async def lost_every_race(request: Request, error: IntegrityError) -> JSONResponse:
        # A command that lost its race more often than the retry budget allows.
        body = problem_body(
            409,
            "write-conflict",
            "the command kept losing races with concurrent writers",
            instance=request.url.path,
        )
        return problem_response(body, {"Retry-After": "1"})

    @app.exception_handler(OperationalError)
    @app.exception_handler(InterfaceError)
    @app.exception_handler(TimeoutError)
    async def database_unavailable(request: Request, error: Exception) -> JSONResponse:
        body = problem_body(
            503,
            "database-unavailable",
            redacted(str(error).splitlines()[0]) if str(error) else "timed out",
            instance=request.url.path,
        )
        return problem_response(body, {"Retry-After": "1"})

    @app.exception_handler(Exception)
    async def unexpected(request: Request, error: Exception) -> JSONResponse:
        body = problem_body(
            500, "internal-error", "an unexpected error occurred; it was logged", instance=request.url.path
        )
        return problem_response(body)


def allowed_methods(request: Request) -> list[str]:
    """Every method some route serves at the request's path."""
    return [
        method
        for method in ("GET", "POST", "PUT", "PATCH", "DELETE")
        if any(
            route.matches({**request.scope, "method": method})[0] == Match.FULL
            for route in request.app.router.routes
        )
    ]


#: OpenAPI documentation of the problem responses each route may give.
def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    descriptions = {
        400: "Idempotency-Key header missing or malformed",
        401: "Missing or unknown API key",
        403: "The API key's roles do not allow this",
        404: "Not found, or nothing known at the time asked about",
        409: "Conflicts with the current state",
        413: "Request body larger than the limit",
        422: "Invalid request, or an idempotency key reused for a different request",
        503: "Read models behind; retry",
    }
    return {
        status: {"model": Problem, "description": descriptions[status], "content": {PROBLEM_MEDIA_TYPE: {}}}
        for status in statuses
    }
