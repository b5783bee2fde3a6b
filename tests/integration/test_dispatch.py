"""The dispatcher against a real receiver on 127.0.0.1, on both back ends.

Each test tells one story: what the receiver does, what the ledger records, and how
the run closes."""

from __future__ import annotations

from domain.commands import CloseRun, RedeliverAction, ReopenRun
from interfaces.webhooks import verify
from tests.support.dispatch import (
    RUN_ID,
    dispatching,
    effectors_for,
    ledger_service,
    open_run_with_decisions,
    request,
    settled,
    wait_for_action,
)
from tests.support.webhook_receiver import ScriptedReceiver, serving


def test_a_receiver_that_fails_twice_then_succeeds(database_url: str, signing_key_hex: str) -> None:
    receiver = ScriptedReceiver(script=["fail", "fail", "ok"])
    with serving(receiver) as url, ledger_service(database_url, signing_key_hex) as service:
        open_run_with_decisions(service, ["card-1"])
        action_id = request(service, "card-1")
        with dispatching(service, effectors_for(url, receiver.secret, schedule=(0, 0.1, 0.1))):
            view = wait_for_action(service, action_id, settled)

        # Committed after three attempts, with the receiver's ref.
        assert view.status == "committed" and view.dispatch == "delivered"
        assert view.external_ref == f"ref-{str(action_id)[:8]}"
        assert [(d["attempt"], d["status_code"], d["outcome"]) for d in view.deliveries] == [
            (1, 500, "failed"),
            (2, 500, "failed"),
            (3, 200, "delivered"),
        ]
        assert all(d["effector"] == "card-service" and d["latency_ms"] >= 0 for d in view.deliveries)
        # Every attempt: the same webhook-id and body bytes, and a signature that verifies.
        attempts = receiver.requests_for(str(action_id))
        assert len(attempts) == 3
        assert {request.body for request in attempts} == {attempts[0].body}
        for attempt in attempts:
            assert verify(receiver.secret, attempt.headers, attempt.body)["action_id"] == str(action_id)
        assert receiver.effects == {str(action_id): 1}

        # /history shows each attempt as an event.
        history = [entry.event_type for entry in service.queries.action_history(action_id)]
        assert history == [
            "Requested",
            *["DeliveryStarted", "DeliveryFailed"] * 2,
            "DeliveryStarted",
            "Committed",
        ]


def test_a_timeout_after_applying_is_resent_and_applied_once(database_url: str, signing_key_hex: str) -> None:
    receiver = ScriptedReceiver(script=["hang", "ok"], hang_s=2.0)
    with serving(receiver) as url, ledger_service(database_url, signing_key_hex) as service:
        open_run_with_decisions(service, ["card-1"])
        action_id = request(service, "card-1")
        effectors = effectors_for(url, receiver.secret, schedule=(0, 0.1), timeout_s=0.5)
        with dispatching(service, effectors):
            view = wait_for_action(service, action_id, settled)

        assert view.status == "committed"
        assert [d["outcome"] for d in view.deliveries] == ["failed", "delivered"]
        assert view.deliveries[0]["status_code"] is None
        assert view.deliveries[0]["error"] == "no answer within 0.5 s"
        # Resent with the same id: the dedupe receiver applied the effect once.
        assert {r.headers["webhook-id"] for r in receiver.requests} == {str(action_id)}
        assert receiver.effects == {str(action_id): 1}


def test_gone_fails_at_once(database_url: str, signing_key_hex: str) -> None:
    receiver = ScriptedReceiver(script=["gone"])
    with serving(receiver) as url, ledger_service(database_url, signing_key_hex) as service:
        open_run_with_decisions(service, ["card-1"])
        action_id = request(service, "card-1")
        with dispatching(service, effectors_for(url, receiver.secret, schedule=(0, 0.1, 0.1))):
            view = wait_for_action(service, action_id, settled)
            assert view.status == "failed" and not view.retryable and view.dispatch == "stopped"
            assert view.last_error == "delivery 1 failed: the receiver answered 410"
            assert len(view.deliveries) == 1 and len(receiver.requests) == 1


def test_a_dead_letter_closes_red_then_redelivery_and_reopen_close_green(
    database_url: str, signing_key_hex: str
) -> None:
    receiver = ScriptedReceiver(script=["fail", "fail", "ok"])
    with serving(receiver) as url, ledger_service(database_url, signing_key_hex) as service:
        open_run_with_decisions(service, ["card-1", "card-2"])
        effectors = effectors_for(url, receiver.secret, schedule=(0, 0.05))
        healthy = request(service, "card-1")
        receiver.script = ["fail", "fail", "ok"]
        with dispatching(service, effectors):
            # The schedule (two attempts) is used up: failed, retryable, dead-lettered.
            first = wait_for_action(service, healthy, settled)
            assert first.status == "failed" and first.retryable and first.dispatch == "dead_lettered"
            assert len(first.deliveries) == 2

            # The run closes red, with reason `failed`.
            closed = service.closer.close(CloseRun(token="close-1", actor="lane-a", run_id=RUN_ID)).view
            assert closed.verdict == "rejected"
            assert [reason["code"] for reason in closed.reasons] == ["failed"]
            assert {
                key: closed.summary["actions"][key] for key in ("failed", "delivery_attempts", "dead_letters")
            } == {
                "failed": 1,
                "delivery_attempts": 2,
                "dead_letters": 1,
            }

            # An operator redelivers (the run is not open: that is allowed), and it succeeds.
            redelivered = service.commands.actions.redeliver(
                RedeliverAction(token="redeliver-1", actor="ops", action_id=healthy)
            )
            assert redelivered.view.status == "failed" and redelivered.view.dispatch == "waiting"
            view = wait_for_action(service, healthy, lambda v: v.status == "committed")
            assert [d["attempt"] for d in view.deliveries] == [1, 2, 3]
            assert {r.headers["webhook-id"] for r in receiver.requests} == {str(healthy)}

            # The second action was never requested: the run needs only the first.
            service.commands.runs.reopen(
                ReopenRun(token="reopen-1", actor="ops", run_id=RUN_ID, reason="redelivered")
            )
            closed = service.closer.close(CloseRun(token="close-2", actor="lane-a", run_id=RUN_ID)).view
            assert closed.verdict == "committed", closed.reasons
            assert closed.summary["actions"]["delivery_attempts"] == 3

        # The outbox and the run views equal a rebuild from the log.
        assert service.projections.verify("outbox")[1] == []
        assert service.projections.verify("runs")[1] == []


def test_a_run_whose_dispatched_actions_succeeded_closes_green_with_no_caller_commit(
    database_url: str, signing_key_hex: str
) -> None:
    receiver = ScriptedReceiver(script=["fail", "ok"])
    with serving(receiver) as url, ledger_service(database_url, signing_key_hex) as service:
        inputs = ["card-1", "card-2", "card-3"]
        open_run_with_decisions(service, inputs)
        action_ids = [request(service, input_id) for input_id in inputs]
        with dispatching(service, effectors_for(url, receiver.secret, schedule=(0, 0.05))):
            for action_id in action_ids:
                assert wait_for_action(service, action_id, settled).status == "committed"

        # Nobody committed the actions but the dispatcher; the run closes green.
        closed = service.closer.close(CloseRun(token="close-1", actor="lane-a", run_id=RUN_ID)).view
        assert (closed.verdict, closed.reasons) == ("committed", [])
        # The verdict's summary (and so the proof) counts the attempts: two each, one failed.
        assert closed.summary["actions"] == {
            "requested": 3,
            "pending": 0,
            "committed": 3,
            "failed": 0,
            "waived": 0,
            "delivery_attempts": 6,
            "delivery_failures": 3,
            "dead_letters": 0,
        }
        proof = service.ledger.load_run(RUN_ID).latest_verdict["proof"]
        assert proof["actions"]["delivery_attempts"] == 6 and proof["actions"]["dead_letters"] == 0
