"""What operators look at: liveness, readiness and the Prometheus metrics, over HTTP."""

from __future__ import annotations

import os
import re
from datetime import UTC, datetime, timedelta

from fastapi.testclient import TestClient

from infrastructure.settings import ServeRole
from interfaces.api.app import create_app
from tests.support.api import RUN_ID, decision_body, keyed, open_run


def metric(api: TestClient, name: str, **labels: str) -> float:
    """The value of one sample of /metrics (0 if it is absent)."""
    wanted = ",".join(f'{label}="{value}"' for label, value in sorted(labels.items()))
    for line in api.get("/metrics").text.splitlines():
        match = re.fullmatch(rf"{name}\{{(.*)\}} (\S+)", line)
        if match and ",".join(sorted(match.group(1).split(","))) == wanted:
            return float(match.group(2))
    return 0.0


def test_liveness_and_readiness(api: TestClient) -> None:
    # Alive, and ready with the head of the log and the projections' lag.
    open_run(api)
    assert api.get("/healthz").json() == {"status": "ok", "detail": {}}
    readiness = api.get("/readyz").json()
    assert readiness["status"] == "ready"
    assert readiness["detail"]["head_position"] == 1


def test_readiness_shows_each_followers_leader_position_and_lag(api: TestClient) -> None:
    # The app leads every projection (it is alone on its database) and catches up.
    open_run(api)
    api.get(f"/runs/{RUN_ID}", params={"min_position": 1})

    followers = {entry["name"]: entry for entry in api.get("/readyz").json()["detail"]["followers"]}

    assert set(followers) == {"projection:runs", "projection:audit", "projection:outbox"}
    for entry in followers.values():
        leader = entry["leader"]
        assert leader["pid"] == os.getpid() and leader["active"] and leader["epoch"] == 1
        assert leader["host"] and leader["since"]
        assert (entry["position"], entry["lag_positions"], entry["lag_seconds"]) == (1, 0, 0.0)
        assert entry["last_error"] is None


def test_metrics_export_follower_lag_and_leadership(api: TestClient) -> None:
    open_run(api)
    api.get(f"/runs/{RUN_ID}", params={"min_position": 1})

    for follower in ("projection:runs", "projection:audit"):
        assert metric(api, "decision_ledger_follower_leader", follower=follower) == 1
        assert metric(api, "decision_ledger_follower_led", follower=follower) == 1
        assert metric(api, "decision_ledger_follower_lag_positions", follower=follower) == 0
        assert metric(api, "decision_ledger_follower_lag_seconds", follower=follower) == 0


def test_replays_and_appended_events_are_counted(api: TestClient) -> None:
    # A decision, then its redelivery.
    open_run(api)
    for _ in range(2):
        api.post(f"/runs/{RUN_ID}/decisions", json=decision_body(), headers=keyed("decide-txn-1"))

    # Two events were appended (the run, the decision); one answer was a replay.
    text = api.get("/metrics").text
    appended = re.search(r"^decision_ledger_events_appended_total (\S+)$", text, re.MULTILINE)
    assert appended is not None and float(appended.group(1)) == 2
    replays = re.findall(r"^decision_ledger_idempotent_replays_total\{.*\} (\S+)$", text, re.MULTILINE)
    assert sum(float(value) for value in replays) == 1


def test_requests_are_counted_by_route_template(api: TestClient) -> None:
    # Two different runs are read: one label, the route's template, not one per run ID.
    api.get("/runs/run-a")
    api.get("/runs/run-b")
    assert (
        metric(api, "decision_ledger_http_requests_total", method="GET", route="/runs/{run_id}", status="404")
        == 2
    )


def test_a_redelivery_answered_from_memory_is_counted_under_its_route(api: TestClient) -> None:
    open_run(api)
    for _ in range(3):
        api.post(f"/runs/{RUN_ID}/decisions", json=decision_body(), headers=keyed("decide-txn-1"))

    route = "/runs/{run_id}/decisions"
    assert metric(api, "decision_ledger_idempotent_replays_total", route=route) == 2
    assert metric(api, "decision_ledger_http_requests_total", method="POST", route=route, status="201") == 3


def test_readiness_shows_the_lag_of_followers_nobody_runs(api_settings) -> None:
    # An API-only process (role api), its clock a minute after the event it cannot see applied.
    settings = api_settings.model_copy(update={"role": ServeRole.API})
    a_minute_later = lambda: datetime.now(UTC) + timedelta(seconds=60)  # noqa: E731
    with TestClient(create_app(settings, clock=a_minute_later)) as api:
        open_run(api)

        followers = api.get("/readyz").json()["detail"]["followers"]

        for entry in followers:
            assert entry["leader"] is None
            assert (entry["position"], entry["lag_positions"]) == (0, 1)
            assert 59 <= entry["lag_seconds"] <= 120
        assert metric(api, "decision_ledger_follower_leader", follower="projection:runs") == 0
        assert metric(api, "decision_ledger_follower_led", follower="projection:runs") == 0
        assert metric(api, "decision_ledger_follower_lag_positions", follower="projection:runs") == 1
