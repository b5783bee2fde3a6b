"""The dispatcher's Prometheus metrics, in the registry it is given (the API's, when it
runs inside `serve`)."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class DispatchMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.deliveries = Counter(
            "decision_ledger_deliveries_total",
            "Delivery attempts by effector and outcome"
            " (delivered, failed, dead_lettered, gone, lost, superseded)",
            ["effector", "outcome"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "decision_ledger_delivery_seconds",
            "Delivery attempt latency, from send to answer (or timeout)",
            ["effector"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=self.registry,
        )
        self.dead_letters = Counter(
            "decision_ledger_dead_letters_total",
            "Actions failed because their retry schedule was used up",
            ["effector"],
            registry=self.registry,
        )
        self.claims_lost = Counter(
            "decision_ledger_delivery_claims_lost_total",
            "Attempts another dispatcher claimed first (not sent here)",
            registry=self.registry,
        )
        self.lag_positions = Gauge(
            "decision_ledger_dispatch_lag_positions",
            "Log positions the outbox is behind the head",
            registry=self.registry,
        )
        self.lag_seconds = Gauge(
            "decision_ledger_dispatch_lag_seconds",
            "Age of the oldest log event the outbox has not applied (0 when caught up)",
            registry=self.registry,
        )

    def observe_outcome(self, effector: str, outcome: str, latency_ms: float | None) -> None:
        self.deliveries.labels(effector, outcome).inc()
        if latency_ms is not None:
            self.latency.labels(effector).observe(latency_ms / 1000)
        if outcome == "dead_lettered":
            self.dead_letters.labels(effector).inc()

    def track_lag(self, measure: Callable[[], tuple[int, float]]) -> None:
        """Read the lag when metrics are scraped, not on a timer."""
        self.lag_positions.set_function(lambda: measure()[0])
        self.lag_seconds.set_function(lambda: measure()[1])
