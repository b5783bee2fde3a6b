"""Dispatchers standing for the follower "dispatcher": two on one database, each with an
election of its own (as two processes have), on SQLite and PostgreSQL. One delivers and
the other stands by, round after round; when the one that delivers stops, the other
takes over and delivers what is requested next."""

from __future__ import annotations

from collections import Counter
from contextlib import ExitStack

from application.dispatch.dispatcher import DISPATCHER_FOLLOWER, Dispatcher
from application.election import Candidacy, LeaderElection
from application.service import LedgerService
from infrastructure.database import parse_database_url
from infrastructure.effectors import Effectors
from infrastructure.file_election import FileLockElection
from infrastructure.postgres_election import PostgresElection
from tests.support.dispatch import (
    effectors_for,
    ledger_service,
    open_run_with_decisions,
    request,
    settled,
    wait_for_action,
)
from tests.support.polling import wait_until
from tests.support.webhook_receiver import ScriptedReceiver, serving

ROUNDS = 6
ACTIONS_PER_ROUND = 6


def election_on(database_url: str) -> LeaderElection:
    target = parse_database_url(database_url)
    if target.sqlite_path is not None:
        return FileLockElection(target.sqlite_path)
    return PostgresElection(target)


def delivered(dispatcher: Dispatcher) -> float:
    value = dispatcher.metrics.registry.get_sample_value(
        "decision_ledger_deliveries_total", {"effector": "card-service", "outcome": "delivered"}
    )
    return value or 0.0


def claims_lost(dispatcher: Dispatcher) -> float:
    return dispatcher.metrics.registry.get_sample_value("decision_ledger_delivery_claims_lost_total") or 0.0


def deliver_rounds(service: LedgerService, receiver: ScriptedReceiver, prefix: str) -> list[str]:
    """ROUNDS runs, each with actions requested and waited for: their IDs, each delivered once."""
    delivered_ids = []
    for round_number in range(ROUNDS):
        run_id = f"{prefix}-{round_number}"
        inputs = [f"card-{number}" for number in range(ACTIONS_PER_ROUND)]
        open_run_with_decisions(service, inputs, run_id=run_id)
        for action_id in [request(service, input_id, run_id=run_id) for input_id in inputs]:
            view = wait_for_action(service, action_id, settled)
            assert view.status == "committed", view
            delivered_ids.append(view.action_id)
    sent = Counter(received.headers["webhook-id"] for received in receiver.requests)
    assert [sent[action_id] for action_id in delivered_ids] == [1] * len(delivered_ids)
    return delivered_ids


def standing(service: LedgerService, effectors: Effectors, election: LeaderElection) -> Dispatcher:
    return Dispatcher(
        service.ledger,
        service.projections,
        effectors,
        concurrency=4,
        poll_interval_s=0.01,
        candidacy=Candidacy(election, DISPATCHER_FOLLOWER, poll_s=0.2),
    )


def test_one_dispatcher_delivers_and_the_other_takes_over_when_it_stops(
    database_url: str, signing_key_hex: str
) -> None:
    receiver = ScriptedReceiver(script=["ok"])
    with ExitStack() as stack:
        url = stack.enter_context(serving(receiver))
        service = stack.enter_context(ledger_service(database_url, signing_key_hex))
        effectors = effectors_for(url, receiver.secret, schedule=(0, 0.1))
        elections = [election_on(database_url) for _ in range(2)]
        for election in elections:
            stack.callback(election.close)
        dispatchers = [standing(service, effectors, election) for election in elections]
        for dispatcher in dispatchers:
            dispatcher.start()
            stack.callback(dispatcher.stop)
        assert wait_until(lambda: any(dispatcher.leading for dispatcher in dispatchers), 5)
        leader, standby = sorted(dispatchers, key=lambda dispatcher: not dispatcher.leading)

        # Round after round, the leader alone sends; the standby never even claims.
        first = deliver_rounds(service, receiver, "led")
        # A dispatcher counts a delivery just after saving it: the last count may trail
        # the action's committed state by a moment.
        wait_until(lambda: delivered(leader) == len(first), 5)
        assert (delivered(leader), delivered(standby)) == (len(first), 0)
        assert (claims_lost(leader), claims_lost(standby)) == (0, 0)
        assert leader.leading and not standby.leading
        records = elections[0].leaders()
        assert records[DISPATCHER_FOLLOWER].active and records[DISPATCHER_FOLLOWER].epoch == 1

        # The leader stops (and resigns): the standby takes over and delivers the rest.
        leader.stop()
        assert wait_until(lambda: standby.leading, 5)
        second = deliver_rounds(service, receiver, "taken-over")
        wait_until(lambda: delivered(standby) == len(second), 5)
        assert delivered(standby) == len(second)
        assert elections[0].leaders()[DISPATCHER_FOLLOWER].epoch == 2
    assert receiver.effects == dict.fromkeys(first + second, 1)
