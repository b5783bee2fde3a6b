"""The FastAPI application: built from settings, wired at start-up, never at import."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from application.ports import AnswerStore
from application.service import LedgerService
from domain.clock import Clock, system_clock
from infrastructure.answer_stores import MemoryAnswers, SharedAnswers
from infrastructure.settings import Settings
from interfaces.api.limits import BodySizeLimit
from interfaces.api.metrics import ApiMetrics
from interfaces.api.problems import install_problem_handlers
from interfaces.api.replays import ReplayedAnswers
from interfaces.api.routes import actions, decisions, operations, runs, transparency
from interfaces.api.schemas import DecisionBatchItem
from interfaces.api.security import Authenticator, refuse_open_mode_off_loopback
from interfaces.bootstrap import build_service
from interfaces.console.install import install_console


def create_app(
    settings: Settings, service: LedgerService | None = None, *, clock: Clock = system_clock
) -> FastAPI:
    """`service` lets a caller (a test, a benchmark) share one it already built; `clock`
    lets a test set the time the aggregates are given. Without API keys the app refuses a
    non-loopback `host`, and every request that reached it off loopback."""
    refuse_open_mode_off_loopback(settings.host, settings.open_local_mode)
    metrics = ApiMetrics()
    answers = answer_store(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        owned = service is None
        ledger_service = build_service(settings, clock=clock) if owned else service
        assert ledger_service is not None
        ledger_service.ledger.saved_listeners.append(
            lambda recordings: metrics.events_appended.inc(len(recordings))
        )
        metrics.watch_followers(ledger_service.follower_status, ledger_service.leading)
        if settings.runs_followers:
            ledger_service.start_projections(
                on_failure=lambda failure: metrics.projection_failures.labels(failure.name).inc()
            )
        if settings.runs_dispatcher:
            ledger_service.start_dispatcher(settings.dispatch_concurrency, metrics.registry)
        app.state.service = ledger_service
        try:
            yield
        finally:
            answers.close()
            if owned:
                ledger_service.close()

    app = FastAPI(
        title="decision-ledger",
        version="0.1.0",
        summary="Idempotent decisions and actions, append-only history, fail-closed runs with proofs.",
        lifespan=lifespan,
        docs_url=None,  # the console serves /docs with Swagger UI files of its own (offline)
        redoc_url=None,
        # Metrics are Prometheus (/metrics). FastAPI's OpenTelemetry bridge would otherwise
        # look for a configured provider on every request.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.authenticator = Authenticator(settings.all_api_keys())
    install_problem_handlers(app)
    authenticator = app.state.authenticator
    app.add_middleware(ReplayedAnswers, authenticator=authenticator, store=answers)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(metrics.middleware)
    # The routes join the app's own router: an included router is walked again (its routes'
    # version recomputed) for every request.
    for router in (runs.router, decisions.router, actions.router, operations.router, transparency.router):
        app.router.routes.extend(router.routes)
    install_console(app)
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


def answer_store(settings: Settings) -> AnswerStore:
    if settings.shared_answers_dir is not None and settings.replay_cache_bytes > 0:
        return SharedAnswers(
            settings.shared_answers_dir, settings.replay_cache_bytes, settings.database().describe()
        )
    return MemoryAnswers(settings.replay_cache_bytes)


def _openapi(app: FastAPI) -> dict[str, Any]:
    if app.openapi_schema is None:
        schema = get_openapi(title=app.title, version=app.version, summary=app.summary, routes=app.routes)
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        item_schema = DecisionBatchItem.model_json_schema(ref_template="#/components/schemas/{model}")
        components.update(item_schema.pop("$defs", {}))
        components["DecisionBatchItem"] = item_schema
        app.openapi_schema = schema
    return app.openapi_schema
