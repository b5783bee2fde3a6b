"""Prometheus metrics, in a registry of each app's own (no global registry)."""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send


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
        self.projection_failures = Counter(
            "decision_ledger_projection_failures_total",
            "Times a projection stopped on an event it could not apply",
            ["projection"],
            registry=self.registry,
        )

    def middleware(self, app: ASGIApp) -> ASGIApp:
        """Plain ASGI middleware: counts and times every HTTP request without the cost of
        Starlette's BaseHTTPMiddleware."""

        async def measured(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != "http":
                await app(scope, receive, send)
                return
            started = time.perf_counter()
            answer: dict[str, Any] = {"status": 500, "replayed": False}

            async def observed_send(message: Message) -> None:
                if message["type"] == "http.response.start":
                    answer["status"] = message["status"]
                    answer["replayed"] = (b"idempotent-replayed", b"true") in message.get("headers", [])
                await send(message)

            try:
                await app(scope, receive, observed_send)
            finally:
                # The router records the route it chose in the scope (FastAPI nests included
                # routers, so the app's top-level routes have no template to read).
                route = getattr(scope.get("route"), "path", "unmatched")
                method = scope["method"]
                self.requests.labels(method, route, str(answer["status"])).inc()
                self.latency.labels(method, route).observe(time.perf_counter() - started)
                if answer["replayed"]:
                    self.replays.labels(route).inc()

        return measured
