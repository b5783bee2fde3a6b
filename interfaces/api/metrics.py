"""Prometheus metrics, in a registry of each app's own (no global registry)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
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

    def watch_followers(
        self, statuses: Callable[[], list[Any]], leading: Callable[[], dict[str, bool]]
    ) -> None:
        """Export each follower's lag and this process's leadership, read at each scrape."""
        self.registry.register(FollowerMetrics(statuses, leading))

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


class FollowerMetrics(Collector):
    """Lag and leadership of the followers of the log, as of the scrape."""

    def __init__(self, statuses: Callable[[], list[Any]], leading: Callable[[], dict[str, bool]]) -> None:
        self.statuses = statuses
        self.leading = leading

    def collect(self) -> Iterator[Metric]:
        lag_positions = GaugeMetricFamily(
            "decision_ledger_follower_lag_positions",
            "Events recorded that the follower has not applied",
            labels=["follower"],
        )
        lag_seconds = GaugeMetricFamily(
            "decision_ledger_follower_lag_seconds",
            "How long the oldest event the follower has not applied has waited",
            labels=["follower"],
        )
        led = GaugeMetricFamily(
            "decision_ledger_follower_led",
            "1 if some process holds the follower's lead, 0 if none does",
            labels=["follower"],
        )
        leader_here = GaugeMetricFamily(
            "decision_ledger_follower_leader",
            "1 if this process leads the follower",
            labels=["follower"],
        )
        try:
            statuses = self.statuses()
        except Exception as error:  # a scrape reports what it can; the database may be away
            logging.getLogger(__name__).warning("follower metrics unavailable: %s", error)
            statuses = []
        leading = self.leading()
        for status in statuses:
            lag_positions.add_metric([status.name], status.lag_positions)
            lag_seconds.add_metric([status.name], status.lag_seconds)
            led.add_metric([status.name], 1.0 if status.led else 0.0)
            leader_here.add_metric([status.name], 1.0 if leading.get(status.name) else 0.0)
        yield from (lag_positions, lag_seconds, led, leader_here)

    def describe(self) -> Iterator[Metric]:
        return iter(())
