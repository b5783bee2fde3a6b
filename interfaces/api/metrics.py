"""Prometheus metrics, in a registry of each app's own (no global registry)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from prometheus_client import CollectorRegistry, Counter, Histogram
from starlette.requests import Request
from starlette.responses import Response


class ApiMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "decision_ledger_http_requests_total",
            "HTTP requests",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "decision_ledger_http_request_seconds",
            "HTTP request latency",
            ["method", "route"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=self.registry,
        )
        self.replays = Counter(
            "decision_ledger_idempotent_replays_total",
            "Answers served as idempotent replays",
            ["route"],
            registry=self.registry,
        )
        self.conflicts = Counter(
            "decision_ledger_conflicts_total",
            "Requests refused as conflicts (409) or key reuse (422)",
            ["problem_type", "status"],
            registry=self.registry,
        )
        self.events_appended = Counter(
            "decision_ledger_events_appended_total",
            "Domain events appended to the ledger",
            registry=self.registry,
        )

    async def middleware(
        self, request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        started = time.perf_counter()
        response = await call_next(request)
        # The router records the route it chose in the scope (FastAPI nests included routers,
        # so the app's top-level routes have no template to read).
        route = getattr(request.scope.get("route"), "path", "unmatched")
        status = response.status_code
        self.requests.labels(request.method, route, str(status)).inc()
        self.latency.labels(request.method, route).observe(time.perf_counter() - started)
        if response.headers.get("idempotent-replayed") == "true":
            self.replays.labels(route).inc()
        return response
