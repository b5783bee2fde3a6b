"""Two dispatchers on one PostgreSQL database (two applications, as two processes would
have: their own caches and connections) race for the same due actions. Saving
DeliveryStarted is the claim: no attempt is ever sent twice."""

from __future__ import annotations

from collections import Counter

import pytest

from application.dispatch.dispatcher import Dispatcher
from application.ledger import DecisionLedger
from application.projections.runtime import Projections
from infrastructure.database import parse_database_url
from tests.support.databases import PostgresSchema
from tests.support.dispatch import (
    effectors_for,
    ledger_service,
    open_run_with_decisions,
    request,
    settled,
    wait_for_action,
)
from tests.support.webhook_receiver import ScriptedReceiver, serving

ROUNDS = 12
ACTIONS_PER_ROUND = 24


@pytest.mark.postgres
@pytest.mark.slow
def test_two_dispatchers_never_send_an_attempt_twice(
    postgres_schema: PostgresSchema, signing_key_hex: str
) -> None:
    # Every action fails once, then succeeds: two attempts each, both raced for.
    receiver = ScriptedReceiver(script=["fail", "ok"])
    claims_lost = 0
    with serving(receiver) as url, ledger_service(postgres_schema.url, signing_key_hex) as service:
        effectors = effectors_for(url, receiver.secret, schedule=(0, 0, 0))
        other_ledger = DecisionLedger(env=parse_database_url(postgres_schema.url).library_env())
        dispatchers = [
            Dispatcher(service.ledger, service.projections, effectors, concurrency=8, poll_interval_s=0.005),
            Dispatcher(
                other_ledger, Projections(other_ledger), effectors, concurrency=8, poll_interval_s=0.005
            ),
        ]
        for dispatcher in dispatchers:
            dispatcher.start()
        try:
            for round_number in range(ROUNDS):
                run_id = f"race-{round_number}"
                inputs = [f"card-{n}" for n in range(ACTIONS_PER_ROUND)]
                open_run_with_decisions(service, inputs, run_id=run_id)
                action_ids = [request(service, input_id, run_id=run_id) for input_id in inputs]
                views = [wait_for_action(service, action_id, settled) for action_id in action_ids]

                sent = Counter(r.headers["webhook-id"] for r in receiver.requests)
                for view in views:
                    assert view.status == "committed", view
                    attempts = [delivery["attempt"] for delivery in view.deliveries]
                    # Two attempts recorded, numbered once each, and exactly two sent.
                    assert attempts == [1, 2], view.deliveries
                    assert sent[view.action_id] == 2, (view.action_id, sent[view.action_id])
                    assert receiver.effects[view.action_id] == 1
        finally:
            for dispatcher in dispatchers:
                dispatcher.stop()
                claims_lost += int(dispatcher.metrics.claims_lost._value.get())
            other_ledger.close()
    # The race did happen: some claims were lost (and those attempts were not sent).
    assert claims_lost > 0
