"""What routes receive: the service, the caller, its idempotency key, and the point
in time a read is about."""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar
from uuid import UUID

from fastapi import Depends, Header, Query, Request, Response
from starlette.concurrency import run_in_threadpool

from application.queries.points import PointInLog
from application.results import CommandResult
from application.service import LedgerService
from domain.fields import IDEMPOTENCY_KEY_PATTERN, is_idempotency_key
from interfaces.api.problems import HttpProblem
from interfaces.api.schemas import Moment
from interfaces.api.security import Authenticator, Principal, authorize

CommandT = TypeVar("CommandT")
QueryT = TypeVar("QueryT")
ViewT = TypeVar("ViewT")


# Dependencies that do no I/O are `async def`, so FastAPI runs them on the event loop
# instead of handing each one to a worker thread.


async def get_service(request: Request) -> LedgerService:
    return request.app.state.service


async def get_principal(request: Request) -> Principal:
    authenticator: Authenticator = request.app.state.authenticator
    return authenticator.authenticate(request)


ServiceDep = Annotated[LedgerService, Depends(get_service)]
PrincipalDep = Annotated[Principal, Depends(get_principal)]


@dataclass(frozen=True)
class Idempotency:
    """The client's key, and the token it becomes: scoped to principal and route."""

    key: str
    scope: str

    def token(self) -> str:
        return f"{self.scope}|{self.key}"

    def item_token(self, item_key: str, single_route_suffix: str) -> str:
        """A batch item's token: in the scope of the route that records one item, so an
        item retried alone replays."""
        return f"{self.scope.removesuffix(single_route_suffix)}|{item_key}"


@dataclass(frozen=True)
class CommandCall:
    """What a command route works with: the service, who asks, and under which key."""

    service: LedgerService
    actor: str
    idempotency: Idempotency

    @property
    def token(self) -> str:
        return self.idempotency.token()

    async def run(
        self, handler: Callable[[CommandT], CommandResult[Any]], command: CommandT, response: Response
    ) -> Any:
        """Run the command in a worker thread (the ledger waits on the database) and answer it."""
        return self.answer(await run_in_threadpool(handler, command), response)

    def answer(self, result: CommandResult[Any], response: Response) -> Any:
        response.headers["Idempotent-Replayed"] = "true" if result.replayed else "false"
        return result.view


IdempotencyKeyHeader = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        description="1 to 255 visible ASCII characters; the same key replays the first answer",
        # Documented only: a malformed key is this API's own 400, not a schema 422.
        json_schema_extra={"pattern": IDEMPOTENCY_KEY_PATTERN},
    ),
]


def _command_call(permission: str) -> Callable[..., Awaitable[CommandCall]]:
    """One dependency per command route: authenticate, authorize, check the key."""

    async def command_call(request: Request, idempotency_key: IdempotencyKeyHeader = None) -> CommandCall:
        principal = request.app.state.authenticator.authenticate(request)
        authorize(principal, permission)
        if idempotency_key is None or idempotency_key == "":
            raise HttpProblem(400, "idempotency-key-missing", "every POST needs an Idempotency-Key header")
        if not is_idempotency_key(idempotency_key):
            raise HttpProblem(
                400,
                "idempotency-key-malformed",
                "the Idempotency-Key must be 1 to 255 visible ASCII characters",
            )
        scope = f"{principal.name}|{request.method} {canonical_path(request)}"
        return CommandCall(request.app.state.service, principal.name, Idempotency(idempotency_key, scope))

    return command_call


def canonical_path(request: Request) -> str:
    """The request's path with every UUID parameter in its canonical spelling, so one
    resource has one idempotency scope however a client spells its ID."""
    route = request.scope.get("route")
    dependant = getattr(route, "dependant", None)
    if dependant is None:
        return request.url.path
    params = dict(request.path_params)
    for param in dependant.path_params:
        if param.field_info.annotation is UUID and param.name in params:
            with contextlib.suppress(ValueError):  # the route's own validation answers 422
                params[param.name] = str(UUID(params[param.name]))
    return str(route.path_format.format(**params))  # type: ignore[union-attr]


#: A command any writer (or operator) may send, and one only operators may.
WriterCall = Annotated[CommandCall, Depends(_command_call("write"))]
OperatorCall = Annotated[CommandCall, Depends(_command_call("operate"))]


@dataclass(frozen=True)
class ReadCall:
    """What a read route works with: the service, which point of the log to answer as
    of, and how fresh the read models must be."""

    service: LedgerService
    point: PointInLog
    min_position: int | None

    async def run(self, query: Callable[[int | None], QueryT], response: Response) -> QueryT:
        """Find the point, wait (bounded) for min_position and answer the query with it, in
        one worker-thread hop (each may wait on the database)."""
        return await run_in_threadpool(self._answer, query, response)

    def _answer(self, query: Callable[[int | None], QueryT], response: Response) -> QueryT:
        position = self.service.position_of(self.point)
        self.service.wait_for(self.min_position)
        # Which point of the log the answer reflects (the body says it too where it can).
        reflected = position if position is not None else self.service.head_position()
        response.headers["Ledger-As-Of-Position"] = str(reflected)
        return query(position)


async def read_call(
    request: Request,
    principal: PrincipalDep,
    as_of: Annotated[
        Moment | None,
        Query(
            description="Answer as the ledger knew it at this RFC 3339 time (with an offset); give as_of or as_of_position, not both"
        ),
    ] = None,
    as_of_position: Annotated[
        int | None, Query(ge=0, le=2**62, description="Answer as of this notification position")
    ] = None,
    min_position: Annotated[
        int | None,
        Query(ge=0, le=2**62, description="Wait (bounded) until the read models reach this position"),
    ] = None,
) -> ReadCall:
    """One dependency per read route: authenticate (the principal, first), check the point."""
    return ReadCall(request.app.state.service, PointInLog(as_of, as_of_position), min_position)


ReadCallDep = Annotated[ReadCall, Depends(read_call)]


def reflects(response: Response, view: ViewT) -> ViewT:
    """Name the position a read-model answer reflects: with no point asked for, the
    views' own, which may trail the head that ReadCall assumed."""
    response.headers["Ledger-As-Of-Position"] = str(view.as_of_position)  # type: ignore[attr-defined]
    return view
