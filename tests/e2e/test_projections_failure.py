"""A projection that cannot apply an event must not wedge the ledger in silence: it stops
at its last good position, /readyz answers 503 naming it, a metric counts it, a close
that needs it answers 503 saying why (not "retry shortly" for ever), and once the cause
is gone it catches up by itself. On SQLite and on PostgreSQL."""

from __future__ import annotations

import time
from typing import Any

import pytest
from fastapi.testclient import TestClient

from application.projections.audit_log import AuditLogProjection
from tests.support.api import RUN_ID, admit, assert_problem, keyed, open_run, record_decision
from tests.support.polling import wait_until

POISON = "txn-poison"


def test_a_projection_that_cannot_apply_an_event_is_visible_and_recovers(
    api: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A run with one good decision, then the audit projection breaks on one event kind.
    open_run(api)
    admit(api, ["txn-1", POISON])
    record_decision(api, "txn-1")
    apply = AuditLogProjection.apply

    def apply_or_fail(self: AuditLogProjection, cursor: Any, domain_event: Any, position: Any) -> None:
        if getattr(domain_event, "input_id", None) == POISON:
            raise RuntimeError("this event cannot be applied")
        apply(self, cursor, domain_event, position)

    monkeypatch.setattr(AuditLogProjection, "apply", apply_or_fail)
    poisoned = record_decision(api, POISON)  # the write itself succeeds

    # Readiness fails, naming the projection and where it stopped.
    assert wait_until(lambda: api.get("/readyz").status_code == 503, 30, interval=0.05)
    [failure] = api.get("/readyz").json()["detail"]["failed_projections"]
    assert failure["projection"] == "audit"
    assert failure["position"] < poisoned["position"]
    assert failure["error"] == "RuntimeError"
    assert 'decision_ledger_projection_failures_total{projection="audit"}' in api.get("/metrics").text

    # A close needs the audit log at its seal: it answers 503 with the reason, at once.
    started = time.monotonic()
    close = api.post(f"/runs/{RUN_ID}/close", headers=keyed("close-while-broken"))
    problem = assert_problem(close, 503, "projection-failed")
    assert "projection 'audit' is stopped at position" in problem["detail"]
    assert close.headers["Retry-After"]
    assert time.monotonic() - started < 10

    # The cause is fixed: the projection resumes from where it stopped, and the run closes.
    monkeypatch.setattr(AuditLogProjection, "apply", apply)
    assert wait_until(lambda: api.get("/readyz").status_code == 200, 30, interval=0.05)
    verdict = api.post(f"/runs/{RUN_ID}/close", headers=keyed("close-after-fix"))
    assert verdict.status_code == 200, verdict.text
    assert verdict.json()["verdict"] == "committed"
